"""Failures: a diverging or raising trial is recorded and the search goes on; a job with no
completed trial fails with '0/N trials completed' while the other jobs of the multirun run."""

import signal
import time

import helpers
import mlflow
import pytest
from conftest import run_cli
from helpers import SMALL_DATA, TINY

from vggsweep import config
from vggsweep.job import task
from vggsweep.models import training
from vggsweep.runtime import interrupts

JOB = [*TINY, *SMALL_DATA, "model.hidden_units=32", "verbose=1"]


def _children(home, experiment, status=None):
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("vggsweep.role") == "trial"
            and (status is None or r.info.status == status)]


def test_a_raising_trial_is_failed_with_its_reason_and_the_search_goes_on(isolated, monkeypatch):
    real_fit, calls = training.fit, []

    def flaky_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated out-of-memory")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "fit", flaky_fit)
    cfg = config.compose([*JOB, "experiment=flaky", "budget.max_trials=2"])
    result = task.run_job(cfg)
    assert result.status == "completed" and (result.completed, result.failed) == (1, 1)
    [failed] = _children(isolated, "flaky", "FAILED")
    assert "simulated out-of-memory" in failed.data.tags["vggsweep.failure_reason"]
    assert len(_children(isolated, "flaky", "FINISHED")) == 1


@pytest.mark.subprocess
def test_a_diverging_job_fails_while_the_other_jobs_run(isolated):
    result = run_cli(["-m", *JOB, "experiment=diverge", "optimizer=sgd",
                      "optimizer.learning_rate=1e12,0.05"], isolated, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "0/2 trials completed" in result.stderr
    assert "1/2 jobs failed" in result.stderr
    failed = _children(isolated, "diverge", "FAILED")
    assert len(failed) == 2
    assert all("loss became" in r.data.tags["vggsweep.failure_reason"] for r in failed)
    assert len(_children(isolated, "diverge", "FINISHED")) == 2  # the healthy job still ran
    client = mlflow.MlflowClient(f"sqlite:///{isolated / 'mlflow.db'}")
    exp = client.get_experiment_by_name("diverge")
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = {r.data.tags.get("vggsweep.overrides"): r for r in runs
               if r.data.tags.get("vggsweep.role") == "job"}
    bad = next(r for k, r in parents.items() if "0.05" not in k)
    assert bad.info.status == "FAILED"
    assert bad.data.tags["vggsweep.failure_reason"].startswith("0/2 trials completed")
    assert list(isolated.glob("multirun/*/*/leaderboard.csv"))  # written although a job failed


def test_every_run_ends_even_when_the_job_raises(isolated, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", broken)
    cfg = config.compose([*JOB, "experiment=interrupted"])
    with pytest.raises(KeyboardInterrupt):
        task.run_job(cfg)
    client = mlflow.MlflowClient(f"sqlite:///{isolated / 'mlflow.db'}")
    exp = client.get_experiment_by_name("interrupted")
    statuses = {r.data.tags["vggsweep.role"]: r.info.status
                for r in client.search_runs([exp.experiment_id])}
    assert statuses == {"job": "KILLED", "trial": "KILLED"}



def _sigterm_caught_by_a_library(then: Exception | None = None):
    """A SIGTERM that lands in a library's bare `except:` (TensorFlow's imports have them),
    which goes on, or raises an error of its own (`then`), as TensorFlow did in training."""
    try:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(0.05)
    except BaseException:  # noqa: BLE001 - what that library does
        if then is not None:
            raise then from None


def _statuses(home, experiment) -> set:
    return {(r.data.tags[helpers.ROLE], r.info.status)
            for r in helpers.experiment_runs(f"sqlite:///{home / 'mlflow.db'}", experiment)}


def test_an_interrupt_swallowed_before_the_search_stops_it_at_its_first_trial(isolated):
    cfg = config.compose([*JOB, "experiment=swallowed"])
    with pytest.raises(interrupts.Interrupted), interrupts.handled():
        _sigterm_caught_by_a_library()
        task.run_job(cfg)
    assert _statuses(isolated, "swallowed") == {("job", "KILLED")}  # no trial started


def test_an_interrupt_swallowed_during_training_stops_it_at_the_epoch_end(isolated, monkeypatch):
    real_fit = training.fit

    def fit_hit_by_a_signal(*args, **kwargs):
        _sigterm_caught_by_a_library()
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "fit", fit_hit_by_a_signal)
    cfg = config.compose([*JOB, "experiment=swallowed-fit", "budget.epochs=3"])
    with pytest.raises(interrupts.Interrupted), interrupts.handled():
        task.run_job(cfg)
    assert _statuses(isolated, "swallowed-fit") == {("job", "KILLED"), ("trial", "KILLED")}


def test_an_interrupt_tensorflow_turns_into_an_error_ends_the_trial_killed_not_failed(
        isolated, monkeypatch):
    """Measured on SLURM: a warning signal during a trial's training came out of TensorFlow as
    "ValueError: None values not supported." and the trial was recorded FAILED (never rerun)."""
    def fit_hit_by_a_signal(*args, **kwargs):
        _sigterm_caught_by_a_library(then=ValueError("None values not supported."))

    monkeypatch.setattr(training, "fit", fit_hit_by_a_signal)
    cfg = config.compose([*JOB, "experiment=converted"])
    with pytest.raises(interrupts.Interrupted), interrupts.handled():
        task.run_job(cfg)
    assert _statuses(isolated, "converted") == {("job", "KILLED"), ("trial", "KILLED")}


def test_an_interrupt_turned_into_an_error_outside_a_trial_is_no_failed_job(isolated,
                                                                             monkeypatch):
    """Before the search (data, model checks): the job stops on the interrupt; it is not a
    failed job the sweep reports and goes on from."""
    def start_hit_by_a_signal(cfg, info=None):
        _sigterm_caught_by_a_library(then=ValueError("None values not supported."))

    monkeypatch.setattr(task, "run_job", start_hit_by_a_signal)
    with pytest.raises(interrupts.Interrupted), interrupts.handled():
        task.task(config.compose([*JOB, "experiment=converted-start"]))
