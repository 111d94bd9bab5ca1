"""Pruners: stop a trial whose validation accuracy is already behind, epoch by epoch.

They run inside the oracle (`oracles.SurvivingOracleMixin.update_trial`), so they see every
trial of the job, also those trained by other workers, and work with any search strategy. A
pruned trial ends normally at the epoch it was stopped; it is recorded (tag `vggsweep.pruned`,
status PRUNED in the leaderboard) and never ranked above a trial that trained to its end.
Pure Python on keras-tuner's per-epoch metric histories; no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import numpy as np

METRIC = "val_accuracy"


class Pruner(Protocol):
    """A pruning rule: whether `trial` should stop after `epoch` (0-based), given every trial of
    the job (keras-tuner trials: `trial_id` and per-epoch `metrics`)."""

    def should_stop(self, trial, trials: Iterable, epoch: int) -> bool: ...


def value_at(trial, epoch: int) -> float | None:
    """The trial's validation accuracy reported at `epoch` (0-based), if it reached it."""
    if not trial.metrics.exists(METRIC):
        return None
    for observation in trial.metrics.get_history(METRIC):
        if int(observation.step) == epoch:
            return float(observation.mean())
    return None


def best_until(trial, epoch: int) -> float | None:
    """The trial's best validation accuracy up to and including `epoch`."""
    if not trial.metrics.exists(METRIC):
        return None
    values = [float(o.mean()) for o in trial.metrics.get_history(METRIC) if int(o.step) <= epoch]
    return max(values) if values else None


def _others_at(trial, trials: Iterable, epoch: int) -> list[float]:
    values = [value_at(other, epoch) for other in trials if other.trial_id != trial.trial_id]
    return [v for v in values if v is not None and math.isfinite(v)]


class PercentilePruner:
    """Optuna's median/percentile rule: after `warmup_epochs`, stop a trial whose best
    validation accuracy so far is below the `percentile`-th percentile of the other trials'
    values at the same epoch (once `min_trials` other trials have reached it). The median rule is
    percentile 50."""

    def __init__(self, percentile: float = 50.0, warmup_epochs: int = 1, min_trials: int = 3):
        self.percentile = percentile
        self.warmup_epochs = warmup_epochs
        self.min_trials = min_trials

    def should_stop(self, trial, trials: Iterable, epoch: int) -> bool:
        if epoch + 1 <= self.warmup_epochs:
            return False
        others = _others_at(trial, trials, epoch)
        if len(others) < self.min_trials:
            return False
        mine = best_until(trial, epoch)
        return mine is not None and mine < float(np.percentile(others, self.percentile))


class SuccessiveHalvingPruner:
    """Asynchronous successive halving (ASHA): rungs at epochs r, r*eta, r*eta^2, ...; at a rung a
    trial goes on only if it is in the top 1/eta of the trials that reached that rung so far
    (with fewer than eta of them, only if it is the best). Asynchronous: no trial waits for
    others, so it works with any number of parallel workers."""

    def __init__(self, reduction_factor: int = 3, min_epochs: int = 1, min_trials: int = 1):
        self.reduction_factor = reduction_factor
        self.min_epochs = max(1, min_epochs)
        self.min_trials = min_trials

    def is_rung(self, epoch: int) -> bool:
        rung = self.min_epochs
        while rung <= epoch + 1:
            if rung == epoch + 1:
                return True
            rung *= self.reduction_factor
        return False

    def should_stop(self, trial, trials: Iterable, epoch: int) -> bool:
        if not self.is_rung(epoch):
            return False
        mine = value_at(trial, epoch)
        others = _others_at(trial, trials, epoch)
        if mine is None or len(others) < self.min_trials:
            return False
        competing = sorted([*others, mine], reverse=True)
        keep = max(len(competing) // self.reduction_factor, 1)
        return mine < competing[keep - 1]


def median(tuner_cfg) -> PercentilePruner:
    """`tuner.pruner=median`: below the median of the other trials at the same epoch."""
    return PercentilePruner(50.0, tuner_cfg.pruner_warmup_epochs, tuner_cfg.pruner_min_trials)


def percentile(tuner_cfg) -> PercentilePruner:
    """`tuner.pruner=percentile`: below `tuner.pruner_percentile` of the others."""
    return PercentilePruner(tuner_cfg.pruner_percentile, tuner_cfg.pruner_warmup_epochs,
                            tuner_cfg.pruner_min_trials)


def asha(tuner_cfg) -> SuccessiveHalvingPruner:
    """`tuner.pruner=asha`: asynchronous successive halving, rungs every `tuner.factor`x."""
    return SuccessiveHalvingPruner(reduction_factor=tuner_cfg.factor,
                                   min_epochs=max(1, tuner_cfg.pruner_warmup_epochs),
                                   min_trials=tuner_cfg.pruner_min_trials)
