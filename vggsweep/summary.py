"""Prints a model's Keras summary, parameter count, forward FLOPs and block output sizes.

    python -m vggsweep.summary model=vgg16 data.image_size=224 model.batch_norm=false

Takes the same Hydra overrides as a run (one value per key, no sweep syntax) and shows the model at
the default point of its search space, or at the values given. Nothing is trained, tracked or read
from a dataset. Bad input gives one line on stderr and exit status 2.
"""

import argparse
import math
import os
import sys

from vggsweep import config, models
from vggsweep.config import space
from vggsweep.errors import ConfigError
from vggsweep.job import checks
from vggsweep.models import footprint

#: MNIST and the digits dataset: 28x28 grayscale images, 10 classes.
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def forward_flops(model) -> int:
    """Forward-pass FLOPs per image: 2 x the multiply-adds of every Conv2D and Dense layer.

    Counted from the layer shapes (biases, normalization, activations and pools are left out,
    as is usual: they are a small fraction of a convolutional network's cost).
    """
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            total += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
        elif kind == "Dense":
            units_in, units_out = layer.kernel.shape
            total += 2 * units_in * units_out
    return int(total)


def describe_point(params: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def check_one_job(overrides: list[str]) -> None:
    """Refuses sweep syntax (`model=vgg16,cnn`) and unparsable overrides, in one line."""
    try:
        jobs = config.expand_sweep(list(overrides))
    except Exception as error:  # noqa: BLE001 - Hydra's parse errors span several lines
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ConfigError(f"cannot parse the overrides {overrides}: {first_line}") from None
    if len(jobs) > 1:
        raise ConfigError(
            f"the summary shows one model, but these overrides sweep {len(jobs)} combinations; "
            "give one value per key"
        )


def summarize(overrides: list[str]) -> str:
    """Composes and checks the config, builds the model, and returns the lines after its summary.

    Raises:
        ConfigError: bad overrides or a model that cannot be built (one line).
    """
    check_one_job(overrides)
    cfg = config.compose(overrides)
    checks.validate(cfg)
    family = cfg.model.family
    image_size = cfg.data.image_size or config.DEFAULT_IMAGE_SIZE
    params, _ = space.point(cfg.model, cfg.optimizer, cfg.activation)
    geometry = models.check_geometry(family, params, image_size)
    checks.check_memory(cfg, image_size, INPUT_SHAPE, NUM_CLASSES)  # before Keras allocates it
    size = footprint.footprint(family, params, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                               image_size=image_size)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    model = models.build_model(family, params, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                               image_size=image_size)
    model.summary()
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    lines = [
        f"point ({family}, image_size {image_size}): {describe_point(params)}",
        f"parameters: {model.count_params():,}",
        f"trainable parameters: {trainable:,}",
        f"FLOPs per image (forward): {forward_flops(model):,} (2 x conv and dense multiply-adds)",
        f"training memory at batch {cfg.budget.batch_size}: about "
        f"{size.training_gb(cfg.budget.batch_size):.2g} GB (estimated; the limit: "
        f"budget.max_model_gb={cfg.budget.max_model_gb})",
        "block outputs (height x width x channels):",
        *[f"  {name:<8} {'x'.join(map(str, shape))}" for name, shape in geometry],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vggsweep.summary",
        description="Show a model at the default point of its search space (no training).",
        epilog="example: python -m vggsweep.summary model=vgg16 data.image_size=224 "
               "model.batch_norm=false",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, one value per key")
    args = parser.parse_args(argv)
    try:
        text = summarize(args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
