"""The tuner (vggsweep.search.tuning): every keras-tuner oracle runs a tiny job to completion
through it, and only the best trial's model is kept on disk, where the store says it is.

Jobs run in-process through `vggsweep.job.task.run_job` (no TensorFlow import per test) on the
bundled digits with the smoke budget and the MLP, each in its own tuner directory. One SQLite store
is shared by the module (creating a store costs seconds); every test uses its own experiment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    TRIAL_ID,
    assert_completed_job,
    children,
    client,
    compose,
    project_dir,
    searched_values,
)

from vggsweep.job import task
from vggsweep.search import tuning

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
    assert len(list((project_dir(cfg) / tuning.KEPT_DIR).glob("trial_*.keras"))) == 1




def test_only_the_best_model_is_kept_and_loads_safely(finished, store):
    import keras
    import numpy as np

    project = finished["project"]
    files = [p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()]
    models_ = [f for f in files if f.endswith((".keras", ".h5"))]
    assert len(models_) == 1 and models_[0].startswith(f"{tuning.KEPT_DIR}/trial_"), files
    assert not [f for f in files if Path(f).name.startswith(".tmp-")], files
    assert sorted(f for f in files if f.endswith("trial.json")) == [
        f"trial_{i}/trial.json" for i in range(3)]
    assert not (project / "best.json").exists()  # the store decides which trial is best

    model = keras.saving.load_model(project / models_[0], safe_mode=True)
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)

    # the kept model is the best trial's as the store ranks them (ties: the first), its path is
    # recorded on that trial's run, and it was logged on the parent run
    runs = children(store, finished["experiment"], finished["result"].parent_run_id)
    best_score = max(r.data.metrics["val_accuracy_kept"] for r in runs)
    first_best = min(int(r.data.tags[TRIAL_ID]) for r in runs
                     if r.data.metrics["val_accuracy_kept"] == pytest.approx(best_score))
    assert models_[0] == f"{tuning.KEPT_DIR}/trial_{first_best}.keras"
    kept = next(r for r in runs if r.data.tags[TRIAL_ID] == str(first_best))
    assert kept.data.tags["vggsweep.kept_model"] == str(project / models_[0])
    parent_id = finished["result"].parent_run_id
    experiment_id = client(store).get_run(parent_id).info.experiment_id
    [logged] = [m for m in client(store).search_logged_models([experiment_id])
                if m.source_run_id == parent_id]
    assert logged.name == "best_model" and logged.status == "READY"
    import mlflow.pyfunc

    mlflow.set_tracking_uri(store)
    again = mlflow.pyfunc.load_model(logged.model_uri).unwrap_python_model().model
    assert again.predict(np.zeros((1, 28, 28, 1), "float32"), verbose=0).shape == (1, 10)
