"""Shared test helpers: the tiny job every in-process test shrinks the config to, and reading a
job's runs back from its MLflow store. Fixtures (`home`, `store`, `isolated`) are in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

from vggsweep import config
from vggsweep.job import plan
from vggsweep.tracking import store as vstore

#: A job in seconds: the MLP on the bundled digits, the smoke budget, no per-trial lines.
TINY = ["model=mlp", "activation=relu", "data=digits", "budget=smoke", "verbose=0"]
#: Fewer images still (pruning, failure and search tests).
SMALL_DATA = ["data.train_samples=100", "data.test_samples=50", "model.hidden_layers=1"]

TRIAL_METRICS = ("val_accuracy_kept", "test_accuracy", "train_time_s")


ROLE, TRIAL_ID, PARENT = vstore.ROLE, vstore.TRIAL_ID, vstore.PARENT


def compose(home: Path, uri: str, experiment: str, *extra: str):
    return config.compose([*TINY, f"tracking.uri={uri}",
                           f"tuner.directory={home / 'tuner_state'}",
                           f"experiment={experiment}", *extra])


def project_dir(cfg) -> Path:
    """The tuner project a job uses: <tuner.directory>/<experiment>-<job key>."""
    key = plan.job_key(cfg, vstore.resolve_uri(cfg.tracking.uri))
    return Path(cfg.tuner.directory).resolve() / f"{cfg.experiment}-{key}"


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def experiment_runs(uri: str, experiment: str) -> list:
    found = client(uri).get_experiment_by_name(experiment)
    if found is None:
        return []
    return client(uri).search_runs([found.experiment_id], max_results=5000)


def children(uri: str, experiment: str, parent_id: str) -> list:
    return [r for r in experiment_runs(uri, experiment)
            if r.data.tags.get(ROLE) == "trial" and r.data.tags.get(PARENT) == parent_id]


def assert_completed_job(result, uri: str, experiment: str, trials: int | None = None) -> list:
    """The job completed, every trial is a FINISHED child run with its metrics; returns them."""
    assert result.status == "completed", result.message
    if trials is not None:
        assert result.completed == trials
    assert result.failed == 0
    parent = client(uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_completed"] == result.completed
    runs = children(uri, experiment, result.parent_run_id)
    assert [r.info.status for r in runs] == ["FINISHED"] * result.completed
    ids = [r.data.tags[TRIAL_ID] for r in runs]
    assert len(set(ids)) == len(ids), f"duplicated trial ids {ids}"
    for r in runs:
        for metric in TRIAL_METRICS:
            assert r.data.metrics.get(metric, 0) > 0, (metric, r.data.metrics)
    assert not [r for r in experiment_runs(uri, experiment) if r.info.status == "RUNNING"]
    return runs


def searched_values(r) -> tuple:
    params = r.data.params
    return tuple(params.get(k) for k in ("hidden_layers", "hidden_units", "dropout", "l2",
                                         "learning_rate"))
