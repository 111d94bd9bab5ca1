"""The product's main path, end to end: a real multirun in a subprocess, read back from MLflow."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

SWEEP = ["-m", "model=cnn,mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
         "data.train_samples=200", "data.test_samples=100", "experiment=e2e"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    result = run_cli(SWEEP, home, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Downloading artifacts" not in result.stdout + result.stderr  # no library progress bar
    return home, result


def _runs(home):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vggsweep.role") == "job"]
    children = [r for r in runs if r.data.tags.get("vggsweep.role") == "trial"]
    return parents, children


@pytest.mark.subprocess
def test_one_parent_per_job_with_finished_tracked_trials(sweep):
    home, _ = sweep
    parents, children = _runs(home)
    assert len(parents) == 4
    assert {(p.data.tags["model"], p.data.tags["activation"]) for p in parents} == {
        ("cnn", "relu"), ("cnn", "tanh"), ("mlp", "relu"), ("mlp", "tanh")}
    for parent in parents:
        assert parent.info.status == "FINISHED"
        for tag in ("git_commit", "keras_backend", "vggsweep.overrides", "vggsweep.job_key"):
            assert parent.data.tags.get(tag), tag
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(mine) == 2
        for child in mine:
            assert child.info.status == "FINISHED"
            metrics = child.data.metrics
            assert metrics["train_time_s"] > 0 and metrics["param_count"] > 0
            assert 0 < metrics["val_accuracy"] <= 1 and 0 < metrics["test_accuracy"] <= 1
            assert child.data.params["activation"] == parent.data.tags["activation"]
            assert {"learning_rate", "dropout", "seed"} <= set(child.data.params)


@pytest.mark.subprocess
def test_per_epoch_curves_and_best_model_are_logged(sweep):
    import mlflow

    home, _ = sweep
    parents, children = _runs(home)
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    history = client.get_metric_history(children[0].info.run_id, "loss")
    assert len(history) == 1 and history[0].step == 0  # one epoch: one point, per epoch
    for child in children:  # exactly one point per epoch of every per-epoch metric
        epochs = int(child.data.metrics["epochs_run"])
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert steps == list(range(epochs)), (key, steps)
        assert not {k for k in child.data.metrics if k.startswith("validation_")}
        assert not {k for k in child.data.params if k.startswith("optimizer_")}
        assert child.data.tags["activation"] == child.data.params["activation"]
    assert {p.data.params.get("model.family") for p in parents} == {"cnn", "mlp"}
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"config.yaml", "plots"} <= artifacts
    experiment_id = parents[0].info.experiment_id
    models = client.search_logged_models([experiment_id])
    assert {m.source_run_id for m in models} == {p.info.run_id for p in parents}
    assert all(m.name == "best_model" and m.status == "READY" for m in models)
    # its requirements pin this environment's versions (MLflow's mismatch check is skipped)
    from importlib import metadata

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{models[0].artifact_location}/requirements.txt",
        dst_path=str(home / "requirements"))
    pins = Path(local).read_text().split()
    assert {f"keras=={metadata.version('keras')}", f"numpy=={metadata.version('numpy')}",
            f"mlflow=={mlflow.__version__}"} <= set(pins)


def test_the_requirement_check_is_skipped_only_while_a_model_is_saved():
    from mlflow.utils import environment

    from vggsweep.tracking import internals

    original = environment.warn_dependency_requirement_mismatches
    with internals.requirements_already_checked():
        assert environment.warn_dependency_requirement_mismatches is not original
    assert environment.warn_dependency_requirement_mismatches is original


@pytest.mark.subprocess
def test_leaderboard_csv_has_one_row_per_trial_and_the_cli_reproduces_it(sweep):
    home, result = sweep
    [csv] = list((home / "multirun").glob("*/*/leaderboard.csv"))
    table = pd.read_csv(csv)
    assert len(table) == 8
    assert list(table["val_accuracy"]) == sorted(table["val_accuracy"], reverse=True)
    assert {"model", "activation", "val_accuracy", "test_accuracy", "train_time_s",
            "param_count", "status", "run_id"} <= set(table.columns)
    rebuilt = run_cli(["--experiment", "e2e", "--out", str(home / "again.csv")], home,
                      module="vggsweep.leaderboard")
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = pd.read_csv(home / "again.csv")
    assert list(again["run_id"]) == list(table["run_id"])
    assert (csv.parent / "report.html").is_file()


@pytest.mark.subprocess
def test_tuner_state_lives_outside_the_hydra_output_dirs(sweep):
    home, _ = sweep
    projects = list((home / "tuner_state").iterdir())
    assert len(projects) == 4
    assert all(len(list(p.glob("kept/trial_*.keras"))) == 1 for p in projects)
    assert not list(home.glob("tuner_state/*/trial_*/*.weights.h5"))  # only the best is kept
