"""Model families: a plain registry of builders, their hyperparameters and their geometry.

A model config (`conf/model/*.yaml`) names a `family` and otherwise holds exactly the keyword
arguments of that family's builder. Importing this package does not import Keras, so config
validation (`builder_params`, `check_geometry`, `check_space`) stays instant; `build_model` imports
it when it builds.
"""

import functools
import inspect
import itertools
import math
import typing
from collections.abc import Callable, Mapping
from typing import NamedTuple

from vggsweep.config import space
from vggsweep.errors import ModelConfigError
from vggsweep.models import blocks, cnn, mlp, vgg
from vggsweep.models.blocks import POOLING

__all__ = [
    "ACTIVATIONS", "FAMILIES", "POOLING", "Family", "ModelConfigError", "build_model",
    "builder_params", "check_geometry", "check_space", "defaults", "resolve",
]


class Family(NamedTuple):
    """A model family: its Keras builder (whose keyword arguments are the config's keys) and
    its pure-Python plan (checks the values and gives each block's output shape)."""

    build: Callable
    plan: Callable


#: The one registry of model families. To add one: a module with `build_*` and `plan`, then an
#: entry here and a preset in conf/model/.
FAMILIES: dict[str, Family] = {
    "cnn": Family(cnn.build_cnn, cnn.plan),
    "vgg": Family(vgg.build_vgg, vgg.plan),
    "mlp": Family(mlp.build_mlp, mlp.plan),
}
#: The activations every family takes (a name Keras knows).
ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", "swish", "leaky_relu", "softplus",
    "mish",
)
#: Builder arguments that come from the data, not from the model config.
CONTEXT_ARGS = ("input_shape", "num_classes", "image_size")
_SCALARS = (int, float, bool, str)
#: Above this many points, `check_space` checks each range's ends and default, not its grid.
MAX_GRID_POINTS = 20_000


def _builder(family: str):
    if family not in FAMILIES:
        raise ModelConfigError(
            f"model.family={family!r} is not a model family; valid: {', '.join(FAMILIES)}"
        )
    return FAMILIES[family].build


def builder_params(family: str) -> dict[str, type | None]:
    """The model-config keys of a family and their types (None: a list or anything)."""
    builder = _builder(family)
    hints = typing.get_type_hints(builder)
    return {
        name: hints.get(name) if hints.get(name) in _SCALARS else None
        for name in inspect.signature(builder).parameters
        if name not in CONTEXT_ARGS
    }


def defaults(family: str) -> dict:
    """The builder's default value of every model-config key."""
    return dict(_defaults(family))


@functools.lru_cache(maxsize=None)
def _defaults(family: str) -> tuple:
    signature = inspect.signature(_builder(family))
    return tuple((name, parameter.default) for name, parameter in signature.parameters.items()
                 if name not in CONTEXT_ARGS)


def resolve(family: str, params: Mapping) -> dict:
    """The builder's defaults overridden by params; unknown keys and search specs are errors."""
    resolved = defaults(family)
    for key, value in params.items():
        value = space.plain(value)
        if key == "family":
            continue
        if key not in resolved:
            raise ModelConfigError(
                f"model.{key} is not a key of the {family} family; valid: "
                f"{', '.join(sorted(resolved))}"
            )
        if space.is_spec(value):
            raise ModelConfigError(
                f"model.{key} is a search spec; one point of the space is needed here"
            )
        resolved[key] = value
    return resolved


def check_geometry(family: str, params: Mapping, image_size: int
                   ) -> list[tuple[str, tuple[int, int, int]]]:
    """The output shape of the input and of each block at one point of the space.

    Pure Python (no Keras). Raises ModelConfigError with one line when a value is invalid or
    a block cannot fit the feature map.
    """
    if not (blocks.is_int(image_size) and image_size >= 1):
        raise ModelConfigError(f"data.image_size={image_size!r} must be a positive integer")
    _builder(family)  # raises the one-line error for an unknown family
    plan = FAMILIES[family].plan(resolve(family, params), image_size)
    return [(block.name, block.shape) for block in plan]


def check_space(family: str, params: Mapping, image_size: int) -> int:
    """Checks every point of a model search space (or, for a huge or continuous one, every
    combination of each range's ends and default, and of every choice); returns the number of
    points checked. Raises ModelConfigError naming the searched values that make a point fail.
    """
    fixed, specs = space.split({k: v for k, v in params.items() if k != "family"})
    default = space.values(None, specs)
    # The default point first: when it fails, the problem is not the search space's, so the
    # error is reported as is.
    check_geometry(family, {**fixed, **default}, image_size)
    axes = {name: _points(spec) for name, spec in specs.items()}
    grid = {name: space.spec_values(spec) for name, spec in specs.items()}
    if all(points is not None for points in grid.values()):
        if math.prod(len(points) for points in grid.values()) <= MAX_GRID_POINTS:
            axes = grid
    count = 0
    for combination in itertools.product(*axes.values()):
        point = dict(zip(axes, combination))
        if not _fits(family, {**fixed, **point}, image_size):
            _raise_smallest(family, fixed, default, point, image_size)
        count += 1
    return count


def _fits(family: str, params: Mapping, image_size: int) -> bool:
    try:
        check_geometry(family, params, image_size)
    except ModelConfigError:
        return False
    return True


def _raise_smallest(family, fixed, default, point, image_size):
    """Raises the error of a failing point, after resetting every searched value that is not
    needed for the failure to its default (so the message names only the culprits)."""
    culprits = dict(point)
    for name in list(culprits):
        trial = {key: value for key, value in culprits.items() if key != name}
        if not _fits(family, {**fixed, **default, **trial}, image_size):
            culprits = trial
    try:
        check_geometry(family, {**fixed, **default, **culprits}, image_size)
    except ModelConfigError as error:
        where = ", ".join(f"model.{key}={value}" for key, value in culprits.items())
        raise ModelConfigError(
            f"the search space includes {where} (the rest at defaults), where {error}"
        ) from None


def _points(spec: Mapping) -> list:
    if "choice" in spec:
        return list(spec["choice"])
    return sorted({spec["min"], spec["max"], space.default_value(spec)})


def build_model(family: str, params: Mapping, *, input_shape=(28, 28, 1), num_classes: int = 10,
                image_size: int = 28):
    """Builds an uncompiled functional model whose output is logits / temperature.

    Args:
        family: cnn | vgg | mlp.
        params: the builder's keyword arguments at one point (`space.point(...)[0]`);
            missing keys take the builder's defaults.
        input_shape: the shape of one image in the data (MNIST: 28x28x1).
        num_classes: width of the logits.
        image_size: the size the model works at (28 as is, 32 zero-padded, else resized).
    """
    check_geometry(family, params, image_size)
    return FAMILIES[family].build(input_shape=tuple(input_shape), num_classes=num_classes,
                                  image_size=image_size, **resolve(family, params))
