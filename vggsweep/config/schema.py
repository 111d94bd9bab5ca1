"""Typed configuration schema, registered in Hydra's ConfigStore.

Hydra merges the YAML files of `conf/` into these dataclasses, so a misspelled key, a value of the
wrong type or an unknown enumerated value (`tuner.keep=some`) fails at composition, before any
job starts. Ranges live beside each field (`metadata={"min": ...}`) and are checked by
`check_ranges`. Names that a registry defines (`data.source`, `tuner.name`, `tuner.pruner`) and
the model and optimizer subtrees (open dicts: their valid keys are the keyword arguments of the
builder functions) are checked against the registries by `vggsweep.job.checks.validate`, one
layer up. A field marked `identity=False` may change between reruns of a job without making it
another job (`identity_paths`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from vggsweep.errors import ConfigError


class Choice(str, Enum):
    """An enumerated config value that prints and compares as its plain string."""

    __str__ = str.__str__
    __format__ = str.__format__


def _choices(name: str, values) -> type[Choice]:
    return Choice(name, {value: value for value in values})


Keep = _choices("Keep", ("best", "all"))
Device = _choices("Device", ("auto", "cpu", "gpu"))
GpuSharing = _choices("GpuSharing", ("share", "one_each"))
CostName = _choices("CostName", ("train_time_s", "param_count"))


def _field(default, *, min=None, max=None, above=None, below=None,  # noqa: A002 - the words
           identity: bool = True):
    """A field with its valid range (min/max inclusive, above/below exclusive); `identity=False`:
    changing it does not make a job another job (how much or where it runs, not what)."""
    limits = {k: v for k, v in {"min": min, "max": max, "above": above, "below": below}.items()
              if v is not None}
    metadata = {**limits, **({} if identity else {"identity": False})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    source: str = "mnist"  # mnist | digits | npz | idx (a file or a folder): data.DATASETS
    name: Optional[str] = None  # the name results are shown under; default: the source's
    path: Optional[str] = None  # an .npz file or a directory of IDX files (gzipped or not)
    image_size: Optional[int] = _field(None, min=1)  # null: the data's own; larger: resized
    train_samples: Optional[int] = _field(None, min=10)  # stratified training subsample
    test_samples: Optional[int] = _field(None, min=10)  # stratified test subsample
    val_fraction: float = _field(0.1, above=0.0, below=1.0)  # carved from the training data
    split_seed: int = _field(0, min=0)  # fixed across seeds so every trial sees the same split
    download: bool = True  # allow Keras to download MNIST when nothing is found locally


@dataclass
class TunerConfig:
    name: str = "tpe"  # tpe | quasi_random | random | grid | bayesian | hyperband: TUNERS
    directory: Optional[str] = None  # project root; default <launch dir>/tuner_state
    fresh: bool = _field(False, identity=False)  # True: discard the saved state, start over
    num_initial_points: Optional[int] = _field(None, min=1)  # bayesian: random points first
    factor: int = _field(3, min=2)  # hyperband: reduction factor between brackets
    hyperband_iterations: int = _field(1, min=1)
    keep: Keep = Keep.best  # checkpoints kept per job: best | all
    workers: int = _field(1, min=1, identity=False)  # processes training its trials at once
    chief_host: str = _field("127.0.0.1", identity=False)  # where workers find the oracle
    chief_port: int = _field(0, min=0, max=65535, identity=False)  # 0: a free port
    pruner: str = "off"  # stop trials whose curve is behind: off | median | ...: PRUNERS
    pruner_percentile: float = _field(50.0, above=0.0, below=100.0)  # percentile pruner
    pruner_warmup_epochs: int = _field(1, min=0)  # epochs a trial always runs
    pruner_min_trials: int = _field(3, min=1)  # trials that reach an epoch before pruning at it
    enqueue: List[Dict[str, Any]] = _field([])  # points evaluated first (warm start)
    cost: Optional[CostName] = None  # search for accuracy and cost: train_time_s | param_count
    cost_weight: float = _field(0.02, min=0.0)  # accuracy traded per 10x cost (0.02: 2 points)


@dataclass
class BudgetConfig:
    max_trials: int = _field(10, min=1, identity=False)  # trials per job; raise it to extend
    epochs: int = _field(10, min=1)  # per trial (hyperband: max epochs of a trial)
    batch_size: int = _field(64, min=1)
    executions_per_trial: int = _field(1, min=1)
    patience: Optional[int] = _field(None, min=1)  # early stopping on val_accuracy; None: off
    time_limit_s: Optional[float] = _field(None, above=0.0, identity=False)  # no new trial after
    # A model whose training would need more memory (estimated before anything is built:
    # vggsweep/models/footprint.py) is refused; null: no limit.
    max_model_gb: Optional[float] = _field(32.0, above=0.0, identity=False)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # any MLflow URI; default sqlite:///<launch dir>/mlflow.db
    log_model: bool = _field(True, identity=False)  # log the best model on the job's run
    # How long a sweep waits for an unreachable store (training goes on meanwhile) before the
    # job stops, its unsaved records kept for the rerun; MLflow's HTTP timeout follows from it.
    outage_s: float = _field(300.0, above=0.0, identity=False)


@dataclass
class AcceleratorConfig:
    device: Device = Device.auto  # auto: the GPU path when a GPU is visible
    jit_compile: Optional[bool] = None  # XLA; null: on with a GPU (Keras' "auto")
    mixed_precision: Optional[bool] = None  # bf16 compute; null: on with a GPU
    steps_per_execution: Optional[int] = _field(None, min=1)  # null: 1 on CPU, 32 on GPU
    batch_scale: Optional[int] = _field(None, min=1)  # batch x N, learning rate x N; null: 1/4
    data_on_device: Optional[bool] = None  # arrays put on the device once; null: with a GPU
    gpu_sharing: GpuSharing = GpuSharing.share  # workers on one GPU: share | one_each
    gpu_memory_mb: Optional[int] = _field(None, min=256)  # per worker when sharing


@dataclass
class VggsweepConfig:
    model: Dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    accelerator: AcceleratorConfig = field(default_factory=AcceleratorConfig)
    activation: Any = None  # a name (fixed) or a search spec
    seed: int = _field(0, min=0)
    experiment: str = "vggsweep"
    verbose: int = _field(1, min=0, max=2, identity=False)  # 0: job lines, 1: + trials, 2: + bar


def register() -> None:
    """Registers the schema as `vggsweep_schema` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="vggsweep_schema", node=VggsweepConfig)


def identity_paths(schema: type = VggsweepConfig, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """The config paths marked `identity=False` (e.g. ("budget", "max_trials"))."""
    paths = []
    for item in dataclasses.fields(schema):
        nested = item.default_factory() if callable(item.default_factory) else None
        if dataclasses.is_dataclass(nested):
            paths += identity_paths(type(nested), (*prefix, item.name))
        elif item.metadata.get("identity") is False:
            paths.append((*prefix, item.name))
    return paths


def check_ranges(cfg, schema: type = VggsweepConfig, prefix: str = "") -> None:
    """Checks every field with a range against the composed config (one line on the first)."""
    for item in dataclasses.fields(schema):
        value = cfg.get(item.name) if hasattr(cfg, "get") else getattr(cfg, item.name)
        name = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(item.default_factory() if callable(
                item.default_factory) else None) and value is not None:
            check_ranges(value, type(item.default_factory()), f"{name}.")
            continue
        if value is None or not item.metadata or isinstance(value, bool):
            continue
        _check_limits(name, value, {k: v for k, v in item.metadata.items() if k != "identity"})


def _check_limits(name: str, value, limits: dict) -> None:
    problems = {"min": lambda v, x: v < x, "max": lambda v, x: v > x,
                "above": lambda v, x: v <= x, "below": lambda v, x: v >= x}
    words = {"min": ">=", "max": "<=", "above": ">", "below": "<"}
    for key, limit in limits.items():
        if problems[key](value, limit):
            if limits == {"min": 1} and isinstance(value, int):
                raise ConfigError(f"{name}={value} must be a positive integer (>= 1)")
            valid = " and ".join(f"{words[k]} {v}" for k, v in limits.items())
            raise ConfigError(f"{name}={value} is out of range; valid: {valid}")
