"""Resuming and interrupting real sweeps (`python -m vggsweep ...` in a subprocess).

A job killed with SIGKILL after one finished trial and rerun with the same command ends with
exactly the requested trials, no MLflow run left RUNNING and no duplicated trial; a changed search
space is re-keyed (a new job and tuner project, never mixed into the old one); `tuner.fresh=true`
starts the job over; SIGTERM ends the open runs KILLED, exits 130 and still writes the leaderboard.

Every command runs in its own temporary launch directory (VGGSWEEP_HOME), on the bundled digits
with the smoke budget and the MLP: a few seconds per trial after TensorFlow's import.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from vggsweep.tracking import store

pytestmark = pytest.mark.subprocess  # every test here starts processes

ROLE, JOB_KEY, TRIAL_ID, PARENT = store.ROLE, store.JOB_KEY, store.TRIAL_ID, store.PARENT
FAILURE_REASON = store.FAILURE_REASON
TIMEOUT_S = 300

# Resume is the subject here: every trial trains to its end (no pruning by the default search).
JOB = ["model=mlp", "activation=relu", "data=digits", "budget=smoke", "budget.epochs=3",
       "tuner.pruner=off", "experiment=resume"]
RESUME = [*JOB, "budget.max_trials=3"]


# --------------------------------------------------------------------------------------------
# helpers


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def vggsweep(home: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs `python -m vggsweep ARGS` to its end in `home`."""
    return subprocess.run([sys.executable, "-m", "vggsweep", *args], cwd=home, env=_env(home),
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@dataclass
class Interrupted:
    returncode: int
    stdout: str
    stderr: str


def interrupt(home: Path, args: list[str], markers: list[str], sig: int) -> Interrupted:
    """Starts `python -m vggsweep ARGS`, reads its stdout line by line and sends `sig` as soon as
    every marker has appeared, in order; then waits for the process to end."""
    errors = home / f"stderr-{time.monotonic_ns()}.txt"
    with open(errors, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "vggsweep", *args], cwd=home,
                                env=_env(home), stdout=subprocess.PIPE, stderr=stderr, text=True,
                                bufsize=1)
        watchdog = threading.Timer(TIMEOUT_S, proc.kill)
        watchdog.start()
        lines, found = [], 0
        try:
            for line in proc.stdout:
                lines.append(line)
                if markers[found] in line:
                    found += 1
                    if found == len(markers):
                        proc.send_signal(sig)
                        break
            lines.append(proc.stdout.read())
            proc.wait(timeout=120)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout = "".join(lines)
    assert found == len(markers), (
        f"the process ended (rc {proc.returncode}) before {markers[found]!r} appeared:\n"
        f"{stdout[-3000:]}\n{errors.read_text()[-3000:]}")
    return Interrupted(proc.returncode, stdout, errors.read_text())


@dataclass
class Run:
    run_id: str
    status: str
    role: str | None
    job_key: str | None
    trial_id: str | None
    parent: str | None
    start_time: int
    params: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def runs(home: Path, experiment: str) -> list[Run]:
    """Every run of `experiment` in the launch directory's store, as plain values."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home.resolve() / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {home}"
    return [
        Run(r.info.run_id, r.info.status, r.data.tags.get(ROLE), r.data.tags.get(JOB_KEY),
            r.data.tags.get(TRIAL_ID), r.data.tags.get(PARENT), r.info.start_time,
            dict(r.data.params), dict(r.data.tags), dict(r.data.metrics))
        for r in client.search_runs([found.experiment_id], max_results=5000)
    ]


def trials(all_runs: list[Run], status: str | None = None, parent: str | None = None) -> list:
    return [r for r in all_runs if r.role == "trial"
            and (status is None or r.status == status) and (parent is None or r.parent == parent)]


def jobs(all_runs: list[Run]) -> list[Run]:
    return [r for r in all_runs if r.role == "job"]


def running(all_runs: list[Run]) -> list[Run]:
    return [r for r in all_runs if r.status == "RUNNING"]


def tree_digest(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def leaderboard_path(stdout: str) -> Path:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("leaderboard: ")]
    assert lines, f"no leaderboard line in:\n{stdout[-2000:]}"
    return Path(lines[-1].split(": ", 1)[1])


# --------------------------------------------------------------------------------------------
# SIGKILL after one finished trial, then the same command again


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Starts a 3-trial job, SIGKILLs it while trial 2 trains, reruns the same command; records
    MLflow right after the kill and right after the rerun."""
    home = tmp_path_factory.mktemp("resume")
    # Right after "trial 1/3 done", once trial 2 has opened its MLflow run and is training (its
    # first epoch line): the kill then always lands while trial 2 is running.
    killed = interrupt(home, RESUME, ["trial 1/3 done", "trial 2/3 started", "epoch 1/3"],
                       signal.SIGKILL)
    after_kill = runs(home, "resume")
    projects = sorted((home / "tuner_state").iterdir())
    rerun = vggsweep(home, *RESUME)
    return {"home": home, "killed": killed, "after_kill": after_kill, "rerun": rerun,
            "after_rerun": runs(home, "resume"), "projects": projects}


def test_sigkill_leaves_the_running_trial_open(resumed):
    assert resumed["killed"].returncode == -signal.SIGKILL
    after_kill = resumed["after_kill"]
    assert [(r.trial_id, r.status) for r in trials(after_kill)
            if r.status != "FINISHED"] == [("1", "RUNNING")]
    assert [r.trial_id for r in trials(after_kill, "FINISHED")] == ["0"]
    assert len(resumed["projects"]) == 1


def test_rerun_completes_exactly_the_requested_trials_without_duplicates(resumed):
    rerun = resumed["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = resumed["after_rerun"]
    finished = trials(after, "FINISHED")
    assert sorted(r.trial_id for r in finished) == ["0", "1", "2"]
    assert running(after) == []
    # only the interrupted trial and the remaining one ran again; trial 1/3 was not repeated
    assert "trial 1/3 started" not in rerun.stdout
    assert "trial 2/3 started" in rerun.stdout and "trial 3/3 started" in rerun.stdout
    assert "3 trials: 3 finished, 0 pruned, 0 failed" in rerun.stdout


def test_rerun_marks_the_orphan_killed_and_reuses_the_parent(resumed):
    (orphan,) = [r for r in trials(resumed["after_kill"]) if r.status == "RUNNING"]
    after = {r.run_id: r for r in resumed["after_rerun"]}
    assert after[orphan.run_id].status == "KILLED"
    assert "interrupted" in after[orphan.run_id].tags.get(FAILURE_REASON, "")

    (parent_before,) = jobs(resumed["after_kill"])
    parents = jobs(resumed["after_rerun"])
    assert [p.run_id for p in parents] == [parent_before.run_id]
    (parent,) = parents
    assert parent.status == "FINISHED"
    assert parent.tags.get("vggsweep.resumed") == "true"
    assert parent.metrics["trials_completed"] == 3
    assert {r.parent for r in trials(resumed["after_rerun"])} == {parent.run_id}
    assert {r.job_key for r in resumed["after_rerun"]} == {parent.job_key}


def test_the_interrupted_trial_reruns_with_the_same_hyperparameters(resumed):
    (orphan,) = [r for r in trials(resumed["after_kill"]) if r.status == "RUNNING"]
    (again,) = [r for r in trials(resumed["after_rerun"], "FINISHED") if r.trial_id == "1"]
    assert again.run_id != orphan.run_id
    assert again.params == orphan.params
    assert again.params["seed"] == "1"


def test_rerun_leaderboard_lists_each_trial_once(resumed):
    table = pd.read_csv(leaderboard_path(resumed["rerun"].stdout))
    finished = table[table["status"] == "FINISHED"]
    assert sorted(finished["trial_id"].astype(str)) == ["0", "1", "2"]
    assert set(finished["run_id"]) == {r.run_id for r in trials(resumed["after_rerun"],
                                                                   "FINISHED")}


# --------------------------------------------------------------------------------------------
# a changed search space, tuner.fresh


def test_changed_search_space_is_rekeyed_never_mixed(resumed):
    home = resumed["home"]
    (old_project,) = resumed["projects"]
    before = runs(home, "resume")
    old_id = jobs(resumed["after_rerun"])[0].run_id
    (old_parent,) = [p for p in jobs(before) if p.run_id == old_id]
    old_state = tree_digest(old_project)

    changed = vggsweep(home, *JOB, "budget.max_trials=1", "tracking.log_model=false",
                       "model.hidden_units={choice:[64,128]}")

    assert changed.returncode == 0, changed.stderr[-3000:]
    after = runs(home, "resume")
    new_parents = [p for p in jobs(after) if p.run_id not in {q.run_id for q in jobs(before)}]
    assert len(new_parents) == 1, "the changed space must be a new job (new parent run)"
    (new_parent,) = new_parents
    assert new_parent.job_key != old_parent.job_key
    assert f"job key {new_parent.job_key}" in changed.stdout
    assert new_parent.status == "FINISHED"
    (new_trial,) = trials(after, parent=new_parent.run_id)
    assert new_trial.status == "FINISHED" and new_trial.job_key == new_parent.job_key
    assert new_trial.params["hidden_units"] in ("64", "128")
    # the old job and its tuner project are untouched
    old_children = {(r.run_id, r.status) for r in trials(before, parent=old_parent.run_id)}
    assert {(r.run_id, r.status) for r in trials(after, parent=old_parent.run_id)} == old_children
    assert tree_digest(old_project) == old_state
    new_project = old_project.parent / f"resume-{new_parent.job_key}"
    assert sorted(p.name for p in new_project.glob("trial_*")) == ["trial_0"]
    assert running(after) == []


def test_fresh_starts_the_job_over(resumed):
    home = resumed["home"]
    (old_project,) = resumed["projects"]
    key = jobs(resumed["after_rerun"])[0].job_key
    started_ms = int(time.time() * 1000)

    fresh = vggsweep(home, *JOB, "budget.max_trials=1", "tracking.log_model=false",
                     "tuner.fresh=true")

    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert f"job key {key}" in fresh.stdout  # fresh does not re-key the job
    assert "trial 1/1 started" in fresh.stdout
    assert sorted(p.name for p in old_project.glob("trial_*")) == ["trial_0"]
    after = [r for r in runs(home, "resume") if r.job_key == key]
    assert running(after) == []
    finished = trials(after, "FINISHED")
    # the job's record now holds only the new search: the earlier trials are superseded (KILLED)
    # or belong to another (earlier) parent run, never counted with the new one
    assert [(r.trial_id, r.start_time >= started_ms) for r in finished] == [("0", True)]
    latest_parent = max(jobs(after), key=lambda p: p.start_time)
    assert latest_parent.metrics["trials_completed"] == 1
    assert "1 trial: 1 finished, 0 pruned, 0 failed" in fresh.stdout


# --------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_kills_open_runs_exits_130_and_writes_the_leaderboard(tmp_path):
    args = ["-m", "model=mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
            "budget.epochs=3", "tuner.pruner=off", "experiment=sigterm"]
    # job 1 completes; job 2 is interrupted while its second trial trains
    stopped = interrupt(tmp_path, args, ["[job 2/2", "trial 1/2 done", "trial 2/2 started",
                                         "epoch 1/3"], signal.SIGTERM)

    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    after = runs(tmp_path, "sigterm")
    assert running(after) == []
    parents = {p.tags["activation"]: p for p in jobs(after)}
    assert parents["relu"].status == "FINISHED"
    assert parents["tanh"].status == "KILLED"
    killed = [r for r in trials(after) if r.status == "KILLED"]
    assert [(r.parent, r.trial_id) for r in killed] == [(parents["tanh"].run_id, "1")]
    finished = trials(after, "FINISHED")
    assert len(finished) == 3  # two of job 1, the first of job 2

    sweep_dirs = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweep_dirs) == 1
    board = sweep_dirs[0] / "leaderboard.csv"
    assert board.is_file(), f"no leaderboard in {sweep_dirs[0]}: {os.listdir(sweep_dirs[0])}"
    table = pd.read_csv(board)
    listed = set(table.loc[table["status"] == "FINISHED", "run_id"])
    assert listed == {r.run_id for r in finished}
