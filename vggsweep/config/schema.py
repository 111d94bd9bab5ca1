"""Typed configuration schema, registered in Hydra's ConfigStore.

Hydra merges the YAML files of `conf/` into these dataclasses, so a misspelled key, a value of the
wrong type or an unknown enumerated value (`tuner.name=grd`) fails at composition, before any job
starts. Enumerations are built from the registries (tuners, data sources), so adding a tuner or a
dataset there is all it takes. Ranges live beside each field (`metadata={"min": ...}`) and are
checked by `check_ranges`. The model and optimizer subtrees are open dicts here: their valid keys
are the keyword arguments of the builder functions, checked by `vggsweep.config.validate`.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from vggsweep.data import DATASETS
from vggsweep.errors import ConfigError
from vggsweep.search.tuners import PRUNERS, TUNERS


class Choice(str, Enum):
    """An enumerated config value that prints and compares as its plain string."""

    __str__ = str.__str__
    __format__ = str.__format__


def _choices(name: str, values) -> type[Choice]:
    return Choice(name, {value: value for value in values})


TunerName = _choices("TunerName", TUNERS)
DataSource = _choices("DataSource", DATASETS)
Keep = _choices("Keep", ("best", "all"))
PrunerName = _choices("PrunerName", PRUNERS)
Device = _choices("Device", ("auto", "cpu", "gpu"))
GpuSharing = _choices("GpuSharing", ("share", "one_each"))
CostName = _choices("CostName", ("train_time_s", "param_count"))


def _field(default, *, min=None, max=None, above=None, below=None, help=""):  # noqa: A002
    """A field with its valid range: min/max inclusive, above/below exclusive."""
    limits = {k: v for k, v in {"min": min, "max": max, "above": above, "below": below}.items()
              if v is not None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=limits)
    return field(default=default, metadata=limits)


@dataclass
class DataConfig:
    source: DataSource = DataSource.mnist  # mnist | digits | npz | idx (a file or a folder)
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
    name: TunerName = TunerName.quasi_random  # quasi_random | random | grid | bayesian | hyperband
    directory: Optional[str] = None  # project root; default <launch dir>/tuner_state
    fresh: bool = False  # True: discard this job's saved tuner state and start over
    num_initial_points: Optional[int] = _field(None, min=1)  # bayesian: random points first
    factor: int = _field(3, min=2)  # hyperband: reduction factor between brackets
    hyperband_iterations: int = _field(1, min=1)
    keep: Keep = Keep.best  # checkpoints kept per job: best | all
    workers: int = _field(1, min=1)  # processes training trials of this job in parallel
    chief_host: str = "127.0.0.1"  # where the job serves its oracle to workers (0.0.0.0: any)
    chief_port: int = _field(0, min=0, max=65535)  # 0: a free port
    pruner: PrunerName = PrunerName.off  # stop trials whose curve is behind: off | median | ...
    pruner_percentile: float = _field(50.0, above=0.0, below=100.0)  # percentile pruner
    pruner_warmup_epochs: int = _field(1, min=0)  # epochs a trial always runs
    pruner_min_trials: int = _field(3, min=1)  # trials that reach an epoch before pruning at it
    enqueue: List[Dict[str, Any]] = _field([])  # points evaluated first (warm start)
    cost: Optional[CostName] = None  # search for accuracy and cost: train_time_s | param_count
    cost_weight: float = _field(0.02, min=0.0)  # accuracy traded per 10x cost (0.02: 2 points)


@dataclass
class BudgetConfig:
    max_trials: int = _field(10, min=1)  # keras-tuner trials per job (hyperband: its epochs)
    epochs: int = _field(10, min=1)  # per trial (hyperband: max epochs of a trial)
    batch_size: int = _field(64, min=1)
    executions_per_trial: int = _field(1, min=1)
    patience: Optional[int] = _field(None, min=1)  # early stopping on val_accuracy; None: off
    time_limit_s: Optional[float] = _field(None, above=0.0)  # no new trial starts after it


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # any MLflow URI; default sqlite:///<launch dir>/mlflow.db
    log_model: bool = True  # log the best trial's model on the job's parent run


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
    verbose: int = _field(1, min=0, max=2)  # 0: job lines, 1: + trial and epoch lines, 2: + bar


def register() -> None:
    """Registers the schema as `vggsweep_schema` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="vggsweep_schema", node=VggsweepConfig)


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
        _check_limits(name, value, item.metadata)


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
