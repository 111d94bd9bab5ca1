"""Keras backends: the core end-to-end path under JAX on the CPU (the GPU fast path's backend),
recorded as such on every job."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import run_cli


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="needs JAX: pip install -e '.[jax]'")
def test_a_sweep_runs_under_jax(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    done = run_cli(["-m", "model=mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
                    "data.train_samples=100", "data.test_samples=50", "budget.max_trials=1",
                    "experiment=jax"], tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("jax")
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("vggsweep.role") == "job"]
    assert len(jobs) == 2 and {j.data.tags["keras_backend"] for j in jobs} == {"jax"}
    assert all(j.info.status == "FINISHED" for j in jobs)
    models = client.search_logged_models([experiment.experiment_id])
    assert len(models) == 2 and all(m.status == "READY" for m in models)
