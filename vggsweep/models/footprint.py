"""What a model costs before it exists: its parameters and the memory its training needs.

Counted from the family's plan (the block shapes `check_geometry` gives) layer by layer, as the
builders in `blocks` lay them out, in pure Python (no Keras, nothing allocated): a model with
2^98 filters is refused in a millisecond instead of dying of "OOM when allocating" after its runs
exist. The parameter count is exact (the tests compare it with Keras' own); the memory is an
estimate of one training step in float32:

    4 bytes x (4 x parameters  +  2 x activations per image x batch size)

the weights, their gradients and the optimizer's two moments, and every layer's output kept for
the backward pass with its gradient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import NamedTuple

from vggsweep.config import space
from vggsweep.errors import ModelConfigError

BYTES_PER_FLOAT = 4
GB = 1024 ** 3


class Footprint(NamedTuple):
    parameters: int  # weights of every layer (batch-norm statistics included, as Keras counts)
    activations: int  # floats of every layer's output, per image

    def training_bytes(self, batch_size: int) -> int:
        """The memory one training step needs, estimated (see the module's docstring)."""
        return (4 * self.parameters + 2 * self.activations * batch_size) * BYTES_PER_FLOAT

    def training_gb(self, batch_size: int) -> float:
        try:
            return self.training_bytes(batch_size) / GB
        except OverflowError:  # more than 1e308 GB: past what a float holds
            return math.inf


def approx(number: int | float) -> str:
    """A count or size in three digits, however large (`2.3e+61`, `889,834`, `1.5`)."""
    if isinstance(number, int) and abs(number) >= 10 ** 15:
        digits = str(abs(number))
        return f"{'-' if number < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"
    if isinstance(number, int):
        return f"{number:,}"
    return f"{number:.3g}"


class _Counter:
    """Adds up parameters and layer outputs as the builders add layers."""

    def __init__(self):
        self.parameters = 0
        self.activations = 0

    def output(self, *shape: int) -> None:
        self.activations += math.prod(shape)

    def conv(self, size_out: int, kernel: int, channels_in: int, filters: int,
             batch_norm: bool) -> None:
        """Conv2D (no bias under batch norm), then BatchNormalization and the activation."""
        self.parameters += kernel * kernel * channels_in * filters + (0 if batch_norm else filters)
        if batch_norm:
            self.parameters += 4 * filters  # gamma, beta, moving mean and variance
        self.output(size_out, size_out, filters, 3 if batch_norm else 1)

    def dense(self, units_in: int, units: int, dropout: float = 0.0) -> int:
        self.parameters += units_in * units + units
        self.output(units, 2 if dropout > 0 else 1)
        return units


def _stem(counter: _Counter, params: Mapping, input_shape, image_size: int) -> int:
    """The input, its augmentation and its resizing; returns the channels."""
    height, width, channels = input_shape
    counter.output(height, width, channels, 3 if params.get("augment") else 1)
    if (height, width) != (image_size, image_size):
        counter.output(image_size, image_size, channels)
    return channels


def _dense_stack(counter: _Counter, features: int, layers: int, units: int, params: Mapping,
                 num_classes: int) -> None:
    for _ in range(layers):
        features = counter.dense(features, units, params["dropout"])
    counter.dense(features, num_classes)  # the logits (and their rescaling by the temperature)
    counter.output(num_classes)


def _cnn(counter: _Counter, params: Mapping, plan, channels: int, num_classes: int) -> None:
    kernel, batch_norm = params["kernel_size"], params.get("batch_norm", False)
    size, channels_in = plan[0].shape[0], channels
    for block in plan[1:]:
        filters = block.shape[2]
        counter.conv(size, kernel, channels_in, filters, batch_norm)
        size_after = size - kernel + 1 if block.conv_padding == "valid" else size
        counter.conv(size_after, kernel, filters, filters, batch_norm)
        if block.pool is not None:
            counter.output(block.shape[0], block.shape[1], filters)
        size, channels_in = block.shape[0], filters
    _dense_stack(counter, size * size * channels_in, params["dense_layers"],
                 params["dense_units"], params, num_classes)


def _vgg(counter: _Counter, params: Mapping, plan, channels: int, num_classes: int) -> None:
    batch_norm = params.get("batch_norm", False)
    size, channels_in = plan[0].shape[0], channels
    for block, convs in zip(plan[1:], params["stages"]):
        for _ in range(convs):
            counter.conv(size, 3, channels_in, block.shape[2], batch_norm)
            channels_in = block.shape[2]
        if block.pool is not None:
            counter.output(*block.shape)
        size = block.shape[0]
    units = max(1, round(params["dense_units"] * params["width_multiplier"]))
    _dense_stack(counter, size * size * channels_in, params["dense_layers"], units, params,
                 num_classes)


def _mlp(counter: _Counter, params: Mapping, plan, channels: int, num_classes: int) -> None:
    size = plan[0].shape[0]
    _dense_stack(counter, size * size * channels, params["hidden_layers"],
                 params["hidden_units"], params, num_classes)


#: The counting of each family of `models.FAMILIES` (a test checks that none is missing).
COUNTERS = {"cnn": _cnn, "vgg": _vgg, "mlp": _mlp}


def footprint(family: str, params: Mapping, *, input_shape=(28, 28, 1), num_classes: int = 10,
              image_size: int = 28) -> Footprint:
    """The parameters and per-image activations of the model at one point of its space."""
    from vggsweep import models

    resolved = models.resolve(family, params)
    plan = models.FAMILIES[family].plan(resolved, image_size)
    counter = _Counter()
    channels = _stem(counter, resolved, tuple(input_shape), image_size)
    COUNTERS[family](counter, resolved, plan, channels, num_classes)
    return Footprint(counter.parameters, counter.activations)


def largest(family: str, params: Mapping, batch_size: int, *, input_shape=(28, 28, 1),
            num_classes: int = 10, image_size: int = 28) -> tuple[dict, Footprint]:
    """The point of a model search space whose training needs the most memory, and its
    footprint: over the grid of a discrete space, else over every combination of each range's
    ends (memory grows with sizes, so the largest point is a corner)."""
    from vggsweep import models

    fixed, specs = space.split({k: v for k, v in params.items() if k != "family"})
    grid = {name: space.spec_values(spec) for name, spec in specs.items()}
    discrete = all(points is not None for points in grid.values()) and \
        math.prod(len(points) for points in grid.values()) <= models.MAX_GRID_POINTS
    axes = grid if discrete else {name: _ends(spec) for name, spec in specs.items()}
    found = None
    for combination in itertools.product(*axes.values()):
        point = {**fixed, **dict(zip(axes, combination))}
        try:
            size = footprint(family, point, input_shape=input_shape, num_classes=num_classes,
                             image_size=image_size)
        except ModelConfigError:  # a point that cannot be built: check_space names it
            continue
        if found is None or size.training_bytes(batch_size) > \
                found[1].training_bytes(batch_size):
            found = (point, size)
    if found is None:
        raise ModelConfigError("no point of the model's search space can be built")
    return found


def culprits(family: str, point: Mapping, limit_gb: float, batch_size: int,
             **shape) -> list[str]:
    """The keys of `point` that make it too large: each one whose builder default alone brings
    the estimate under the limit, else every key that shrinks it (largest first)."""
    from vggsweep import models

    defaults = models.defaults(family)
    whole = footprint(family, point, **shape).training_bytes(batch_size)
    savings = {}
    for key, value in point.items():
        if key not in defaults or defaults[key] == value:
            continue
        try:
            smaller = footprint(family, {**point, key: defaults[key]}, **shape)
        except ModelConfigError:
            continue
        if smaller.training_bytes(batch_size) < whole:
            savings[key] = smaller.training_bytes(batch_size)
    enough = [key for key, size in sorted(savings.items(), key=lambda item: item[1])
              if size <= limit_gb * GB]
    return enough or sorted(savings, key=savings.get)


def _ends(spec: Mapping) -> list:
    if "choice" in spec:
        return list(spec["choice"])
    return sorted({spec["min"], spec["max"]})
