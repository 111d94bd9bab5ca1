"""Tuners: every keras-tuner oracle runs a tiny job to completion; quasi-random search; atomic
tuner state; corrupt-state detection; best-model-only checkpoints; the job time limit.

Jobs run in-process through `vggsweep.job.task.run_job` (no TensorFlow import per test) on the bundled
digits with the smoke budget and the MLP, each in its own tuner directory. One SQLite store is
shared by the module (creating a store costs seconds); every test uses its own experiment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vggsweep import config
from vggsweep.errors import ConfigError, StateError
from vggsweep.job import plan, task
from vggsweep.runtime import files
from vggsweep.search import oracles, tuning
from vggsweep.tracking import store as vstore

TINY = ["model=mlp", "activation=relu", "data=digits", "budget=smoke", "verbose=0"]
TRIAL_METRICS = ("val_accuracy_kept", "test_accuracy", "train_time_s")
ROLE, TRIAL_ID, PARENT = vstore.ROLE, vstore.TRIAL_ID, vstore.PARENT


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow SQLite store for the module's in-process jobs."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The launch directory of a test: cwd, VGGSWEEP_HOME, no inherited tracking URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGGSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


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


# --------------------------------------------------------------------------------------------
# every tuner runs a tiny job


TUNER_CASES = {
    "random": [],
    "grid": [],
    # one random point, then the Gaussian process proposes the next one
    "bayesian": ["tuner.num_initial_points=1"],
    # max 2 epochs, factor 2: a bracket of 1-epoch trials whose best is promoted to 2 epochs
    "hyperband": ["budget.epochs=2", "tuner.factor=2"],
    "quasi_random": [],
}


@pytest.mark.parametrize("name", list(TUNER_CASES))
def test_every_tuner_runs_a_tiny_job(name, home, store):
    experiment = f"tuner-{name}"
    cfg = compose(home, store, experiment, f"tuner={name}", "tracking.log_model=false",
                  *TUNER_CASES[name])
    assert cfg.tuner.name == name

    result = task.run_job(cfg)

    expected = None if name == "hyperband" else cfg.budget.max_trials
    runs = assert_completed_job(result, store, experiment, expected)
    assert result.best_val_accuracy == max(r.data.metrics["val_accuracy_kept"] for r in runs)
    if name != "hyperband":
        # distinct points (hyperband may train one point again, longer, when promoting it)
        assert len({searched_values(r) for r in runs}) == len(runs)
    if name == "hyperband":
        assert result.completed >= 3
        promoted = [r for r in runs if "tuner/trial_id" in r.data.params]
        assert promoted, "no trial was promoted from a checkpoint"
        assert all(r.data.params["tuner/epochs"] == "2" for r in promoted)
        # the per-trial weights Hyperband resumes from are pruned at the end of the search
        assert not list(project_dir(cfg).rglob(tuning.CHECKPOINT))
    assert (project_dir(cfg) / tuning.BEST_MODEL).is_file()


# --------------------------------------------------------------------------------------------
# quasi-random search


def _space():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Int("units", 16, 512, step=16)
    hp.Float("rate", 1e-4, 1e-2, sampling="log")
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    hp.Choice("act", ["relu", "tanh", "elu"])
    hp.Fixed("width", 3)
    return hp


def _quasi_oracle(directory: Path, seed: int = 7, max_trials: int = 50):
    oracle = oracles.QuasiRandomOracle(objective=oracles.OBJECTIVE, max_trials=max_trials,
                                      seed=seed)
    oracle._set_project_dir(str(directory), "quasi")
    oracle.update_space(_space())
    return oracle


def _run_trials(oracle, count: int) -> list[dict]:
    """Creates `count` trials and ends them COMPLETED, as a tuner would (keras-tuner's
    `on_trial_end` saves the oracle again once the trial is no longer ongoing); returns their
    values."""
    from keras_tuner.src.engine import trial as trial_module

    values = []
    for _ in range(count):
        trial = oracle.create_trial("tuner0")
        assert trial.status == trial_module.TrialStatus.RUNNING
        values.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = trial_module.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        oracle.save()
    return values


def test_quasi_random_points_are_distinct_and_in_range(tmp_path):
    points = _run_trials(_quasi_oracle(tmp_path), 20)
    keys = [tuple(sorted(p.items())) for p in points]
    assert len(set(keys)) == len(keys)
    for p in points:
        assert 16 <= p["units"] <= 512 and p["units"] % 16 == 0
        assert 1e-4 <= p["rate"] <= 1e-2
        assert 0.0 <= p["dropout"] <= 0.5 + 1e-9
        assert p["act"] in ("relu", "tanh", "elu")
        assert p["width"] == 3
    # low discrepancy: 20 points cover every choice and both halves of each range
    assert {p["act"] for p in points} == {"relu", "tanh", "elu"}
    assert min(p["units"] for p in points) < 264 < max(p["units"] for p in points)
    assert min(p["rate"] for p in points) < 1e-3 < max(p["rate"] for p in points)


def test_quasi_random_continues_its_sequence_after_reload(tmp_path):
    reference = _run_trials(_quasi_oracle(tmp_path / "reference"), 8)

    first = _quasi_oracle(tmp_path / "resumed")
    before = _run_trials(first, 4)
    state = json.loads((tmp_path / "resumed" / "quasi" / "oracle.json").read_text())
    assert state["next_index"] == first._next_index >= 4

    again = _quasi_oracle(tmp_path / "resumed")
    again.reload()
    assert again._next_index == state["next_index"]
    after = _run_trials(again, 4)
    assert before + after == reference
    assert sorted(again.trials) == sorted(f"{i:02d}" for i in range(8))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["random", "quasi_random"])
def test_a_seed_proposes_the_same_points_every_time(name, seed, tmp_path):
    """`seed: 0` (the default) seeds the tuner like any other seed: two fresh searches with the
    same seed propose the same hyperparameters."""
    from omegaconf import OmegaConf

    tuner_cfg = OmegaConf.create({"name": name})
    budget = OmegaConf.create({"max_trials": 5})
    proposals = []
    for attempt in range(2):
        oracle = oracles.make_oracle(tuner_cfg, budget, seed=seed)
        oracle._set_project_dir(str(tmp_path / str(attempt)), "p")
        oracle.update_space(_space())
        proposals.append(_run_trials(oracle, 3))
    assert proposals[0] == proposals[1]


# --------------------------------------------------------------------------------------------
# atomic state


def test_atomic_write_json_writes_a_complete_file_and_no_temp_file(tmp_path):
    path = tmp_path / "deep" / "state.json"
    obj = {"trials": list(range(1000)), "name": "x" * 1000}
    text = files.atomic_write_json(str(path), obj)
    assert json.loads(path.read_text()) == obj == json.loads(text)
    files.atomic_write_json(str(path), {"replaced": True})
    assert json.loads(path.read_text()) == {"replaced": True}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize("failure", ["fsync", "unserializable"])
def test_atomic_write_json_failure_keeps_the_old_file_and_no_temp_file(failure, tmp_path,
                                                                       monkeypatch):
    path = tmp_path / "state.json"
    files.atomic_write_json(str(path), {"version": 1})
    obj = {"version": 2}
    if failure == "fsync":
        def broken_fsync(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(oracles.os, "fsync", broken_fsync)
    else:
        obj = {"version": object()}
    with pytest.raises((OSError, TypeError)):
        files.atomic_write_json(str(path), obj)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "a temporary file was left"


# --------------------------------------------------------------------------------------------
# a finished random-search job: best-model-only checkpoints, corrupt state


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store):
    """A random-search job of 3 trials that logged its best model (in its own launch dir)."""
    home = tmp_path_factory.mktemp("finished")
    patch = pytest.MonkeyPatch()
    patch.chdir(home)
    patch.setenv("VGGSWEEP_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        experiment = "finished"
        cfg = compose(home, store, experiment, "budget.max_trials=3")
        result = task.run_job(cfg)
    finally:
        patch.undo()
    assert_completed_job(result, store, experiment, 3)
    return {"cfg": cfg, "result": result, "project": project_dir(cfg), "experiment": experiment}


def test_only_the_best_model_is_kept_and_loads_safely(finished, store):
    import keras
    import numpy as np

    project = finished["project"]
    files = [p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()]
    models_ = [f for f in files if f.endswith((".keras", ".h5"))]
    assert models_ == [tuning.BEST_MODEL], files
    assert not [f for f in files if Path(f).name.startswith(".tmp-")], files
    assert sorted(f for f in files if f.endswith("trial.json")) == [
        f"trial_{i}/trial.json" for i in range(3)]

    model = keras.saving.load_model(project / tuning.BEST_MODEL, safe_mode=True)
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)

    # the kept model is the best trial's, and it was logged on the parent run
    runs = children(store, finished["experiment"], finished["result"].parent_run_id)
    best_score = max(r.data.metrics["val_accuracy_kept"] for r in runs)
    best = json.loads((project / "best.json").read_text())
    kept = next(r for r in runs if r.data.tags[TRIAL_ID] == best["trial_id"])
    assert kept.data.metrics["val_accuracy_kept"] == pytest.approx(best_score)  # ties: the first
    first_best = min(int(r.data.tags[TRIAL_ID]) for r in runs
                     if r.data.metrics["val_accuracy_kept"] == pytest.approx(best_score))
    assert int(best["trial_id"]) == first_best
    parent_id = finished["result"].parent_run_id
    experiment_id = client(store).get_run(parent_id).info.experiment_id
    [logged] = [m for m in client(store).search_logged_models([experiment_id])
                if m.source_run_id == parent_id]
    assert logged.name == "best_model" and logged.status == "READY"
    import mlflow.keras

    mlflow.set_tracking_uri(store)
    again = mlflow.keras.load_model(logged.model_uri, load_model_kwargs={"safe_mode": True})
    assert again.predict(np.zeros((1, 28, 28, 1), "float32"), verbose=0).shape == (1, 10)


def _copy_project(finished, cfg) -> Path:
    target = project_dir(cfg)
    shutil.copytree(finished["project"], target)
    return target


def _truncate(path: Path) -> None:
    text = path.read_text()
    assert len(text) > 10
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("state_file", ["trial_1/trial.json", "oracle.json"])
def test_corrupt_state_stops_the_job_with_one_line_naming_the_file(state_file, finished, home,
                                                                    store):
    experiment = finished["experiment"]
    cfg = compose(home, store, experiment, "budget.max_trials=3")
    project = _copy_project(finished, cfg)
    broken = project / state_file
    _truncate(broken)

    with pytest.raises(ConfigError) as caught:
        task.run_job(cfg)

    assert isinstance(caught.value, StateError)
    message = str(caught.value)
    assert "\n" not in message
    assert str(broken) in message
    assert "tuner.fresh=true" in message
    assert not [r for r in experiment_runs(store, experiment) if r.info.status == "RUNNING"]


def test_fresh_recovers_from_a_corrupt_state(finished, home, store):
    experiment = finished["experiment"]
    cfg = compose(home, store, experiment, "budget.max_trials=3")
    project = _copy_project(finished, cfg)
    _truncate(project / "oracle.json")
    with pytest.raises(StateError):
        task.run_job(cfg)

    fresh = compose(home, store, experiment, "budget.max_trials=1", "tuner.fresh=true",
                    "tracking.log_model=false")
    assert project_dir(fresh) == project  # fresh and max_trials do not re-key the job
    result = task.run_job(fresh)
    assert result.status == "completed" and result.completed == 1
    json.loads((project / "oracle.json").read_text())
    assert sorted(p.name for p in project.glob("trial_*")) == ["trial_0"]


def test_corrupt_state_via_cli_exits_2_with_one_line(home):
    overrides = [*TINY, "experiment=corrupt-cli"]
    cfg = config.compose(overrides)  # the job's config, as the CLI composes it
    project = Path(home / "tuner_state") / (
        f"{cfg.experiment}-{plan.job_key(cfg, vstore.resolve_uri(None))}")
    project.mkdir(parents=True)
    broken = project / "oracle.json"
    broken.write_text('{"ongoing_trials": {}, "hyperparam')
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1")

    proc = subprocess.run([sys.executable, "-m", "vggsweep", *overrides], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300)

    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if not _library_noise(line)]
    assert len(ours) == 1, ours
    assert ours[0].startswith("error: ") and str(broken) in ours[0]
    assert "trial 1/" not in proc.stdout
    assert broken.read_text() == '{"ongoing_trials": {}, "hyperparam'  # left for the user


def _library_noise(line: str) -> bool:
    """TensorFlow/absl start-up logging and MLflow's store-creation notes (not vggsweep's)."""
    return (not line.strip() or line[:5] in ("I0000", "W0000", "E0000")
            or line.startswith(("WARNING: All log messages before absl", "To enable the following"))
            or " INFO mlflow." in line)


# --------------------------------------------------------------------------------------------
# time limit


def test_time_limit_ends_the_job_normally_after_one_trial(home, store):
    experiment = "time-limit"
    cfg = compose(home, store, experiment, "budget.max_trials=3", "budget.time_limit_s=0.001",
                  "tracking.log_model=false")
    result = task.run_job(cfg)
    assert_completed_job(result, store, experiment, 1)
