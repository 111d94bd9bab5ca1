"""GPU benchmark: how much of a GPU vggsweep's fast path uses, on full MNIST.

Measured, in this order (each a plain figure, nothing asserted):
1. Training throughput (images/s, epochs after the first, which compiles) and achieved TFLOP/s
   (forward + backward = 3 x the forward FLOPs `python -m vggsweep.summary` counts, over the
   card's bf16 peak) for S3's CNN and VGG16 at full width.
2. Seconds of training until S3's CNN reaches 99% test accuracy (test measured after each
   epoch; this is a speed figure, not a selection).
3. The wall time of the `grid64` study at its reference budget (64 models x 10 epochs on all of
   MNIST), with 1 worker and with several workers sharing the one GPU.

Run it on the GPU machine with the JAX backend (the fast path there):

    KERAS_BACKEND=jax python bench/gpu.py --data-path ../shared/data/mnist --workers 4

`--smoke` shrinks everything (a check that the script runs, on any machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEAK_BF16_TFLOPS = 790.0  # H100/H200 SXM dense bf16, the anchor
S3 = ["model=cnn", "activation=relu", "model.conv_blocks=2", "model.filters=32",
      "model.kernel_size=3", "model.pool_size=2", "model.dense_layers=1", "model.dense_units=512",
      "model.dropout=0.0", "model.batch_norm=false", "optimizer.learning_rate=1e-3"]
VGG16 = ["model=vgg16", "activation=relu", "model.dropout=0.5", "optimizer.learning_rate=1e-3"]


class EpochClock:
    """A Keras callback that times each epoch and, optionally, measures test accuracy."""

    def __new__(cls, *args, **kwargs):
        import keras

        class _Clock(keras.callbacks.Callback):
            def __init__(self, test=None):
                super().__init__()
                self.test, self.times, self.test_accuracy = test, [], []

            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.started)
                if self.test is not None:
                    logits = self.model.predict(self.test[0], batch_size=4096, verbose=0)
                    self.test_accuracy.append(float((logits.argmax(1) == self.test[1]).mean()))

        return _Clock(*args, **kwargs)


def build(overrides: list[str], data_overrides: list[str]):
    from vggsweep import config, data
    from vggsweep.config import space
    from vggsweep.job import checks
    from vggsweep.models import training
    from vggsweep.runtime import accelerator

    cfg = config.compose([*overrides, *data_overrides])
    checks.validate(cfg)
    accelerator.apply(cfg.accelerator)
    splits = accelerator.on_device(data.load(cfg.data), cfg.accelerator)
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    batch, optimizer_kwargs = accelerator.scaled(cfg.budget.batch_size, optimizer_kwargs,
                                                 cfg.accelerator)
    from vggsweep import models

    model = models.build_model(cfg.model.family, model_kwargs, input_shape=splits.image_shape,
                               num_classes=splits.num_classes,
                               image_size=config.effective_image_size(cfg.data,
                                                                      splits.image_shape))
    training.compile_model(model, optimizer_kwargs, training.steps_per_epoch(splits, batch),
                           cfg.budget.epochs, **accelerator.compile_options(cfg.accelerator))
    return cfg, splits, model, batch


def throughput(name: str, overrides: list[str], data_overrides: list[str], epochs: int) -> dict:
    from vggsweep import summary
    from vggsweep.runtime import accelerator

    cfg, splits, model, batch = build(overrides, data_overrides)
    clock = EpochClock()
    model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=batch, verbose=0,
              callbacks=[clock])
    steady = clock.times[1:] or clock.times
    images_per_s = len(splits.y_train) / (sum(steady) / len(steady))
    flops = 3 * summary.forward_flops(model)
    tflops = images_per_s * flops / 1e12
    return {"model": name, "device": accelerator.describe(cfg.accelerator), "batch": batch,
            "images_per_s": images_per_s, "tflops": tflops,
            "share_of_peak": tflops / PEAK_BF16_TFLOPS, "first_epoch_s": clock.times[0]}


def time_to_accuracy(data_overrides: list[str], target: float, epochs: int) -> dict:
    cfg, splits, model, batch = build([*S3, f"budget.epochs={epochs}"], data_overrides)
    import numpy as np

    clock = EpochClock(test=(splits.x_test, np.asarray(splits.y_test)))
    model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=batch, verbose=0,
              callbacks=[clock])
    spent = 0.0
    for seconds, accuracy in zip(clock.times, clock.test_accuracy):
        spent += seconds
        if accuracy >= target:
            return {"seconds": spent, "epochs": clock.times.index(seconds) + 1,
                    "test_accuracy": accuracy}
    return {"seconds": None, "epochs": epochs, "test_accuracy": max(clock.test_accuracy)}


def grid64(data_overrides: list[str], workers: int, smoke: bool) -> float:
    home = Path(tempfile.mkdtemp(prefix="vggsweep-gpu-"))
    budget = ["budget=smoke", "budget.max_trials=4"] if smoke else []
    command = [sys.executable, "-m", "vggsweep", "study=grid64", *data_overrides, *budget,
               f"tuner.workers={workers}", "tracking.log_model=false", "verbose=0",
               f"experiment=grid64-w{workers}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=home, env={**os.environ, "VGGSWEEP_HOME": str(home)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"grid64 failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it run at all")
    args = parser.parse_args()
    data = ([f"data.path={Path(args.data_path).resolve()}"] if Path(args.data_path).is_dir()
            else ["data=digits"])
    if args.smoke:
        data += ["data.train_samples=256", "data.test_samples=128"]
    epochs = 2 if args.smoke else 4
    print(f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}; data {data[0]}", flush=True)
    for name, overrides in (("S3 cnn", S3), ("vgg16 (width 1.0)", VGG16)):
        row = throughput(name, overrides, data, epochs)
        print(f"{row['model']:<20} {row['device']}: batch {row['batch']}, "
              f"{row['images_per_s']:,.0f} images/s, {row['tflops']:.2f} TFLOP/s "
              f"({row['share_of_peak']:.2%} of {PEAK_BF16_TFLOPS:.0f} bf16), first epoch "
              f"{row['first_epoch_s']:.1f} s (compiles)", flush=True)
    reached = time_to_accuracy(data, 0.99, 2 if args.smoke else 10)
    print(f"S3 cnn to 99% test accuracy: {reached['seconds']} s of training, epoch "
          f"{reached['epochs']}, test accuracy {reached['test_accuracy']:.4f}", flush=True)
    for workers in (1, args.workers):
        print(f"grid64 (64 models x 10 epochs, all of MNIST) with {workers} worker(s): "
              f"{grid64(data, workers, args.smoke):.0f} s", flush=True)


if __name__ == "__main__":
    main()
