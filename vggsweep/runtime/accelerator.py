"""The device a job trains on, and what makes it fast there (`accelerator` config section).

On a CPU the defaults are Keras' own. When a GPU is visible (or `accelerator.device=gpu`), the
fast path turns on, each part overridable: XLA compilation, bf16 mixed precision, several steps
per execution, larger batches with the learning rate scaled linearly, and the data kept on the
device. Workers of a job either share one GPU (each with a memory limit) or get one each.
Backend-specific code is guarded here; everything else stays backend-agnostic Keras.
"""

from __future__ import annotations

import functools
import importlib.util
import os

from vggsweep.runtime.quiet import native_quiet

GPU_STEPS_PER_EXECUTION = 32
GPU_BATCH_SCALE = 4
@functools.lru_cache(maxsize=1)
def keras_module():
    """Keras, imported once with the backend's benign start-up notes hidden."""
    with native_quiet():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the cuInit probe happens here, quietly
        elif importlib.util.find_spec("tensorflow") is not None:
            # Keras imports an installed TensorFlow on any backend (saving a model asks
            # `tf.available`): here, where its start-up notes are hidden, not in mid-trial.
            import tensorflow  # noqa: F401
    return keras


def backend() -> str:
    """The Keras backend this process trains with (KERAS_BACKEND, else Keras' config)."""
    return keras_module().backend.backend()


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """GPUs the backend can see (0 without one, or with CUDA_VISIBLE_DEVICES empty)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    name = backend()
    with native_quiet():
        return _count(name)


def _count(name: str) -> int:
    try:
        if name == "tensorflow":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if name == "jax":
            import jax

            return sum(1 for device in jax.devices() if device.platform == "gpu")
        if name == "torch":
            import torch

            return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken driver is no GPU
        return 0
    return 0


def on_gpu(acc_cfg) -> bool:
    """Whether the fast GPU path applies: device=gpu, or auto with a GPU visible."""
    device = str(acc_cfg.get("device", "auto")) if acc_cfg is not None else "auto"
    if device == "cpu":
        return False
    return device == "gpu" or gpu_count() > 0


def _choose(value, gpu: bool, on: object, off: object):
    return value if value is not None else (on if gpu else off)


def compile_options(acc_cfg) -> dict:
    """`model.compile` options for this device: XLA and steps per execution."""
    gpu = on_gpu(acc_cfg)
    get = acc_cfg.get if acc_cfg is not None else (lambda _key: None)
    jit = get("jit_compile")
    return {
        "jit_compile": "auto" if jit is None and not gpu else bool(_choose(jit, gpu, True, False)),
        "steps_per_execution": int(_choose(get("steps_per_execution"), gpu,
                                           GPU_STEPS_PER_EXECUTION, 1)),
    }


def batch_scale(acc_cfg) -> int:
    """How many times the configured batch a step takes (the learning rate scales with it)."""
    value = acc_cfg.get("batch_scale") if acc_cfg is not None else None
    return int(_choose(value, on_gpu(acc_cfg), GPU_BATCH_SCALE, 1))


def scaled(batch_size: int, optimizer_kwargs: dict, acc_cfg) -> tuple[int, dict]:
    """The batch and learning rate a step takes on this device: N times the configured batch
    with N times the learning rate (the linear scaling rule), N = `batch_scale`."""
    scale = batch_scale(acc_cfg)
    if scale == 1:
        return batch_size, optimizer_kwargs
    return batch_size * scale, {**optimizer_kwargs,
                                "learning_rate": optimizer_kwargs["learning_rate"] * scale}


def on_device(splits, acc_cfg):
    """The splits with their arrays on the accelerator, put there once (not copied at every
    step); the test labels stay on the host, where the metrics are computed."""
    value = acc_cfg.get("data_on_device") if acc_cfg is not None else None
    if not _choose(value, on_gpu(acc_cfg), True, False):
        return splits
    import dataclasses

    if backend() == "jax":
        import jax

        put = jax.device_put
    elif backend() == "tensorflow":
        import tensorflow as tf

        def put(array):
            with tf.device("/GPU:0" if gpu_count() else "/CPU:0"):
                return tf.convert_to_tensor(array)
    else:
        return splits
    moved = {name: put(getattr(splits, name))
             for name in ("x_train", "y_train", "x_val", "y_val", "x_test")}
    return dataclasses.replace(splits, **moved)


def mixed_precision(acc_cfg) -> bool:
    value = acc_cfg.get("mixed_precision") if acc_cfg is not None else None
    return bool(_choose(value, on_gpu(acc_cfg), True, False))


def apply(acc_cfg) -> None:
    """Per process, before any model is built: the global dtype policy."""
    keras = keras_module()
    keras.config.set_dtype_policy("mixed_bfloat16" if mixed_precision(acc_cfg) else "float32")


def describe(acc_cfg) -> str:
    """One line for the parent run's `device` tag: what trained and how."""
    if not on_gpu(acc_cfg):
        return f"cpu ({os.cpu_count()} cores)"
    options = compile_options(acc_cfg)
    return (f"gpu x{max(gpu_count(), 1)}, xla={options['jit_compile']}, "
            f"bf16={mixed_precision(acc_cfg)}, steps_per_execution="
            f"{options['steps_per_execution']}, batch x{batch_scale(acc_cfg)}")


def worker_env(acc_cfg, index: int, workers: int) -> dict:
    """Environment of a job's worker `index` (0-based) of `workers`: its GPU, or its share."""
    gpus = gpu_count() if on_gpu(acc_cfg) else 0
    if gpus == 0:
        return {"CUDA_VISIBLE_DEVICES": ""} if str(acc_cfg.get("device")) == "cpu" else {}
    if str(acc_cfg.get("gpu_sharing")) == "one_each":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        return {"CUDA_VISIBLE_DEVICES": ids[index % len(ids)]}
    share = max(1, min(workers, 64))
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX: no process takes the whole card
           "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / share:.3f}",
           "TF_FORCE_GPU_ALLOW_GROWTH": "true",
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    return env


def limit_memory(acc_cfg) -> None:
    """In a worker sharing a GPU, before the backend starts: at most `gpu_memory_mb`
    (TensorFlow; JAX takes its share from `worker_env`'s memory fraction)."""
    megabytes = acc_cfg.get("gpu_memory_mb") if acc_cfg is not None else None
    if not megabytes or backend() != "tensorflow" or not on_gpu(acc_cfg):
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.set_logical_device_configuration(
            gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(megabytes))])
