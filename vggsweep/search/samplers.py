"""Searches driven by an Optuna sampler (`tuner=tpe`): keras-tuner runs the trials as it runs
every other search (warm starts, pruning, workers, resume: `SurvivingOracleMixin`), and the
sampler, told every trial's curve and outcome through Optuna's ask-and-tell interface, proposes
the points. Optuna is imported only here, and only when a job builds such an oracle.

A point the sampler proposes again is not trained again: a completed one is told its earlier
score (Optuna's recipe for duplicates), any other one is told FAIL (it was pruned, failed or is
still training); after `max_repeats` such proposals in a row the sampler has nothing new to try
and the search ends, as keras-tuner's own searches end when their space is exhausted.
"""

from __future__ import annotations

import time

import keras_tuner as kt

from vggsweep.search import internals
from vggsweep.search.internals import RUNNING, STOPPED
from vggsweep.search.oracles import SurvivingOracleMixin


def distributions(hyperparameters) -> dict:
    """Optuna's distributions for the searched keras-tuner hyperparameters, name -> one of them:
    a choice as a categorical (what `suggest_categorical` gives an Optuna user), a range as a
    numeric range with its step and scale."""
    from optuna import distributions as found

    result = {}
    for hp in hyperparameters.space:
        kind, config = type(hp).__name__, hp.get_config()
        if internals.is_fixed(hp):
            continue
        if kind == "Choice":
            result[hp.name] = found.CategoricalDistribution(list(config["values"]))
        elif kind == "Boolean":
            result[hp.name] = found.CategoricalDistribution([False, True])
        elif kind in ("Int", "Float"):
            log = config.get("sampling") == "log"
            step = None if log else config.get("step")
            make = found.IntDistribution if kind == "Int" else found.FloatDistribution
            result[hp.name] = make(config["min_value"], config["max_value"], log=log,
                                   **({"step": step} if step else {}))
        else:
            raise ValueError(f"{hp.name}: an Optuna sampler cannot search a {kind}")
    return result


class SamplerOracle(SurvivingOracleMixin, kt.Oracle):
    """keras-tuner's oracle interface over an Optuna sampler (TPE by default)."""

    def __init__(self, objective=None, max_trials=10, seed=None, sampler: str = "tpe",
                 max_repeats: int = 20, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials, seed=seed, **kwargs)
        self.sampler = sampler
        self.max_repeats = max_repeats
        self._study = None
        self._asked = {}  # keras-tuner trial id -> the Optuna trial proposing its point
        self._pruned: set[str] = set()
        self._spaces = (None, {})  # (the space's size, its distributions): computed once

    def _distributions(self) -> dict:
        size = len(self.hyperparameters.space)
        if self._spaces[0] != size:
            self._spaces = (size, distributions(self.hyperparameters))
        return self._spaces[1]

    def _optuna(self):
        """The Optuna study, told every trial that ended so far (rebuilt after a reload)."""
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            samplers = {"tpe": optuna.samplers.TPESampler}
            direction = "maximize" if self.objective.direction == "max" else "minimize"
            self._study = optuna.create_study(
                study_name="vggsweep", direction=direction,
                sampler=samplers[self.sampler](seed=self.seed))
            for trial_id in self.end_order:
                self._study.add_trial(self._frozen(self.trials[trial_id]))
        return self._study

    def _state(self, trial):
        from optuna.trial import TrialState

        if trial.trial_id in self._pruned:
            return TrialState.PRUNED
        if trial.status == internals.COMPLETED and trial.score is not None:
            return TrialState.COMPLETE
        return TrialState.FAIL

    def _frozen(self, trial):
        import optuna

        spaces = self._distributions()
        values = trial.hyperparameters.values
        state = self._state(trial)
        curve = {}
        name = self.objective.name
        if trial.metrics.exists(name):
            curve = {int(o.step): float(o.mean()) for o in trial.metrics.get_history(name)}
        return optuna.trial.create_trial(
            params={k: values[k] for k in spaces}, distributions=spaces, state=state,
            value=trial.score if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values=curve)

    def populate_space(self, trial_id):
        from optuna.trial import TrialState

        if self.deadline is not None and self.trials and time.monotonic() > self.deadline:
            return {"status": STOPPED, "values": None}
        study = self._optuna()
        spaces = self._distributions()
        fixed = {hp.name: hp.value for hp in self.hyperparameters.space if internals.is_fixed(hp)}
        enqueued = self.next_enqueued()
        if enqueued is not None:  # the sampler proposes it, and so learns it
            study.enqueue_trial({k: enqueued[k] for k in spaces})
        for _ in range(self.max_repeats):
            asked = study.ask(spaces)
            values = {**fixed, **asked.params}
            earlier = self._tried(values) if enqueued is None else None
            if earlier is None:
                self._asked[trial_id] = asked
                return {"status": RUNNING, "values": values}
            if self._state(earlier) == TrialState.COMPLETE:
                study.tell(asked, earlier.score)
            else:
                study.tell(asked, state=TrialState.FAIL)
        return {"status": STOPPED, "values": None}

    def _tried(self, values):
        """The trial that tried `values` already, if one did."""
        if not internals.is_duplicate(self, values):
            return None
        searched = self._distributions()
        for trial in self.trials.values():
            if all(trial.hyperparameters.values.get(k) == values[k] for k in searched):
                return trial
        return None

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        asked = self._asked.get(trial_id)
        if asked is not None and self.objective.name in metrics:
            asked.report(float(metrics[self.objective.name]), int(step))
        if trial.status == STOPPED:
            self._pruned.add(trial_id)
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status not in (internals.COMPLETED, internals.FAILED):
            return  # sent for a retry: told when it ends
        asked = self._asked.pop(trial.trial_id, None)
        if asked is None:  # proposed before a reload: the study learns it as a finished trial
            self._optuna().add_trial(self._frozen(ended))
            return
        state = self._state(ended)
        if state.name == "COMPLETE":
            self._optuna().tell(asked, ended.score)
        else:
            self._optuna().tell(asked, state=state)

    def get_state(self):
        state = super().get_state()
        state["pruned"] = sorted(self._pruned)
        return state

    def set_state(self, state):
        super().set_state(state)
        self._pruned = set(state.get("pruned", []))
        self._study = None  # rebuilt from the trials on the next proposal

