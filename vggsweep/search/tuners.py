"""The tuners and pruners: one registry each, name -> implementation.

Validation and `--help` read the names; a job builds the oracle and the pruner. The oracle classes
live in `vggsweep.search.oracles` (which imports keras-tuner) and are imported only when a job
builds one, so that validation stays instant. To add a tuner: an oracle class there, an entry
here. To add a pruner: a `pruning.Pruner` and its factory (tuner config -> pruner) there, an entry
here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

from vggsweep.search import pruning


class Tuner(NamedTuple):
    """A search strategy: its oracle class ("module:Class") and its keyword arguments."""

    oracle: str
    kwargs: Callable  # (tuner config, budget config) -> the oracle's own keyword arguments
    counts_trials: bool = True  # False: the epoch budget decides (Hyperband)


def _trials(_tuner_cfg, budget_cfg) -> dict:
    return {"max_trials": budget_cfg.max_trials}


TUNERS: dict[str, Tuner] = {
    "random": Tuner("vggsweep.search.oracles:RandomOracle", _trials),
    "grid": Tuner("vggsweep.search.oracles:GridOracle", _trials),
    "bayesian": Tuner(
        "vggsweep.search.oracles:BayesianOracle",
        lambda tuner_cfg, budget_cfg: {"max_trials": budget_cfg.max_trials,
                                       "num_initial_points": tuner_cfg.num_initial_points}),
    "hyperband": Tuner(
        "vggsweep.search.oracles:HyperbandOracle",
        lambda tuner_cfg, budget_cfg: {"max_epochs": budget_cfg.epochs,
                                       "factor": tuner_cfg.factor,
                                       "hyperband_iterations": tuner_cfg.hyperband_iterations},
        counts_trials=False),
    "quasi_random": Tuner("vggsweep.search.oracles:QuasiRandomOracle", _trials),
    "tpe": Tuner("vggsweep.search.samplers:SamplerOracle", _trials),  # Optuna's TPE
}

#: Pruners (`tuner.pruner`): name -> factory of the rule from the tuner config (None: never).
PRUNERS: dict[str, Callable | None] = {
    "off": None,
    "median": pruning.median,  # below the median of the other trials at the same epoch
    "percentile": pruning.percentile,  # below tuner.pruner_percentile
    "asha": pruning.asha,  # asynchronous successive halving
}


def make_pruner(tuner_cfg) -> pruning.Pruner | None:
    """The pruner `tuner.pruner` names, configured from the tuner section; None for off."""
    factory = PRUNERS[str(tuner_cfg.pruner)]
    return factory(tuner_cfg) if factory is not None else None


def resolve(path: str):
    """The object named by "module:attribute"."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check(cfg) -> None:
    """Checks what the tuner section asks of the rest of the config (one line on a problem)."""
    from vggsweep.config import space
    from vggsweep.errors import ConfigError

    tuner = TUNERS[str(cfg.tuner.name)]
    if str(cfg.tuner.pruner) == "asha" and not tuner.counts_trials:
        raise ConfigError("tuner.pruner=asha: Hyperband already halves its brackets; use "
                          "tuner.pruner=off or median with it, or another tuner")
    if str(cfg.tuner.pruner) != "off" and cfg.budget.executions_per_trial > 1:
        raise ConfigError("tuner.pruner needs budget.executions_per_trial=1 (a pruner compares "
                          "one curve per trial)")
    specs = {name: space.normalize(value) for section in (cfg.model, cfg.optimizer)
             for name, value in section.items() if space.is_spec(value)}
    if space.is_spec(cfg.activation):
        specs["activation"] = space.normalize(cfg.activation)
    for index, point in enumerate(space.plain(cfg.tuner.enqueue)):
        unknown = sorted(set(point) - set(specs))
        if unknown:
            raise ConfigError(f"tuner.enqueue[{index}] sets {', '.join(unknown)}, which this job "
                              "does not search; searched: " + (", ".join(sorted(specs))
                                                               or "(nothing)"))
        for name, value in point.items():
            if not space.can_produce(specs[name], value):
                raise ConfigError(f"tuner.enqueue[{index}].{name}={value!r} is outside its "
                                  f"search space {specs[name]}")
