"""Every keras-tuner internal vggsweep relies on, behind this one door.

keras-tuner's public API (`Oracle`, `Tuner`, `Objective`, the stock oracles, `FailedTrialError`)
is used everywhere; what it does not expose is reached here and nowhere else: its trial statuses
and fixed-hyperparameter type, the private hooks vggsweep overrides (`OracleHooks`,
`TunerHooks`), the private attributes it reads or sets, and the gRPC servicer of its distributed
mode. `NAMES` lists each internal; `tests/test_internals.py` checks that the installed
keras-tuner still has every one, so an upgrade that moves one fails there, with its name, instead
of in the middle of a sweep.
"""

from __future__ import annotations

import keras_tuner as kt
from keras_tuner.engine import trial as _trial
from keras_tuner.engine.hyperparameters import Fixed

TrialStatus = _trial.TrialStatus
RUNNING, STOPPED, IDLE = TrialStatus.RUNNING, TrialStatus.STOPPED, TrialStatus.IDLE
COMPLETED, FAILED = TrialStatus.COMPLETED, TrialStatus.FAILED

#: (owner, attribute) of every private keras-tuner name used below.
NAMES = (
    (kt.Oracle, "_save_trial"),
    (kt.Oracle, "_random_values"),
    (kt.Oracle, "_duplicate"),
    (kt.Oracle, "_get_oracle_fname"),
    (kt.Oracle, "_get_trial_dir"),
    (kt.Oracle, "_set_project_dir"),
    (kt.Tuner, "_populate_initial_space"),
    (kt.Tuner, "_is_worker"),
    (kt.Tuner, "_get_tuner_fname"),
)
#: Instance attributes an oracle sets in its constructor (checked on a built oracle).
ORACLE_ATTRIBUTES = ("_seed_state", "_retry_queue", "ongoing_trials", "tuner_ids")


class OracleHooks:
    """keras-tuner's private oracle hooks, turned into vggsweep's named methods."""

    def _save_trial(self, trial):  # Oracle._save_trial: writes trial_<id>/trial.json
        self.save_trial(trial)

    def _random_values(self):  # Oracle._random_values: a random point of the space
        return self.random_values()

    def stock_random_values(self):
        """keras-tuner's own random point (the next class in the oracle's MRO)."""
        return super()._random_values()


class TunerHooks:
    """keras-tuner's private tuner hook, turned into a named method."""

    def _populate_initial_space(self):  # BaseTuner._populate_initial_space
        self.declare_space()


def is_fixed(hyperparameter) -> bool:
    """Whether a declared hyperparameter is fixed (recorded, never searched)."""
    return isinstance(hyperparameter, Fixed)


def set_seed(oracle, seed: int) -> None:
    """Seeds the oracle with `seed`, 0 included (keras-tuner replaces a falsy seed by a random
    one, and draws from `_seed_state`)."""
    oracle.seed = oracle._seed_state = seed  # noqa: SLF001 - the door


def retry_queue(oracle) -> list:
    """The trial ids the oracle runs again first (interrupted trials, after a reload)."""
    return oracle._retry_queue  # noqa: SLF001 - the door


def set_retry_queue(oracle, trial_ids: list) -> None:
    oracle._retry_queue = list(trial_ids)  # noqa: SLF001 - the door


def is_duplicate(oracle, values: dict) -> bool:
    """Whether `values` were tried already (keras-tuner's own test)."""
    return bool(oracle._duplicate(values))  # noqa: SLF001 - the door


def oracle_file(oracle) -> str:
    """The oracle's state file (oracle.json in the project)."""
    return oracle._get_oracle_fname()  # noqa: SLF001 - the door


def set_project_dir(oracle, directory: str, project_name: str) -> None:
    """Where an oracle built outside a tuner keeps its state (tests, benchmark replays)."""
    oracle._set_project_dir(directory, project_name)  # noqa: SLF001 - the door


def trial_dir(oracle, trial_id: str) -> str:
    return oracle._get_trial_dir(trial_id)  # noqa: SLF001 - the door


def tuner_file(tuner) -> str:
    """The tuner's state file (tuner<id>.json in the project)."""
    return tuner._get_tuner_fname()  # noqa: SLF001 - the door


def is_worker(tuner) -> bool:
    """Whether this tuner trains trials for a chief's oracle (keras-tuner's distributed mode)."""
    return bool(tuner._is_worker())  # noqa: SLF001 - the door


def oracle_servicer(oracle, server) -> None:
    """Serves `oracle` on a gRPC `server` (keras-tuner's chief)."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


def search_is_over(oracle) -> bool:
    """Whether the chief's oracle has handed out its last trial and every trial ended."""
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    return bool(exit_chief(oracle))


def metrics_tracker(direction_by_name: dict):
    """An empty metrics history as a trial holds it (tests build trials by hand)."""
    from keras_tuner.src.engine import metrics_tracking

    tracker = metrics_tracking.MetricsTracker()
    for name, direction in direction_by_name.items():
        tracker.register(name, direction=direction)
    return tracker
