"""Scaling out: Hydra's joblib launcher, parallel trials on keras-tuner's distributed mode (a
worker killed mid-trial, a rerun), and many processes starting at once on a fresh store.

Every command is a real `python -m vggsweep` on the bundled digits with tiny budgets; the store is
read back afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli_env, run_cli

from vggsweep.tracking import store

pytestmark = pytest.mark.subprocess  # every test here starts processes

TINY = ["data=digits", "budget=smoke", "data.train_samples=120", "data.test_samples=60",
        "tracking.log_model=false"]
MLP = ["model=mlp", "activation=relu", "model.hidden_layers=1", "model.hidden_units=32"]


def runs(home: Path, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id], max_results=1000)


def by_role(all_runs: list, role: str, status: str | None = None) -> list:
    return [r for r in all_runs if r.data.tags.get(store.ROLE) == role
            and (status is None or r.info.status == status)]


def leaderboard(stdout: str) -> pd.DataFrame:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("leaderboard: ")]
    return pd.read_csv(line.split(": ", 1)[1])


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    done = run_cli(["-m", "model=cnn,mlp", "activation=relu", *TINY, "experiment=joblib",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path, timeout=200)
    # (the timeout is below joblib's 300 s idle timeout: its worker processes, which inherit the
    # output pipe, must end with the command, or a `| tee` waits for them)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout
    assert "leaked" not in done.stderr, done.stderr[-3000:]  # joblib's semaphores and folder
    everything = runs(tmp_path, "joblib")
    jobs, trials = by_role(everything, "job"), by_role(everything, "trial")
    assert sorted(j.data.tags["model"] for j in jobs) == ["cnn", "mlp"]
    assert all(j.info.status == "FINISHED" for j in jobs)
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    # the outputs were rebuilt from the store: the launching process ran no job itself
    board = leaderboard(done.stdout)
    assert set(board["run_id"]) == {t.info.run_id for t in trials}
    # the answer names the best run as the MLflow UI shows it
    best = next(t for t in trials if t.info.run_id == board["run_id"][0])
    assert f"best: {best.info.run_name} (" in done.stdout
    assert "[job 1/2 cnn-relu]" in done.stdout and "[job 2/2 mlp-relu]" in done.stdout


def _kill_a_worker_mid_trial(home: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Runs the job; SIGKILLs worker0 while it trains its first trial (after its first epoch
    line), then lets the job finish."""
    proc = subprocess.Popen([sys.executable, "-m", "vggsweep", *args], cwd=home,
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1)
    killed = threading.Event()
    lines: list[str] = []

    def read():
        training = False
        for line in proc.stdout:
            lines.append(line)
            training = training or ("worker0]" in line and "started" in line)
            if training and not killed.is_set() and "epoch 1/" in line:
                found = subprocess.run(["pgrep", "-f", "vggsweep.worker.*--worker-id worker0"],
                                       capture_output=True, text=True).stdout.split()
                for pid in found:
                    os.kill(int(pid), signal.SIGKILL)
                killed.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    return subprocess.CompletedProcess(args, proc.returncode, "".join(lines), proc.stderr.read())


def test_two_workers_and_one_killed_mid_trial(tmp_path):
    """Two workers train the job's trials in parallel; one killed mid-trial is started again and
    gets its trial back, so the kill costs only that trial; a rerun finds the search done."""
    args = [*MLP, *TINY, "budget.epochs=2", "budget.max_trials=4", "tuner.workers=2",
            "experiment=killed"]
    first = _kill_a_worker_mid_trial(tmp_path, args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "worker worker0 ended with code -9; starting it again" in first.stdout
    assert "python -m vggsweep.worker --chief 127.0.0.1:" in first.stdout
    after = runs(tmp_path, "killed")
    [job] = by_role(after, "job")
    finished = by_role(after, "trial", "FINISHED")
    assert sorted(t.data.tags[store.TRIAL_ID] for t in finished) == ["0", "1", "2", "3"]
    assert {t.data.tags[store.PARENT] for t in finished} == {job.info.run_id}
    assert {t.data.tags[store.WORKER] for t in finished} == {"worker0", "worker1"}
    assert job.data.metrics["trials_completed"] == 4
    [orphan] = by_role(after, "trial", "KILLED")  # the killed attempt, superseded by its rerun
    assert orphan.data.tags[store.TRIAL_ID] in {"0", "1", "2", "3"}
    assert not [r for r in after if r.info.status == "RUNNING"]

    again = run_cli(args, tmp_path, timeout=300)  # the rerun finds the search done
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = runs(tmp_path, "killed")
    assert sorted(t.data.tags[store.TRIAL_ID] for t in by_role(rerun, "trial", "FINISHED")) == [
        "0", "1", "2", "3"]
    assert not [r for r in rerun if r.info.status == "RUNNING"]
    assert len(by_role(rerun, "job")) == 1


def test_four_processes_at_once_on_a_fresh_store(tmp_path):
    """Three different jobs and one of them twice, all started at the same moment."""
    commands = [[*MLP[:1], f"activation={a}", *MLP[2:], *TINY, "budget.max_trials=1",
                 "experiment=together", "verbose=0"] for a in ("relu", "tanh", "sigmoid", "relu")]
    processes = [subprocess.Popen([sys.executable, "-m", "vggsweep", *c], cwd=tmp_path,
                                  env=cli_env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out[-2000:] + err[-3000:]
        assert "Traceback" not in err
    everything = runs(tmp_path, "together")
    jobs = by_role(everything, "job")
    assert sorted(j.data.tags["activation"] for j in jobs) == ["relu", "sigmoid", "tanh"]
    assert all(j.info.status == "FINISHED" for j in jobs)
    trials = by_role(everything, "trial")
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
    sweeps = {line.split(": ", 1)[1] for out, _ in outputs for line in out.splitlines()
              if line.startswith("leaderboard: ")}
    assert len(sweeps) == 4  # each process its own sweep directory, though started together


def test_sweep_directories_are_flat_whatever_the_overrides(tmp_path):
    """A swept path becomes one folder name; the overrides every job shares name none."""
    import numpy as np

    data = tmp_path / "some" / "deep" / "folder"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(data / f"{name}.npz", x_train=rng.integers(0, 255, (80, 12, 12), dtype=np.uint8),
                 y_train=np.arange(80) % 2, y_test=np.arange(20) % 2,
                 x_test=rng.integers(0, 255, (20, 12, 12), dtype=np.uint8))
    done = run_cli(["-m", *MLP, "data=npz", "data.name=tiny",
                    f"data.path={data / 'a.npz'},{data / 'b.npz'}", "budget=smoke",
                    "budget.max_trials=1", "tracking.log_model=false", "experiment=flat",
                    "verbose=0"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [sweep] = list((tmp_path / "multirun").glob("*/*"))
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != "plots")
    assert len(jobs) == 2 and jobs[0].startswith("0_data.path=") and jobs[0].endswith("a.npz")
    assert all("/" not in name and "activation" not in name for name in jobs)


@pytest.mark.parametrize("launcher", ["submitit_local"])
def test_other_launchers_validate_before_any_job(launcher, tmp_path):
    done = run_cli(["-m", *MLP, *TINY, f"hydra/launcher={launcher}",
                    "hydra.launcher.timeout_mn=1"], tmp_path, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "timeout_mn" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()
