"""What the typed schema cannot check: a composed config against the registries.

Model and optimizer keys against their builders' keyword arguments, the activation names, the data
source, the tuner and pruner names and what the tuner asks of the rest, and that every point of the
model's search space fits the image size. Each problem is a `ConfigError` with one line naming the
key and what is valid. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import itertools
from typing import Any

from omegaconf import OmegaConf

from vggsweep import data, models
from vggsweep.config import DEFAULT_IMAGE_SIZE, schema, space
from vggsweep.errors import ConfigError
from vggsweep.models import footprint, optimizers
from vggsweep.search import tuners


def validate(cfg, image_size: int | None = None, geometry: bool = True) -> None:
    """Checks a composed config; raises ConfigError with one line on the first problem.

    Args:
        image_size: the size the models work at, when the data is known (`effective_image_size`);
            default: the config's, else 28 (MNIST).
        geometry: also check that every point of the model's space fits that size (the one
            check that needs the data's size; `check_geometry` alone does it later).
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required here but not given (e.g. data=npz "
                          "needs data.name=NAME data.path=FILE)")
    schema.check_ranges(cfg)
    _check_name("data.source", cfg.data.source, data.DATASETS, "data source")
    _check_name("tuner.name", cfg.tuner.name, tuners.TUNERS, "tuner")
    _check_name("tuner.pruner", cfg.tuner.pruner, tuners.PRUNERS, "pruner")
    _check_activation(cfg.activation)
    family = cfg.model.get("family")
    if family not in models.FAMILIES:
        raise ConfigError(
            f"model.family={family!r} is not a model family; valid: {', '.join(models.FAMILIES)}"
        )
    _check_params("model", {k: v for k, v in cfg.model.items() if k != "family"},
                  {k: v for k, v in models.builder_params(family).items() if k != "activation"},
                  exclude=("activation",))
    _check_optimizer(cfg.optimizer)
    data.check_source(cfg.data)
    tuners.check(cfg)
    if geometry:
        check_geometry(cfg, image_size)


def check_geometry(cfg, image_size: int | None = None) -> None:
    """Every point of the model's search space fits the size the models work at."""
    size = image_size or cfg.data.image_size or DEFAULT_IMAGE_SIZE
    models.check_space(cfg.model.family, {**cfg.model, "activation": "relu"}, size)


def check_memory(cfg, image_size: int, input_shape, num_classes: int) -> None:
    """The largest point of the model's search space fits `budget.max_model_gb` at the batch a
    step takes (estimated from the model's plan, nothing built: `models.footprint`)."""
    limit = cfg.budget.get("max_model_gb")
    if limit is None:
        return
    batch = cfg.budget.batch_size * (cfg.accelerator.get("batch_scale") or 1)
    family = cfg.model.family
    shape = {"input_shape": tuple(input_shape), "num_classes": num_classes,
             "image_size": image_size}
    point, size = footprint.largest(family, {**cfg.model, "activation": "relu"}, batch, **shape)
    needed = size.training_gb(batch)
    if needed <= limit:
        return
    names = footprint.culprits(family, point, limit, batch, **shape)
    where = ", ".join(f"model.{name}={point[name]}" for name in names) or f"model={family}"
    largest = " (the largest point of the search space)" if space.split(cfg.model)[1] else ""
    raise ConfigError(
        f"{where}{largest}: the model would need about {footprint.approx(needed)} GB to train "
        f"({footprint.approx(size.parameters)} parameters, batch {batch}), over the limit "
        f"budget.max_model_gb={limit:g}; lower {' or '.join(f'model.{n}' for n in names)}"
        f"{' or ' if names else ''}budget.batch_size, or raise budget.max_model_gb")


def _check_optimizer(optimizer) -> None:
    name = optimizer.get("name")
    if name not in optimizers.OPTIMIZERS:
        raise ConfigError(
            f"optimizer.name={name!r} is not supported; valid: {', '.join(optimizers.OPTIMIZERS)}"
        )
    params = {k: v for k, v in optimizer.items() if k != "name"}
    _check_params("optimizer", params, optimizers.builder_params())
    for corner in _corners(params):
        optimizers.check_point(corner)


def _corners(params) -> list[dict]:
    """The points at the ends of every searched range (and every choice): enough to check
    ranges that are monotone in each value."""
    fixed, specs = space.split(params)
    axes = {name: (spec["choice"] if "choice" in spec else [spec["min"], spec["max"]])
            for name, spec in specs.items()}
    return [{**fixed, **dict(zip(axes, values))} for values in itertools.product(*axes.values())]


def _check_name(key: str, value, registry, what: str) -> None:
    if str(value) not in registry:
        raise ConfigError(f"{key}={value!r} is not a {what}; valid: {', '.join(registry)}")


def _check_activation(activation: Any) -> None:
    activation = space.plain(activation)
    names = activation
    if space.is_spec(activation):
        spec = space.check_spec("activation", activation)
        names = spec.get("choice")
        if names is None:
            raise ConfigError("activation: a search spec for activation needs `choice: [...]`")
    for name in names if isinstance(names, list) else [names]:
        if name not in models.ACTIVATIONS:
            raise ConfigError(f"activation={name!r} is not valid; valid: "
                              f"{', '.join(models.ACTIVATIONS)}")


def _check_params(section: str, params: dict, accepted: dict, exclude: tuple = ()) -> None:
    """Checks keys against a builder's keyword arguments and values against their types."""
    for key, value in params.items():
        if key in exclude:
            raise ConfigError(f"{section}.{key}: set it at the top level ({key}=...), not here")
        if key not in accepted:
            raise ConfigError(
                f"{section}.{key} is not a known key; valid: {', '.join(sorted(accepted))}"
            )
        _check_value(f"{section}.{key}", space.plain(value), accepted[key])


def _check_value(name: str, value: Any, expected: type | None) -> None:
    if space.is_spec(value):
        spec = space.check_spec(name, value)
        points = spec.get("choice", [spec.get("min"), spec.get("max")])
    else:
        points = [value]
    for point in points:
        if not _type_ok(point, expected):
            raise ConfigError(
                f"{name}={point!r} has the wrong type; expected {expected.__name__}"
            )


def _type_ok(value: Any, expected: type | None) -> bool:
    if expected is None or value is None:
        return True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)
