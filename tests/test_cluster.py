"""vggsweep's submitit launchers without a cluster: SLURM's warning signal inside a job (runs end
KILLED with the event, then submitit requeues), following jobs (states, progress lines, how
each ended), the launcher checks before anything exists, and a submitit_local sweep. The same
against a real SLURM: tests/test_slurm.py."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli

from vggsweep import config
from vggsweep.errors import ConfigError
from vggsweep.job import cluster, launch, slurm
from vggsweep.runtime import interrupts
from vggsweep.tracking import store as vstore
from vggsweep.tracking import writer

MLP = ["model=mlp", "activation=relu", "data=digits", "budget=smoke", "data.train_samples=200",
       "data.test_samples=100"]


class FakeSubmitit:
    """Stands for submitit's SignalHandler: it says whether the job timed out and, called,
    records what the store held then and exits as a requeue does (or refuses)."""

    def __init__(self, timed_out: bool, uri: str, experiment: str, requeue: bool = True):
        self.timed_out, self.requeue = timed_out, requeue
        self.uri, self.experiment = uri, experiment
        self.seen: list[str] = []

    def has_timed_out(self) -> bool:
        return self.timed_out

    def checkpoint_and_try_requeue(self, signum, frame):
        client = vstore.client(self.uri)
        experiment = client.get_experiment_by_name(self.experiment)
        self.seen = [r.info.status for r in client.search_runs([experiment.experiment_id])]
        if not self.requeue:
            raise RuntimeError("Job not requeued because: timed-out too many times.")
        raise SystemExit(-1)


@pytest.fixture
def warning_handler():
    """USR2 back to what it was after the test (the fake handler replaces it)."""
    previous = signal.getsignal(interrupts.WARNING_SIGNAL)
    yield
    signal.signal(interrupts.WARNING_SIGNAL, previous)


def _job_until_warned(uri: str, experiment: str):
    """A job's runs as the writer opens them, with SLURM's warning arriving mid-trial."""
    tracker = writer.JobTracker(uri, experiment, "key", {})
    with tracker.parent_run("job"):
        with tracker.child_run("trial", "trial-0", {"units": 8}, {}):
            signal.raise_signal(interrupts.WARNING_SIGNAL)
            time.sleep(0.05)
            pytest.fail("the warning should have interrupted the trial")
    return "returned"


@pytest.mark.parametrize(("timed_out", "event"), [(True, "time limit"), (False, "preempted")])
def test_slurms_warning_ends_the_runs_killed_then_submitit_requeues(store, warning_handler,
                                                                    timed_out, event):
    uri, experiment = store, f"warned-{event}"
    fake = FakeSubmitit(timed_out, uri, experiment)
    signal.signal(interrupts.WARNING_SIGNAL, fake.checkpoint_and_try_requeue)
    with pytest.raises(SystemExit):
        cluster.run_requeueing(lambda: _job_until_warned(uri, experiment), 3, "[job 1]")
    assert fake.seen == ["KILLED", "KILLED"]  # both runs ended before submitit was called
    client = vstore.client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert {r.data.tags[vstore.FAILURE_REASON] for r in runs} == {event}
    assert signal.getsignal(interrupts.WARNING_SIGNAL) == fake.checkpoint_and_try_requeue


def test_a_job_with_no_requeue_left_fails_with_the_event_and_why(store, warning_handler):
    uri, experiment = store, "no-requeue"
    fake = FakeSubmitit(True, uri, experiment, requeue=False)
    signal.signal(interrupts.WARNING_SIGNAL, fake.checkpoint_and_try_requeue)
    with pytest.raises(RuntimeError, match=r"^time limit, not requeued: timed-out too many times "
                                           r"\(hydra.launcher.max_num_timeout=3\)$"):
        cluster.run_requeueing(lambda: _job_until_warned(uri, experiment), 3, "[job 1]")
    assert fake.seen == ["KILLED", "KILLED"]


def test_other_processes_of_a_slurm_job_end_their_runs_on_the_warning(monkeypatch,
                                                                       warning_handler):
    signal.signal(interrupts.WARNING_SIGNAL, signal.SIG_DFL)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    with pytest.raises(interrupts.Interrupted) as raised:
        with interrupts.handled():
            with interrupts.deferred():
                signal.raise_signal(interrupts.WARNING_SIGNAL)
                held = "held until the section ended"
    assert held and interrupts.reason(raised.value) == interrupts.SLURM_WARNING
    assert signal.getsignal(interrupts.WARNING_SIGNAL) == signal.SIG_DFL
    monkeypatch.delenv("SLURM_JOB_ID")
    with interrupts.handled():  # outside SLURM the warning signal is not vggsweep's
        assert signal.getsignal(interrupts.WARNING_SIGNAL) == signal.SIG_DFL


class FakeJob:
    """A submitit job as the follower reads it: an id, a log, a result file, a state."""

    def __init__(self, folder: Path, job_id: str):
        self.job_id = job_id
        self.paths = SimpleNamespace(stdout=folder / f"{job_id}.out",
                                     result_pickle=folder / f"{job_id}.pkl")
        self.state = "RUNNING"

    def log(self, text: str) -> None:
        with open(self.paths.stdout, "a") as handle:
            handle.write(text)

    def done(self) -> bool:
        return self.state != "RUNNING"

    def results(self):
        return ["the job's own result"]


def test_the_follower_shows_states_and_job_lines_and_waits_for_every_job(tmp_path, monkeypatch,
                                                                          capsys):
    first, second = FakeJob(tmp_path, "5_0"), FakeJob(tmp_path, "5_1")
    states = {"5_0": ("RUNNING", "None"), "5_1": ("REQUEUED", "None")}
    monkeypatch.setattr(slurm, "states", lambda ids: {i: states[i] for i in ids})
    monkeypatch.setattr(cluster, "LOG_POLL_S", 0.01)
    monkeypatch.setattr(cluster, "STATE_POLL_S", 0.0)
    follower = cluster.Follower([first, second], [["model=cnn"], ["model=mlp"]], 0, 2,
                                on_slurm=True)
    first.log("[job 1/2 cnn-relu] trial 1/2 started\n    epoch 1/1 (not shown)\n[job 1/2 cn")
    ticks = []

    def progress(seconds):
        ticks.append(seconds)
        if len(ticks) == 1:
            states["5_1"] = ("PENDING", "BeginTime")
        if len(ticks) == 2:
            first.log("n-relu] finished\n")
            first.paths.result_pickle.write_bytes(b"result")
            states["5_1"] = ("CANCELLED by 0", "None")

    follower.sleep = progress
    follower.wait()
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["[job 1/2 cnn-relu] trial 1/2 started",
                     "[job 1/2] SLURM job 5_0: running",
                     "[job 2/2] SLURM job 5_1: requeued (SLURM starts it again after a short "
                     "hold)",
                     "[job 2/2] SLURM job 5_1: pending (requeued: SLURM starts it again after "
                     "a short hold)",
                     "[job 1/2 cnn-relu] finished",
                     "[job 1/2] SLURM job 5_0: returned",
                     "[job 2/2] SLURM job 5_1: cancelled by 0"]
    assert follower.job_return(0) == "the job's own result"
    cluster._ENDED.clear()
    failed = follower.job_return(1)
    assert failed.return_value.status == "failed"
    assert failed.return_value.message == "SLURM job 5_1 ended CANCELLED by 0"
    [ended] = cluster.ended()
    assert (ended.index, ended.overrides, ended.state) == (2, "model=mlp", "CANCELLED by 0")
    cluster._ENDED.clear()


def test_interrupting_the_follower_of_slurm_jobs_says_which_still_run(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "9")
    monkeypatch.setattr(slurm, "states", lambda ids: {"9": ("RUNNING", "None")})

    def interrupted(seconds):
        raise interrupts.Interrupted(signal.SIGINT)

    follower = cluster.Follower([job], [["model=cnn"]], 0, 1, on_slurm=True)
    follower.sleep = interrupted
    with pytest.raises(cluster.StillRunning) as still:
        follower.wait()
    text = "\n".join(still.value.lines)
    assert "SLURM job 9 (model=cnn): running" in text and "scancel 9" in text, text


def test_a_ctrl_c_the_imports_swallowed_still_stops_the_follower(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "9")
    monkeypatch.setattr(slurm, "states", lambda ids: {"9": ("RUNNING", "None")})
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    follower = cluster.Follower([job], [["model=cnn"]], 0, 1, on_slurm=True)
    follower.sleep = lambda seconds: pytest.fail("the follower waited on")
    try:
        with pytest.raises(cluster.StillRunning), interrupts.handled():
            try:
                signal.raise_signal(signal.SIGINT)
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001 - a library's bare `except:` in an import
                pass
            follower.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_launchers_are_vggsweeps_with_requeues_allowed():
    hydra = config.compose(["hydra/launcher=submitit_slurm"], return_hydra_config=True).hydra
    assert hydra.launcher._target_ == "hydra_plugins.vggsweep_launcher.launchers.SlurmLauncher"
    assert hydra.launcher.max_num_timeout == 3 and hydra.launcher.signal_delay_s == 120
    local = config.compose(["hydra/launcher=submitit_local"], return_hydra_config=True).hydra
    assert local.launcher._target_.endswith("vggsweep_launcher.launchers.LocalLauncher")


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_a_launcher_without_multirun_is_one_line_about_m(launcher, home):
    with pytest.raises(ConfigError, match=rf"hydra/launcher={launcher} runs jobs only in a "
                                          "multirun: add -m"):
        launch.prevalidate([*MLP, f"hydra/launcher={launcher}"])
    assert list(home.iterdir()) == []


def test_submitit_slurm_without_slurm_is_one_line(home, monkeypatch):
    monkeypatch.setenv("PATH", str(home))  # no sbatch, sacct or srun
    with pytest.raises(ConfigError, match="hydra/launcher=submitit_slurm needs SLURM's sbatch, "
                                          "sacct, srun on PATH"):
        launch.prevalidate(["-m", *MLP, "hydra/launcher=submitit_slurm"])
    assert list(home.iterdir()) == []


def test_sbatch_is_asked_with_the_script_submitit_would_submit(home, monkeypatch):
    asked = []

    def sbatch(command, **kwargs):
        asked.append((command, kwargs["input"]))
        return SimpleNamespace(returncode=1, stdout="", stderr="sbatch: error: Batch job "
                               "submission failed: Invalid account or account/partition "
                               "combination specified\n")

    monkeypatch.setattr(slurm.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(slurm.subprocess, "run", sbatch)
    with pytest.raises(ConfigError, match="refused by SLURM .*: Batch job submission failed: "
                                          "Invalid account"):
        launch.prevalidate(["-m", *MLP, "activation=relu,tanh", "hydra/launcher=submitit_slurm",
                            "hydra.launcher.account=nobody", "hydra.launcher.mem_gb=4",
                            "hydra.launcher.timeout_min=30"])
    [(command, script)] = asked
    assert command == ["sbatch", "--test-only"]
    for flag in ("--account=nobody", "--mem=4GB", "--time=30", "--array=0-1%2",
                 "--signal=USR2@120"):
        assert f"#SBATCH {flag}\n" in script, script
    assert list(home.iterdir()) == []


@pytest.mark.subprocess
def test_a_submitit_local_sweep_waits_for_and_follows_its_jobs(tmp_path):
    done = run_cli(["-m", "model=mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
                    "budget.max_trials=1", "hydra/launcher=submitit_local"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\[job 1/2\] process \d+: running", done.stdout), done.stdout
    assert "[job 2/2 mlp-tanh] finished" in done.stdout
    assert re.search(r"best: mlp-(relu|tanh)/trial-\d+ ", done.stdout), done.stdout


def test_more_workers_than_cpus_in_a_slurm_job_is_a_warning(home, monkeypatch, capsys):
    monkeypatch.setattr(slurm.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(slurm.subprocess, "run", lambda *a, **k: SimpleNamespace(
        returncode=0, stdout="", stderr="sbatch: Job 3 to start at now"))
    plan = launch.prevalidate(["-m", *MLP, "tuner.workers=2", "hydra/launcher=submitit_slurm"])
    assert plan.jobs == 1
    assert capsys.readouterr().err == (
        "warning: tuner.workers=2 trains 2 trials at once in a SLURM job of 1 CPU(s); give it "
        "hydra.launcher.cpus_per_task=2\n")
    launch.prevalidate(["-m", *MLP, "tuner.workers=2", "hydra/launcher=submitit_slurm",
                        "hydra.launcher.cpus_per_task=2"])
    assert capsys.readouterr().err == ""


def test_runs_a_killed_job_left_running_end_killed_with_slurms_reason(store, home, capsys):
    uri = store
    experiment = vstore.prepare(uri, "abandoned")
    client = vstore.client(uri)
    job_tags = {vstore.ROLE: "job", vstore.JOB_KEY: "k1", vstore.OVERRIDES: "model=mlp"}
    parent = client.create_run(experiment, run_name="mlp-relu", tags=job_tags).info.run_id
    trial = client.create_run(experiment, run_name="trial-0", tags={
        vstore.ROLE: "trial", vstore.JOB_KEY: "k1", vstore.PARENT: parent}).info.run_id
    plan = launch.Plan(jobs=1, multirun=True, sweep_dir=home, targets=[(uri, "abandoned")],
                       keys=["k1"], projects={"k1": home / "project"})
    cluster._ENDED.append(cluster.Ended(1, "model=mlp", "5_0", "OUT_OF_MEMORY",
                                        "SLURM job 5_0 ended OUT_OF_MEMORY", "5_0.out"))
    try:
        launch._close_abandoned(plan)
        assert launch.outcome(plan) == 1
    finally:
        cluster._ENDED.clear()
    for run_id in (parent, trial):
        run_ = client.get_run(run_id)
        assert run_.info.status == "KILLED"
        assert run_.data.tags[vstore.FAILURE_REASON] == "SLURM job 5_0 ended OUT_OF_MEMORY"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "job mlp-relu (model=mlp) failed: SLURM job 5_0 ended OUT_OF_MEMORY (log 5_0.out)",
        "1/1 jobs failed"]
