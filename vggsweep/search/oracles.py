"""keras-tuner oracles made to survive and to share: atomic state, a time limit, warm starts,
pruning, and quasi-random search. They run in the job's process (or in its chief, when the
job's trials are trained by several workers).

`SurvivingOracleMixin` adds to every oracle of `vggsweep.search.tuners.TUNERS`:
- state written atomically (temporary file, fsync, rename), re-saved after a trial ends so that a
  restarted chief never re-runs a finished trial;
- `deadline`: no new trial starts after it (at least one trial always runs);
- `enqueue`: points evaluated first (warm start), in order, whatever the search strategy; the
  first of them is the search's *reference*: trial 0, trained to its last epoch whatever the
  strategy (the config's default, `[{}]`, is the space's default point: a search starts from the
  model one would have written by hand, and its best is never below it);
- `pruner`: stops a trial whose validation accuracy is behind at an epoch (its `update_trial`
  answers STOPPED, which the trial's Keras callback turns into the end of the fit); never the
  reference.
Each is a constructor argument (`make_oracle` builds an oracle complete); keras-tuner's private
hooks are reached through `vggsweep.search.internals` only.
"""

from __future__ import annotations

import os
import time

import keras_tuner as kt

from vggsweep.runtime.files import atomic_write_json
from vggsweep.search import internals, tuners
from vggsweep.search.internals import RUNNING, STOPPED

OBJECTIVE = kt.Objective("val_accuracy", direction="max")
#: With `tuner.cost`: validation accuracy minus `tuner.cost_weight` per decade of the cost.
COST_OBJECTIVE = kt.Objective("cost_adjusted_accuracy", direction="max")
FINISHED_STATES = (internals.COMPLETED, internals.FAILED)


def is_reference(trial_id: str, reference_first: bool) -> bool:
    """Whether a trial is its search's reference: the first trial, when the search has
    warm-start points (every oracle below creates the first enqueued point first)."""
    return reference_first and int(trial_id) == 0


class SurvivingOracleMixin(internals.OracleHooks):
    """Atomic state, deadline, warm start and pruning for any keras-tuner oracle.

    Args (keyword, beside the oracle's own):
        pruner: a `vggsweep.search.pruning.Pruner`, or None.
        enqueue: points (name -> value) evaluated first, completed with the space's defaults.
        deadline: `time.monotonic()` after which no new trial starts; None: no limit.
    """

    def __init__(self, *args, pruner=None, enqueue=(), deadline: float | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        internals.set_seed(self, kwargs.get("seed") or 0)
        self.pruner = pruner
        self.enqueue = [dict(point) for point in enqueue]
        self.deadline = deadline
        self._enqueue_index = 0

    def save(self):
        atomic_write_json(internals.oracle_file(self), self.get_state())

    def save_trial(self, trial):
        path = os.path.join(internals.trial_dir(self, trial.trial_id), "trial.json")
        atomic_write_json(path, trial.get_state())

    @kt.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        self.save()  # keras-tuner saves before it drops the trial from `ongoing_trials`

    def reload(self):
        super().reload()
        # An interrupted trial is retried; one that had finished (saved state lagging behind)
        # is not run again.
        internals.set_retry_queue(self, [t for t in internals.retry_queue(self)
                                         if self.trials[t].status not in FINISHED_STATES])

    def populate_space(self, trial_id):
        if self.deadline is not None and self.trials and time.monotonic() > self.deadline:
            return {"status": STOPPED, "values": None}
        return super().populate_space(trial_id)

    def next_enqueued(self) -> dict | None:
        """The next warm-start point not tried yet, completed with the space's defaults."""
        while self._enqueue_index < len(self.enqueue):
            point = self.enqueue[self._enqueue_index]
            self._enqueue_index += 1
            values = {hp.name: point.get(hp.name, hp.default)
                      for hp in self.hyperparameters.space}
            if not internals.is_duplicate(self, values):
                return values
        return None

    def random_values(self):
        """A random point (random search, Bayesian's first points): the warm starts first."""
        return self.next_enqueued() or self.stock_random_values()

    @property
    def reference_trial_id(self) -> str | None:
        """The reference trial's id (the first enqueued point's), once it is created."""
        first = self.start_order[0] if self.start_order else None
        return first if first is not None and is_reference(first, bool(self.enqueue)) else None

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        # With a pruner, workers report every epoch (step = epoch index). The reference is
        # never stopped: the search's best is then never below it.
        if (self.pruner is not None and trial.status == RUNNING
                and trial_id != self.reference_trial_id):
            if self.pruner.should_stop(trial, self.trials.values(), int(step)):
                trial.status = STOPPED
        return trial

    def get_state(self):
        state = super().get_state()
        state["enqueue_index"] = self._enqueue_index
        state["reference_trial_id"] = self.reference_trial_id  # for readers of the state
        return state

    def set_state(self, state):
        super().set_state(state)
        self._enqueue_index = state.get("enqueue_index", 0)


class EnqueueFirstMixin:
    """For oracles whose `populate_space` does not draw random values: warm-start points first."""

    def populate_space(self, trial_id):
        if self.deadline is None or not self.trials or time.monotonic() <= self.deadline:
            values = self.next_enqueued()
            if values is not None:
                return {"status": RUNNING, "values": values}
        return super().populate_space(trial_id)


class RandomOracle(SurvivingOracleMixin, kt.oracles.RandomSearchOracle):
    pass


class GridOracle(SurvivingOracleMixin, kt.oracles.GridSearchOracle):
    """The grid walks from its defaults: a warm start makes its first point the defaults
    (`vggsweep.config.space.with_defaults`), and the grid holds every other point anyway."""


class BayesianOracle(EnqueueFirstMixin, SurvivingOracleMixin,
                     kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Gaussian-process search. Its random start defaults to 3 points per
    *searched* hyperparameter: keras-tuner counts the fixed ones too, and a job declares every
    fixed value (24 in S3's grid study, whose 64 points it would then all draw at random)."""

    def populate_space(self, trial_id):
        if self.num_initial_points is None:
            searched = sum(not internals.is_fixed(hp) for hp in self.hyperparameters.space)
            self.num_initial_points = max(3 * searched, 3)
        return super().populate_space(trial_id)


class HyperbandOracle(SurvivingOracleMixin, kt.oracles.HyperbandOracle):
    """keras-tuner's Hyperband; the reference (the first enqueued point) comes first, trained to
    the full `max_epochs` outside the brackets (a bracket would train it for fewer epochs and
    might not promote it), then the brackets run as keras-tuner's do; they never draw the
    reference again (keras-tuner's duplicate test)."""

    def populate_space(self, trial_id):
        if not self.trials and self.enqueue:
            values = self.next_enqueued()
            if values is not None:
                values.update({"tuner/epochs": self.max_epochs, "tuner/initial_epoch": 0})
                return {"status": RUNNING, "values": values}
        return super().populate_space(trial_id)


class QuasiRandomOracle(SurvivingOracleMixin, kt.Oracle):
    """Quasi-random search: a scrambled Sobol sequence (scipy.stats.qmc) mapped through each
    hyperparameter's `prob_to_value`, the low-discrepancy exploration the Deep Learning Tuning
    Playbook recommends. The n-th trial takes the n-th point, so a resumed search continues the
    same sequence; points that map onto already-tried values are skipped.
    """

    def __init__(self, objective=None, max_trials=10, seed=None, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials, seed=seed, **kwargs)
        self._next_index = 0
        self._sequence = None  # the sequence drawn so far (a seeded Sobol is deterministic)

    def _points(self, dimensions: int, index: int):
        """The sequence up to at least `index` (drawn again, longer, only when it must grow)."""
        if (self._sequence is None or index >= len(self._sequence)
                or self._sequence.shape[1] != max(dimensions, 1)):
            from scipy.stats import qmc

            count = 1 << max(int(index).bit_length(), 4)  # a power of two keeps Sobol balanced
            self._sequence = qmc.Sobol(d=max(dimensions, 1), scramble=True,
                                       seed=self.seed).random(count)
        return self._sequence

    def populate_space(self, trial_id):
        if self.deadline is not None and self.trials and time.monotonic() > self.deadline:
            return {"status": STOPPED, "values": None}
        enqueued = self.next_enqueued()
        if enqueued is not None:
            return {"status": RUNNING, "values": enqueued}
        space_ = self.hyperparameters.space
        searched = [hp for hp in space_ if not internals.is_fixed(hp)]
        fixed = {hp.name: hp.value for hp in space_ if internals.is_fixed(hp)}
        for _ in range(1000):
            index = self._next_index
            self._next_index += 1
            point = self._points(len(searched), index)[index]
            values = dict(fixed)
            values.update({hp.name: hp.prob_to_value(float(u)) for hp, u in zip(searched, point)})
            if not internals.is_duplicate(self, values):
                return {"status": RUNNING, "values": values}
        return {"status": STOPPED, "values": None}

    def get_state(self):
        state = super().get_state()
        state["next_index"] = self._next_index
        return state

    def set_state(self, state):
        super().set_state(state)
        self._next_index = state.get("next_index", 0)


def make_oracle(tuner_cfg, budget_cfg, seed: int, *, pruner=None, enqueue=(),
                deadline: float | None = None):
    """The oracle named by `tuner.name`, built complete: seeded with `seed` (0 included), with
    its pruner, warm starts and deadline; a failed trial never aborts the search."""
    entry = tuners.TUNERS[str(tuner_cfg.name)]
    oracle_class = tuners.resolve(entry.oracle)
    objective = COST_OBJECTIVE if tuner_cfg.get("cost") else OBJECTIVE
    return oracle_class(objective=objective, seed=seed, pruner=pruner, enqueue=enqueue,
                        deadline=deadline,
                        max_consecutive_failed_trials=_failure_budget(entry, budget_cfg),
                        **entry.kwargs(tuner_cfg, budget_cfg))


def _failure_budget(entry, budget_cfg) -> int:
    # Never stop a search on failures (each is recorded with its reason): one more than it has.
    return (budget_cfg.max_trials if entry.counts_trials else 10_000) + 1
