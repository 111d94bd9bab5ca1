"""The device policy (vggsweep.runtime.accelerator): another Keras backend runs a sweep, the GPU
path's choices, and data kept on the device.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_cli


@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="needs JAX: pip install -e '.[jax]'")
def test_a_sweep_runs_under_jax(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    done = run_cli(["-m", "model=mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
                    "data.train_samples=100", "data.test_samples=50", "budget.max_trials=1",
                    "experiment=jax"], tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # no start-up notes of JAX or of the TensorFlow that Keras imports anyway
    for note in ("cudart_stub", "oneDNN custom operations", "libtpu", "absl::InitializeLog"):
        assert note not in done.stdout + done.stderr
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("jax")
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("vggsweep.role") == "job"]
    assert len(jobs) == 2 and {j.data.tags["keras_backend"] for j in jobs} == {"jax"}
    assert all(j.info.status == "FINISHED" for j in jobs)
    models = client.search_logged_models([experiment.experiment_id])
    assert len(models) == 2 and all(m.status == "READY" for m in models)


def test_the_gpu_path_is_chosen_by_device_and_each_part_overridable(monkeypatch):
    from omegaconf import OmegaConf

    from vggsweep import config
    from vggsweep.runtime import accelerator

    cfg = config.compose([]).accelerator
    monkeypatch.setattr(accelerator, "gpu_count", lambda: 0)
    assert accelerator.compile_options(cfg) == {"jit_compile": "auto", "steps_per_execution": 1}
    assert accelerator.scaled(64, {"learning_rate": 1e-3}, cfg) == (64, {"learning_rate": 1e-3})
    assert not accelerator.mixed_precision(cfg)
    monkeypatch.setattr(accelerator, "gpu_count", lambda: 2)  # a machine with two GPUs
    assert accelerator.compile_options(cfg) == {"jit_compile": True, "steps_per_execution": 32}
    assert accelerator.scaled(64, {"learning_rate": 1e-3}, cfg) == (256, {"learning_rate": 4e-3})
    assert accelerator.mixed_precision(cfg)
    custom = OmegaConf.merge(cfg, {"jit_compile": False, "batch_scale": 1,
                                   "steps_per_execution": 8, "mixed_precision": False})
    assert accelerator.compile_options(custom) == {"jit_compile": False, "steps_per_execution": 8}
    assert accelerator.scaled(64, {"learning_rate": 1e-3}, custom)[0] == 64
    # workers: one GPU each, or all sharing one with a memory share each
    one_each = OmegaConf.merge(cfg, {"gpu_sharing": "one_each"})
    assert [accelerator.worker_env(one_each, i, 4)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == [
        "0", "1", "0", "1"]
    shared = accelerator.worker_env(cfg, 0, 4)
    assert shared["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.225"
    assert shared["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    cpu = OmegaConf.merge(cfg, {"device": "cpu"})
    assert not accelerator.on_gpu(cpu) and accelerator.worker_env(cpu, 0, 2) == {
        "CUDA_VISIBLE_DEVICES": ""}


def test_data_can_live_on_the_device(monkeypatch):
    """The arrays are moved once (here onto the CPU device); training reads them as they are."""
    from omegaconf import OmegaConf

    from vggsweep import config, data
    from vggsweep.config import space
    from vggsweep.models import training
    from vggsweep.runtime import accelerator

    cfg = config.compose(["model=mlp", "activation=relu", "data=digits",
                          "data.train_samples=60", "data.test_samples=30"])
    splits = data.load(cfg.data)
    moved = accelerator.on_device(splits, OmegaConf.merge(cfg.accelerator,
                                                          {"data_on_device": True}))
    assert type(moved.x_train) is not type(splits.x_train)
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    trained = training.train_one("mlp", model_kwargs, optimizer_kwargs, moved, image_size=28,
                                 epochs=1, batch_size=32, seed=0)
    assert 0 <= trained.test["test_accuracy"] <= 1
