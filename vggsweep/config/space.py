"""The fixed-or-searched grammar: YAML values <-> keras-tuner hyperparameters.

A hyperparameter in the model or optimizer config is either a plain value (fixed) or a search spec:

    filters: 32                                       # fixed
    filters: {choice: [16, 32, 64]}                   # searched among the listed values
    conv_blocks: {min: 1, max: 3, step: 1}            # integer range (ints in, ints out)
    dropout: {min: 0.0, max: 0.5, step: 0.1}          # float range with a step
    learning_rate: {min: 1.0e-4, max: 1.0e-2, sampling: log}   # float range, log scale

An optional `default:` inside a spec names the value used where one point is needed without a
search (the model summary, keras-tuner's first trial).

Hydra merges a dict given on the command line (or in a study) into the dict it overrides, so a
`{choice: [...]}` given over a `{min, max}` spec arrives with both. `normalize` keeps the kind
given last (OmegaConf keeps key order and appends new keys) and drops a `default` that the new
spec cannot produce: a spec given later replaces the earlier one, as a user expects. This module
imports neither keras nor keras-tuner at import time, so validation stays instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vggsweep.errors import SpecError

SPEC_KEYS = {"choice", "min", "max", "step", "sampling", "default"}
SAMPLINGS = ("linear", "log", "reverse_log")
SCALAR_TYPES = (bool, int, float, str)
#: A stepped range with more values than this is refused (a step of 1e-9 would not end).
MAX_STEPPED_VALUES = 10_000

__all__ = ["SpecError", "check_spec", "declare", "default_value", "grid_size", "is_spec",
           "normalize", "plain", "point", "spec_type", "spec_values", "split", "values",
           "with_defaults"]


def is_spec(value: Any) -> bool:
    """True when `value` is a search spec (a mapping), False for a plain (fixed) value."""
    return isinstance(value, Mapping)


def plain(value: Any) -> Any:
    """Converts OmegaConf containers to plain Python objects."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


RANGE_KEYS = ("min", "max", "step", "sampling")


def normalize(spec: Mapping) -> dict:
    """Resolves a merged spec holding both a choice and a range in favour of the later one."""
    spec = dict(plain(spec))
    if "choice" in spec and any(k in spec for k in RANGE_KEYS):
        keys = list(spec)
        choice_last = keys.index("choice") > max(keys.index(k) for k in RANGE_KEYS if k in spec)
        drop = RANGE_KEYS if choice_last else ("choice",)
        spec = {k: v for k, v in spec.items() if k not in drop}
    if "default" in spec and not can_produce(spec, spec["default"]):
        del spec["default"]  # left over from the spec this one replaced
    return spec


def can_produce(spec: Mapping, value: Any) -> bool:
    """Whether `value` is one of a spec's choices, or inside its range."""
    if "choice" in spec:
        return isinstance(spec["choice"], list) and value in spec["choice"]
    try:
        return spec["min"] <= value <= spec["max"]
    except (KeyError, TypeError):
        return False


def check_spec(name: str, spec: Mapping) -> dict:
    """Validates one search spec and returns it as a plain dict.

    Raises:
        SpecError: with a one-line message naming the key and the grammar.
    """
    spec = normalize(spec)
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise SpecError(
            f"{name}: unknown search-spec key(s) {sorted(unknown)}; valid keys: "
            "choice | min, max, step, sampling | default"
        )
    if "choice" in spec:
        choices = spec["choice"]
        if set(spec) - {"choice", "default"}:
            raise SpecError(f"{name}: 'choice' cannot be combined with min/max/step/sampling")
        if not isinstance(choices, list) or not choices:
            raise SpecError(f"{name}: 'choice' needs a non-empty list, got {choices!r}")
        if not all(isinstance(c, SCALAR_TYPES) for c in choices):
            raise SpecError(f"{name}: choices must be numbers, strings or booleans, "
                            f"got {choices!r}")
        if len({type(c) for c in choices} - {int, float}) > 1 or (
            any(isinstance(c, (str, bool)) for c in choices)
            and len({type(c) for c in choices}) > 1
        ):
            raise SpecError(f"{name}: choices must all have one type, got {choices!r}")
        return spec
    if "min" not in spec or "max" not in spec:
        raise SpecError(
            f"{name}: a search spec needs 'choice: [...]' or 'min' and 'max', got {spec!r}"
        )
    low, high = spec["min"], spec["max"]
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise SpecError(f"{name}: min and max must be numbers, got {spec!r}")
    if low > high:
        raise SpecError(f"{name}: min {low} is greater than max {high}")
    sampling = spec.get("sampling", "linear")
    if sampling not in SAMPLINGS:
        raise SpecError(f"{name}: sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling != "linear" and low <= 0:
        raise SpecError(f"{name}: {sampling} sampling needs min > 0, got {low}")
    if "step" in spec:
        _check_step(name, spec)
    return spec


def _check_step(name: str, spec: Mapping) -> None:
    step = spec["step"]
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        raise SpecError(f"{name}: step must be a number > 0, got {step!r}")
    if spec_type(spec) is int and not isinstance(step, int):
        raise SpecError(f"{name}: an integer range needs an integer step, got {step!r}")
    if spec.get("sampling", "linear") == "linear":
        count = (spec["max"] - spec["min"]) / step + 1
        if count > MAX_STEPPED_VALUES:
            raise SpecError(f"{name}: step {step} gives {count:.3g} values from {spec['min']} to "
                            f"{spec['max']}; use a step giving at most {MAX_STEPPED_VALUES:,}, "
                            "or no step (a continuous range)")


def spec_type(spec: Mapping) -> type:
    """The Python type of the values a spec produces."""
    if "choice" in spec:
        choices = spec["choice"]
        if all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
            return int
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            return float
        return type(choices[0])
    is_int = all(
        isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
        for k in ("min", "max")
        if k in spec
    )
    if is_int and isinstance(spec.get("step", 1), int):
        return int
    return float


def default_value(spec: Mapping) -> Any:
    """The value keras-tuner uses by default for this spec (also the summary's point)."""
    if "default" in spec:
        return spec["default"]
    if "choice" in spec:
        return spec["choice"][0]
    return spec["min"]


def spec_values(spec: Mapping) -> list | None:
    """The finite list of values a spec can take, or None for a continuous range."""
    if "choice" in spec:
        return list(spec["choice"])
    step = spec.get("step")
    if step is None and spec_type(spec) is int and spec.get("sampling", "linear") == "linear":
        step = 1
    if step is None or spec.get("sampling", "linear") != "linear":
        return None
    count = int((spec["max"] - spec["min"]) / step + 1e-9) + 1  # step > 0: check_spec
    values = [spec["min"] + index * step for index in range(count)]
    return [round(value, 10) if isinstance(value, float) else value for value in values]


def split(params: Mapping) -> tuple[dict, dict]:
    """Splits a config subtree into (fixed values, search specs)."""
    fixed, specs = {}, {}
    for name, value in dict(plain(params)).items():
        if is_spec(value):
            specs[name] = check_spec(name, value)
        else:
            fixed[name] = value
    return fixed, specs


def declare(hp, params: Mapping, skip: tuple[str, ...] = ()) -> None:
    """Declares every hyperparameter of `params` on a keras-tuner `HyperParameters`.

    Fixed scalars become `hp.Fixed` (recorded, never searched); lists stay out of keras-tuner
    (they are architecture tables such as VGG stages) and are passed through by `values`.
    """
    fixed, specs = split(params)
    for name, value in fixed.items():
        if name in skip or value is None or not isinstance(value, SCALAR_TYPES):
            continue
        hp.Fixed(name, value)
    for name, spec in specs.items():
        if name in skip:
            continue
        kind = spec_type(spec)
        default = spec.get("default")
        if "choice" in spec:
            hp.Choice(name, spec["choice"], default=default)
        elif kind is int:
            hp.Int(
                name,
                spec["min"],
                spec["max"],
                step=spec.get("step"),
                sampling=spec.get("sampling", "linear"),
                default=default,
            )
        else:
            hp.Float(
                name,
                float(spec["min"]),
                float(spec["max"]),
                step=spec.get("step"),
                sampling=spec.get("sampling", "linear"),
                default=default,
            )


def values(hp_values: Mapping | None, params: Mapping) -> dict:
    """The resolved value of every key of `params`: the trial's value if searched, else fixed.

    With `hp_values=None`, searched keys take their default (the summary's point).
    """
    fixed, specs = split(params)
    resolved = dict(fixed)
    for name, spec in specs.items():
        if hp_values is not None and name in hp_values:
            resolved[name] = coerce(spec, hp_values[name])
        else:
            resolved[name] = default_value(spec)
    return resolved


def coerce(spec: Mapping, value: Any) -> Any:
    """Gives a value back the spec's own type and spelling (keras-tuner may hand a boolean
    choice back as 0/1, or a stepped float as 0.30000000000000004)."""
    if "choice" in spec:
        return next((c for c in spec["choice"] if c == value and type(c) is type(value)),
                    next((c for c in spec["choice"] if c == value), value))
    if spec_type(spec) is int:
        return int(value)
    return round(float(value), 10)


def grid_size(params: Mapping) -> int | None:
    """Number of points of the search space spanned by `params` (None if continuous)."""
    _, specs = split(params)
    size = 1
    for spec in specs.values():
        points = spec_values(spec)
        if points is None:
            return None
        size *= len(points)
    return size


def with_defaults(params: Mapping, point: Mapping) -> dict:
    """`params` with each searched key's `default` set to `point`'s value (a grid search then
    starts there)."""
    result = dict(plain(params))
    for name, value in plain(point).items():
        if name in result and is_spec(result[name]):
            result[name] = {**normalize(result[name]), "default": value}
    return result


def point(model: Mapping, optimizer: Mapping, activation: Any,
          hp_values: Mapping | None = None) -> tuple[dict, dict]:
    """The one map from config subtrees and a trial's values to the builders' arguments.

    Args:
        model: the `model` subtree (its `family` is left out of the result).
        optimizer: the `optimizer` subtree (its `name` is kept).
        activation: a name (fixed) or a search spec.
        hp_values: the trial's values; None for the default point (the summary's).

    Returns:
        (model builder kwargs with `activation`, optimizer kwargs with `name`), every searched
        value in the config's own type.
    """
    model_kwargs = values(hp_values, {k: v for k, v in plain(model).items() if k != "family"})
    activation = plain(activation)
    if is_spec(activation):
        spec = normalize(activation)
        chosen = (hp_values or {}).get("activation")
        activation = default_value(spec) if chosen is None else coerce(spec, chosen)
    model_kwargs["activation"] = activation
    optimizer = plain(optimizer)
    optimizer_kwargs = {"name": optimizer.get("name"),
                        **values(hp_values, {k: v for k, v in optimizer.items() if k != "name"})}
    return model_kwargs, optimizer_kwargs
