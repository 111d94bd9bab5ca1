"""The device a job trains on, and what makes it fast there (`accelerator` config section).

On a CPU the defaults are Keras' own. When a GPU is visible (or `accelerator.device=gpu`), the
fast path turns on, each part overridable: XLA compilation, bf16 mixed precision, several steps
per execution, larger batches with the learning rate scaled linearly, and the data kept on the
device. Workers of a job either share one GPU (each with a memory limit) or get one each.
Backend-specific code is guarded here; everything else stays backend-agnostic Keras.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import re
import sys
import tempfile

GPU_STEPS_PER_EXECUTION = 32
GPU_BATCH_SCALE = 4
#: What TensorFlow's native code prints on a CPU-only machine, and is no problem: notes on
#: oneDNN, on missing CUDA drivers, "failed call to cuInit", CPU instruction sets.
BENIGN = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations"
    r"|cudart_stub\.cc|cuda_platform\.cc:\d+\] failed call to cuInit|cuda_executor|"
    r"cpu_feature_guard|To enable the following instructions|rebuild TensorFlow with the "
    r"appropriate compiler flags|computation_placer|TF-TRT Warning|Unable to register cu")


@contextlib.contextmanager
def native_quiet():
    """Hides what native libraries print on stderr meanwhile when it is benign (`BENIGN`);
    anything else still reaches stderr, after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines()
                    if line.strip() and not BENIGN.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


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
    get = (lambda key: acc_cfg.get(key)) if acc_cfg is not None else (lambda key: None)
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


def training_batches(x, y, batch_size: int, steps_per_execution: int = 1) -> dict:
    """The `model.fit` keywords that feed the training split: every epoch a new permutation, in
    batches of `batch_size` (the last one partial), as Keras shuffles arrays.

    On TensorFlow, one `tf.data` pipeline repeated for the whole fit (`steps_per_epoch`), with
    tf.data's autotuning off. Keras feeds NumPy arrays through an autotuned pipeline and builds
    a new iterator at every epoch; measured here (S3's CNN, 9,000 MNIST images, batch 64,
    2 cores), ending such an iterator often stalled the training, CPU idle: 2.8 to 4.3 s at the
    start of an epoch, up to 20 s at the end of a fit. The permutation shuffles indices (the
    images are gathered per batch: no shuffle buffer of images), seeded like every other random
    draw by `keras.utils.set_random_seed`. With several steps per execution (the GPU path) the
    pipeline ends with each epoch instead: Keras' last execution of an epoch would otherwise run
    past the epoch's end into the next permutation. On the other backends: the arrays themselves.
    """
    if backend() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    if steps_per_execution > 1:
        return {"x": _batches(x, y, batch_size, shuffle=True), "shuffle": False}
    return {"x": _batches(x, y, batch_size, shuffle=True, repeat=True), "shuffle": False,
            "steps_per_epoch": math.ceil(int(x.shape[0]) / batch_size)}


def validation_batches(x, y, batch_size: int) -> dict:
    """The `model.fit` keywords that feed the validation split (in order, every epoch)."""
    if backend() != "tensorflow":
        return {"validation_data": (x, y), "validation_batch_size": batch_size}
    return {"validation_data": _batches(x, y, batch_size)}


def prediction_batches(x, batch_size: int) -> dict:
    """The `model.predict` keywords that feed `x` in order."""
    if backend() != "tensorflow":
        return {"x": x, "batch_size": batch_size}
    return {"x": _batches(x, None, batch_size)}


def _batches(x, y, batch_size: int, *, shuffle: bool = False, repeat: bool = False):
    """tf.data batches of `x` (and `y`), gathered at batches of indices: in order, or a new
    permutation every epoch (`shuffle`); ending with the epoch, or repeated for the whole fit;
    two prefetched, no autotuning (`training_batches` says why)."""
    import tensorflow as tf

    count = int(x.shape[0])
    order = tf.data.Dataset.range(count)
    if shuffle:
        order = order.shuffle(count, reshuffle_each_iteration=True)
    order = order.batch(batch_size)
    if repeat:
        order = order.repeat()
    arrays = tf.data.Dataset.from_tensors((x,) if y is None else (x, y)).repeat()
    pick = ((lambda index, xs: tf.gather(xs[0], index)) if y is None else
            (lambda index, xy: (tf.gather(xy[0], index), tf.gather(xy[1], index))))
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.zip((order, arrays)).map(pick).prefetch(2).with_options(options)


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
