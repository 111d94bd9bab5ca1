"""Benchmark: each model family at the default point of its shipped config, trained on real MNIST.

Prints one row per model: parameters, forward FLOPs per image, epochs, validation and test
accuracy, training time and training images per second. A benchmark, not a test: nothing is
asserted. The test set is the complete official one; select on validation, read test once.

    python bench/families.py                          # cnn, vgg16, mlp; budget=quick (5000 images)
    python bench/families.py --models cnn mlp budget=full
    python bench/families.py --vgg-width 0.25 data.train_samples=2000 budget.epochs=2

Trailing arguments are Hydra overrides applied to every model (budget, data, optimizer, seed).
Results also go to bench/results/families.json.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = (ROOT / ".." / "shared" / "data" / "mnist").resolve()
RESULTS = ROOT / "bench" / "results" / "families.json"
sys.path.insert(0, str(ROOT))

from vggsweep import (
    config,
    summary,
)
from vggsweep.config import space
from vggsweep.errors import ConfigError
from vggsweep.job import checks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "vgg16", "mlp"],
                        help="model configs to train (conf/model/*.yaml)")
    parser.add_argument("--vgg-width", type=float, default=None,
                        help="model.width_multiplier for VGG models (default: the config's 1.0)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every model")
    return parser.parse_args(argv)


def compose(name: str, args) -> object:
    overrides = [f"model={name}", "budget=quick", "activation=relu", f"data.path={MNIST_DIR}",
                 "data.download=false", *args.overrides]
    if name.startswith("vgg") and args.vgg_width is not None:
        overrides.append(f"model.width_multiplier={args.vgg_width}")
    cfg = config.compose(overrides)
    checks.validate(cfg)
    return cfg


def bench_one(name: str, args) -> dict:
    """Trains one model at its default point (the product's own training path)."""
    from vggsweep import data
    from vggsweep.models import training
    from vggsweep.runtime import accelerator

    cfg = compose(name, args)
    splits = data.load(cfg.data)
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    batch_size, optimizer_kwargs = accelerator.scaled(cfg.budget.batch_size, optimizer_kwargs,
                                                      cfg.accelerator)
    trained = training.train_one(
        cfg.model.family, model_kwargs, optimizer_kwargs, splits,
        image_size=config.effective_image_size(cfg.data, splits.image_shape),
        epochs=cfg.budget.epochs, batch_size=batch_size, seed=cfg.seed,
        patience=cfg.budget.patience, compile_options=accelerator.compile_options(cfg.accelerator))
    fit = trained.fit
    return {
        "model": name, "parameters": trained.model.count_params(),
        "forward_flops": summary.forward_flops(trained.model), "train_size": len(splits.y_train),
        "test_size": len(splits.y_test), "epochs": fit.epochs_run,
        "val_accuracy": trained.val_accuracy, "test_accuracy": trained.test["test_accuracy"],
        "train_time_s": fit.train_time_s, "train_images_per_s": fit.images_per_s,
        "point": model_kwargs,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not MNIST_DIR.is_dir():
        print(f"skipped: no MNIST at {MNIST_DIR} (the shared data directory)", file=sys.stderr)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    header = (f"{'model':<8}{'params':>13}{'MFLOPs/img':>12}{'epochs':>8}{'val_acc':>9}"
              f"{'test_acc':>10}{'train_s':>9}{'img/s':>9}")
    rows = []
    try:
        for name in args.models:
            started = time.perf_counter()
            row = bench_one(name, args)
            row["total_s"] = time.perf_counter() - started
            rows.append(row)
            if len(rows) == 1:
                print(f"train {row['train_size']} images, test {row['test_size']} (MNIST)")
                print(header)
            print(f"{name:<8}{row['parameters']:>13,}{row['forward_flops'] / 1e6:>12.1f}"
                  f"{row['epochs']:>8}{row['val_accuracy']:>9.4f}{row['test_accuracy']:>10.4f}"
                  f"{row['train_time_s']:>9.1f}{row['train_images_per_s']:>9.0f}", flush=True)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2, default=list))  # stages: an OmegaConf list
    print(f"results: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
