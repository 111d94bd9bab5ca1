"""Config location, composition and validation, all without importing TensorFlow.

`compose(overrides)` gives the same config a Hydra job would see; `validate(cfg)` checks what the
typed schema cannot (model and optimizer keys against their builders, activation names, data paths)
and raises `ConfigError` with one line naming the key and what is valid.
"""

from __future__ import annotations

import inspect
import itertools
import os
from pathlib import Path
from typing import Any, Iterable

from vggsweep import space

PACKAGE_DIR = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    """Finds `conf/` or `sweeps/`: inside the installed package, else at the repository root."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise FileNotFoundError(f"vggsweep: cannot find the {name}/ directory near {PACKAGE_DIR}")


CONF_DIR = _locate("conf")
SWEEPS_DIR = _locate("sweeps")

ACTIVATIONS = (
    "relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", "swish", "leaky_relu", "softplus",
    "mish",
)
DATASETS = ("mnist", "digits")
TUNERS = ("random", "grid", "bayesian", "hyperband", "quasi_random")
GROUPS = ("model", "data", "optimizer", "tuner", "budget", "study")
#: Flags that only print or inspect; they need no validation pass and no tracking store.
INSPECT_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion",
                 "-sc", "--version")


class ConfigError(ValueError):
    """Bad user input; its message is the one line the user sees."""


def register_configs() -> None:
    """Registers the schema and every study of `sweeps/` (as group `study`) in the ConfigStore."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from vggsweep import schema

    schema.register()
    store = ConfigStore.instance()
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        node = OmegaConf.load(path)
        store.store(group="study", name=path.stem, node=node, package="_global_")


def group_options(group: str) -> list[str]:
    """The options of a config group (`model` -> ['cnn', 'mlp', 'vgg11', ...])."""
    folder = SWEEPS_DIR if group == "study" else CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def replace_spec_overrides(overrides: Iterable[str]) -> list[str]:
    """Makes `model.X={...}` replace the value of model.X instead of merging into it.

    Hydra merges a dict override into the dict it overrides (and refuses new keys in struct
    mode), so `model.conv_blocks={choice:[2,3]}` over `{min: 1, max: 3}` would fail or mix the
    two. Deleting the key first (`~model.X`) and adding it back (`+model.X=...`) replaces it.
    """
    result = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if (sep and value.lstrip().startswith("{") and key.startswith(("model.", "optimizer."))
                and "," not in value.split("}")[-1]):
            result += [f"~{key}", f"+{key}={value}"]
        else:
            result.append(override)
    return result


def compose(overrides: Iterable[str] = (), return_hydra_config: bool = False):
    """Composes the config as a job would see it (no sweep syntax: one value per key)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(
                "config", overrides=replace_spec_overrides(overrides),
                return_hydra_config=return_hydra_config,
            )
    except Exception as error:  # noqa: BLE001 - every composition error becomes one line
        message = explain_composition_error(error, list(overrides))
        raise ConfigError(message) from None
    finally:
        GlobalHydra.instance().clear()


def explain_composition_error(error: BaseException, overrides: list[str] = ()) -> str:
    """Turns Hydra/OmegaConf's multi-line composition errors into one line."""
    import re

    from hydra.errors import MissingConfigException

    chain, cause = [], error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in chain:
        if isinstance(cause, MissingConfigException) and cause.missing_cfg_file:
            group, _, option = str(cause.missing_cfg_file).rpartition("/")
            if group:
                valid = group_options(group) if group in GROUPS else (cause.options or [])
                return f"{group}={option} is not a known {group}; valid options: {', '.join(valid)}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    unknown = re.search(r"(?:Could not override|Could not delete from config\.) '([\w.]+)'", first) \
        or re.search(r"'([\w.]+)' does not exist", first)
    if unknown:
        key = unknown.group(1)
        return f"{key} is not a known key; valid: {', '.join(_valid_keys(key, overrides))}"
    lines = [str(c).strip().splitlines()[0] for c in chain
             if str(c).strip() and str(c).strip() != "None"]
    from hydra.errors import OverrideParseException

    if isinstance(error, OverrideParseException):
        return f"cannot parse the overrides {' '.join(overrides)}: {first}"
    reason = next((ln for ln in lines if "could not be converted" in ln), lines[-1] if lines else first)
    head = re.match(r"Error merging override (\S+)", first)
    return f"{head.group(1)}: {reason}" if head else reason


def _valid_keys(key: str, overrides) -> list[str]:
    """The keys valid beside `key` (its siblings in the config composed without it)."""
    section = key.rsplit(".", 1)[0] if "." in key else None
    others = [o for o in overrides if not o.lstrip("+~").startswith(key)]
    try:
        cfg = compose(others)
    except ConfigError:
        return []
    node = cfg if section is None else cfg.get(section)
    return sorted(k for k in (node or {}) if k != "family")


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Expands sweep overrides (`model=vgg16,cnn`) into the list of per-job override lists."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        message = str(error).strip().splitlines()[0]
        raise ConfigError(f"cannot parse the overrides {' '.join(overrides)}: {message}") from None
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            values = [f"{key}={value}" for value in override.sweep_string_iterator()]
            choices.append(values)
        else:
            choices.append([override.input_line])
    return [list(combination) for combination in itertools.product(*choices)]


def validate(cfg) -> None:
    """Checks a composed config; raises ConfigError with one line on the first problem."""
    from vggsweep import models, optimizers

    _check_activation(cfg.activation)
    family = cfg.model.get("family")
    if family not in models.FAMILIES:
        raise ConfigError(
            f"model.family={family!r} is not a model family; valid: {', '.join(models.FAMILIES)}"
        )
    _check_params("model", {k: v for k, v in cfg.model.items() if k != "family"},
                  {k: v for k, v in models.builder_params(family).items() if k != "activation"},
                  exclude=("activation",))
    name = cfg.optimizer.get("name")
    if name not in optimizers.OPTIMIZERS:
        raise ConfigError(
            f"optimizer.name={name!r} is not supported; valid: {', '.join(optimizers.OPTIMIZERS)}"
        )
    _check_params("optimizer", {k: v for k, v in cfg.optimizer.items() if k != "name"},
                  optimizers.builder_params())
    schedule = cfg.optimizer.get("schedule", "constant")
    if schedule not in optimizers.SCHEDULES:
        raise ConfigError(f"optimizer.schedule={schedule!r} is not valid; valid: "
                          f"{', '.join(optimizers.SCHEDULES)}")
    if schedule == "exponential" and all(
            not space.is_spec(cfg.optimizer.get(k)) and cfg.optimizer.get(k)
            for k in ("decay_epochs", "decay_steps")):
        raise ConfigError("optimizer: set decay_epochs or decay_steps, not both (the other 0)")
    _check_sections(cfg)
    from vggsweep import data

    data.check_source(cfg.data)
    models.check_space(family, {**cfg.model, "activation": "relu"}, cfg.data.image_size)


def model_point(cfg, hp_values=None) -> dict:
    """The model builder's keyword arguments at one point (defaults where searched)."""
    params = space.values(hp_values, {k: v for k, v in cfg.model.items() if k != "family"})
    activation = space.plain(cfg.activation)
    if space.is_spec(activation):
        activation = (hp_values or {}).get("activation", space.default_value(activation))
    params["activation"] = activation
    return params


def _check_activation(activation: Any) -> None:
    activation = space.plain(activation)
    names = activation
    if space.is_spec(activation):
        try:
            spec = space.check_spec("activation", activation)
        except space.SpecError as error:
            raise ConfigError(str(error)) from None
        names = spec.get("choice")
        if names is None:
            raise ConfigError("activation: a search spec for activation needs `choice: [...]`")
    for name in names if isinstance(names, list) else [names]:
        if name not in ACTIVATIONS:
            raise ConfigError(f"activation={name!r} is not valid; valid: {', '.join(ACTIVATIONS)}")


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
        try:
            spec = space.check_spec(name, value)
        except space.SpecError as error:
            raise ConfigError(str(error)) from None
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


def _check_sections(cfg) -> None:
    if cfg.tuner.name not in TUNERS:
        raise ConfigError(f"tuner.name={cfg.tuner.name!r} is not valid; valid: {', '.join(TUNERS)}")
    if cfg.tuner.keep not in ("best", "all"):
        raise ConfigError(f"tuner.keep={cfg.tuner.keep!r} is not valid; valid: best, all")
    if cfg.data.name not in DATASETS:
        raise ConfigError(f"data.name={cfg.data.name!r} is not valid; valid: {', '.join(DATASETS)}")
    positive = {
        "budget.max_trials": cfg.budget.max_trials, "budget.epochs": cfg.budget.epochs,
        "budget.batch_size": cfg.budget.batch_size, "data.image_size": cfg.data.image_size,
        "budget.executions_per_trial": cfg.budget.executions_per_trial,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be a positive integer")
    for key in ("train_samples", "test_samples"):
        value = cfg.data.get(key)
        if value is not None and value < 10:
            raise ConfigError(f"data.{key}={value} is too small; use at least 10 (or null for all)")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be between 0 and 1")


def is_inspect_only(argv: list[str]) -> bool:
    """True for invocations that only print help or config (`--help`, `--cfg job`, ...)."""
    return any(arg in INSPECT_FLAGS or arg.split("=")[0] in INSPECT_FLAGS for arg in argv)


def launch_dir() -> Path:
    """The directory the user launched from (the default home of mlflow.db and tuner state)."""
    return Path(os.environ.get("VGGSWEEP_HOME", os.getcwd())).resolve()
