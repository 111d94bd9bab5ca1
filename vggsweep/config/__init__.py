"""Config location and composition, without importing TensorFlow.

`compose(overrides)` gives the same config a Hydra job would see (typed and range-checked by
`config.schema`); composition errors become one line. What a config means for the registries
(model keys against their builders, tuners, data sources) is checked one layer up, by
`vggsweep.job.checks.validate`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterable

from vggsweep.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # vggsweep/


def _locate(name: str) -> Path:
    """Finds `conf/` or `sweeps/`: inside the installed package, else at the repository root."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise FileNotFoundError(f"vggsweep: cannot find the {name}/ directory near {PACKAGE_DIR}")


CONF_DIR = _locate("conf")
SWEEPS_DIR = _locate("sweeps")
SLUG_LIMIT = 80  # characters of a job's folder name taken from its overrides

DEFAULT_IMAGE_SIZE = 28  # models are checked at MNIST's size until the data is known
GROUPS = ("model", "data", "optimizer", "tuner", "budget", "study")
#: Flags that only print or inspect; they need no validation pass and no tracking store.
INSPECT_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--shell-completion",
                 "-sc", "--version")


def slug(text: str) -> str:
    """A flat, readable folder name for a job's overrides (no separators, bounded length)."""
    import hashlib
    import re

    short = re.sub(r"[^,=]*/", "", str(text))  # a path reads as its last part
    flat = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", short).strip("_") or "job"
    if len(flat) <= SLUG_LIMIT:
        return flat
    digest = hashlib.sha256(str(text).encode()).hexdigest()[:8]
    return f"{flat[:SLUG_LIMIT - 9]}-{digest}"


def register_resolvers() -> None:
    """`${vggsweep_slug:...}` (the sweep's job folders), in every process that resolves them."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("vggsweep_slug", slug, replace=True)


def register_configs() -> None:
    """Registers the schema and every study of `sweeps/` (as group `study`) in the ConfigStore."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from vggsweep.config import launchers, schema

    schema.register()
    launchers.register()
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
    unknown = (re.search(r"(?:Could not override|Could not delete from config\.) '([\w.]+)'",
                         first)
               or re.search(r"'([\w.]+)' does not exist", first))
    if unknown:
        key = unknown.group(1)
        return f"{key} is not a known key; valid: {', '.join(_valid_keys(key, overrides))}"
    lines = [str(c).strip().splitlines()[0] for c in chain
             if str(c).strip() and str(c).strip() != "None"]
    from hydra.errors import OverrideParseException

    if isinstance(error, OverrideParseException):
        return f"cannot parse the overrides {' '.join(overrides)}: {first}"
    reason = next((ln for ln in lines if "could not be converted" in ln),
                  lines[-1] if lines else first)
    head = re.match(r"Error merging override (\S+)", first)
    return f"{head.group(1)}: {reason}" if head else reason


def _valid_keys(key: str, overrides) -> list[str]:
    """The keys valid beside `key` (its siblings in the config composed without it)."""
    section = key.rsplit(".", 1)[0] if "." in key else None
    others = [o for o in overrides if not o.lstrip("+~").startswith(key)]
    try:
        cfg = compose(others, return_hydra_config=key.startswith("hydra."))
    except ConfigError:
        return []
    from omegaconf import OmegaConf

    node = cfg if section is None else OmegaConf.select(cfg, section)
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


def effective_image_size(data_cfg, image_shape) -> int:
    """The size the models work at: data.image_size, else the data's own (square) size.

    Raises:
        ConfigError: a size below the data's own (it would throw detail away), or non-square
            images with no data.image_size to resize them to.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    size = data_cfg.image_size
    if size is None:
        if height != width:
            raise ConfigError(f"the images are {height}x{width}; set data.image_size=N to resize "
                              "them to NxN inside the model")
        return height
    if size < max(height, width):
        raise ConfigError(f"data.image_size={size} would shrink the {height}x{width} images; "
                          f"valid: null (their own size) or >= {max(height, width)} "
                          f"({max(height, width) + 4} pads, larger sizes resize)")
    return int(size)


def container(cfg) -> dict:
    """The config as plain Python (enums as their names), without Hydra's own node."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    plain.pop("hydra", None)
    return plain


def is_inspect_only(argv: list[str]) -> bool:
    """True for invocations that only print help or config (`--help`, `--cfg job`, ...)."""
    return any(arg in INSPECT_FLAGS or arg.split("=")[0] in INSPECT_FLAGS for arg in argv)




register_resolvers()
