"""A job's search space: keras-tuner hyperparameters declared from the config subtrees, and a
trial's values mapped back to the builders' arguments.

There is no keras-tuner `HyperModel`: keras-tuner builds a hypermodel's model itself, while a
vggsweep trial is built, compiled and trained by `vggsweep.models.training.train_one`, the one
training path (`SweepTuner.run_trial`). What keras-tuner needs from the model side is the space,
declared here from the config (not discovered by building a model at its defaults).
"""

from __future__ import annotations

from vggsweep import models
from vggsweep.config import space


def of_job(cfg, *, input_shape, num_classes: int, image_size: int):
    """A job's space and its warm-start points (`tuner.enqueue`, plain): (TrialSpace, points).
    A grid walks its space from the first point's values (they become the space's defaults)."""
    model_cfg, optimizer_cfg, activation = cfg.model, cfg.optimizer, cfg.activation
    enqueue = space.plain(cfg.tuner.enqueue)
    if str(cfg.tuner.name) == "grid" and enqueue:  # the grid starts from its defaults
        model_cfg = space.with_defaults(model_cfg, enqueue[0])
        optimizer_cfg = space.with_defaults(optimizer_cfg, enqueue[0])
        activation = space.with_defaults({"activation": activation}, enqueue[0])["activation"]
    return TrialSpace(model_cfg, optimizer_cfg, activation, input_shape=input_shape,
                      num_classes=num_classes, image_size=image_size), enqueue


class TrialSpace:
    """The space of one job (model, optimizer, activation) and its points."""

    def __init__(self, model_cfg, optimizer_cfg, activation, *, input_shape, num_classes: int,
                 image_size: int):
        self.model_cfg = space.plain(model_cfg)
        self.optimizer_cfg = space.plain(optimizer_cfg)
        self.activation = space.plain(activation)
        self.family = self.model_cfg["family"]
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.image_size = image_size

    def declare(self, hp) -> None:
        """Declares every hyperparameter on a keras-tuner `HyperParameters` (fixed ones too)."""
        space.declare(hp, {"activation": self.activation})
        space.declare(hp, {k: v for k, v in self.model_cfg.items() if k != "family"})
        space.declare(hp, {k: v for k, v in self.optimizer_cfg.items() if k != "name"})

    def point(self, hp_values: dict | None) -> tuple[dict, dict]:
        """(model builder kwargs, optimizer kwargs) at the trial's values."""
        return space.point(self.model_cfg, self.optimizer_cfg, self.activation, hp_values)

    def typed_values(self, hp_values: dict) -> dict:
        """The trial's values in the config's own types (booleans stay booleans)."""
        model_kwargs, optimizer_kwargs = self.point(hp_values)
        typed = {**model_kwargs, **optimizer_kwargs}
        return {k: typed.get(k, v) for k, v in hp_values.items()}

    def param_count(self, hp_values: dict) -> int:
        """The model's parameter count at a point (built, not trained)."""
        model_kwargs, _ = self.point(hp_values)
        return models.build_model(self.family, model_kwargs, input_shape=self.input_shape,
                                  num_classes=self.num_classes,
                                  image_size=self.image_size).count_params()
