"""Typed configuration schema, registered in Hydra's ConfigStore.

Hydra merges the YAML files of `conf/` into these dataclasses, so a misspelled key or a value of the
wrong type fails at composition, before any job starts. The model and optimizer subtrees are open
dicts here: their valid keys are the keyword arguments of the builder functions, checked by
`vggsweep.config.validate`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class DataConfig:
    name: str = "mnist"  # mnist | digits
    path: Optional[str] = None  # directory of IDX files (gzipped or not) or an mnist.npz
    image_size: int = 28  # 28 native, 32 zero-padded, anything else resized inside the model
    train_samples: Optional[int] = None  # stratified subsample of the training split
    test_samples: Optional[int] = None  # stratified subsample of the test split (smoke budgets)
    val_fraction: float = 0.1  # carved from the training data; the tuner's objective
    split_seed: int = 0  # fixed across seeds so every trial sees the same split
    download: bool = True  # allow Keras to download MNIST when nothing is found locally


@dataclass
class TunerConfig:
    name: str = "random"  # random | grid | bayesian | hyperband | quasi_random
    objective: str = "val_accuracy"
    directory: Optional[str] = None  # project root; default <launch dir>/tuner_state
    fresh: bool = False  # True: discard this job's saved tuner state and start over
    num_initial_points: Optional[int] = None  # bayesian: random points before the GP
    factor: int = 3  # hyperband: reduction factor between brackets
    hyperband_iterations: int = 1
    keep: str = "best"  # checkpoints kept per job: best | all


@dataclass
class BudgetConfig:
    max_trials: int = 10  # keras-tuner trials per job (hyperband: epochs budget decides)
    epochs: int = 10  # per trial (hyperband: max epochs of a trial)
    batch_size: int = 64
    executions_per_trial: int = 1
    patience: Optional[int] = None  # early stopping on val_accuracy; None: off
    time_limit_s: Optional[float] = None  # no new trial starts after this many seconds in a job


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # any MLflow URI; default sqlite:///<launch dir>/mlflow.db
    log_model: bool = True  # log the best trial's model on the job's parent run


@dataclass
class VggsweepConfig:
    model: Dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    activation: Any = None  # a name (fixed) or a search spec
    seed: int = 0
    experiment: str = "vggsweep"
    verbose: int = 1  # 0: job lines, 1: + trial and epoch lines, 2: + Keras progress bar


def register() -> None:
    """Registers the schema as `vggsweep_schema` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="vggsweep_schema", node=VggsweepConfig)
