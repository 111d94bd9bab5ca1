"""Pruning (vggsweep.search.pruning): the median/percentile rule and asynchronous successive
halving, pruned trials recorded and ranked after finished ones, the default search, and the
cost-aware objective.
"""

from __future__ import annotations

import math

import pytest
from helpers import (
    SMALL_DATA,
    TINY,
)

from vggsweep import config
from vggsweep.config import space
from vggsweep.job import task
from vggsweep.search import internals, pruning, tuners
from vggsweep.tracking import results
from vggsweep.tracking import store as vstore


class FakeTrial:
    """A keras-tuner trial as the pruners read it: an id and per-epoch validation accuracy."""

    def __init__(self, trial_id: str, curve: list[float]):
        self.trial_id = trial_id
        self.metrics = internals.metrics_tracker({"val_accuracy": "max"})
        for epoch, value in enumerate(curve):
            self.metrics.update("val_accuracy", value, step=epoch)


def test_median_pruner_stops_a_trial_behind_the_others_at_the_same_epoch():
    others = [FakeTrial(str(i), [0.5, 0.7, 0.8]) for i in range(3)]
    behind, ahead = FakeTrial("9", [0.3, 0.4]), FakeTrial("8", [0.6, 0.75])
    rule = pruning.PercentilePruner(percentile=50, warmup_epochs=1, min_trials=3)
    assert not rule.should_stop(behind, [*others, behind], epoch=0)  # warm-up
    assert rule.should_stop(behind, [*others, behind], epoch=1)
    assert not rule.should_stop(ahead, [*others, ahead], epoch=1)
    assert not rule.should_stop(behind, [others[0], behind], epoch=1)  # too few to compare


def test_successive_halving_keeps_the_top_third_at_each_rung():
    rule = pruning.SuccessiveHalvingPruner(reduction_factor=3, min_epochs=1, min_trials=1)
    assert [e for e in range(9) if rule.is_rung(e)] == [0, 2, 8]  # epochs 1, 3, 9
    field = [FakeTrial(str(i), [v]) for i, v in enumerate([0.9, 0.8, 0.7, 0.6, 0.5])]
    assert not rule.should_stop(field[0], field, epoch=0)
    assert rule.should_stop(field[1], field, epoch=0)  # 5 // 3 = 1 goes on: only the best
    assert not rule.should_stop(field[0], field, epoch=1)  # not a rung


def test_pruned_trials_are_recorded_and_ranked_after_finished_ones(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGGSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.compose([*TINY, *SMALL_DATA, "tracking.log_model=false",
                          "tuner=quasi_random", "budget.max_trials=16", "budget.epochs=2",
                          "tuner.pruner=median", "tuner.pruner_warmup_epochs=0",
                          "model.hidden_units={choice:[8,16,32]}", "experiment=pruned"])
    result = task.run_job(cfg)
    assert result.status == "completed" and result.completed == 16
    uri = vstore.resolve_uri(None)
    trials = results.load_trials(uri, "pruned")
    pruned = trials[trials["status"] == "PRUNED"]
    finished = trials[trials["status"] == "FINISHED"]
    assert len(pruned) >= 1 and len(finished) >= 3
    assert trials["rank"].notna().sum() == len(finished) and pruned["rank"].isna().all()
    assert list(trials["status"][: len(finished)]) == ["FINISHED"] * len(finished)
    assert (pruned["epochs_run"] < 2).all() and (pruned["epochs_saved"] >= 1).all()
    parent = vstore.client(uri).get_run(result.parent_run_id)
    assert parent.data.metrics["trials_pruned"] == len(pruned)
    assert parent.data.metrics["epochs_saved"] == pruned["epochs_saved"].sum()
    assert (f"16 trials: {16 - len(pruned)} finished, {len(pruned)} pruned, 0 failed"
            in capsys.readouterr().out)
    assert not [r for r in vstore.client(uri).search_runs(
        [parent.info.experiment_id]) if r.info.status == "RUNNING"]


def test_the_default_search_is_the_replays_best_tpe_with_asha():
    tuner = config.compose([]).tuner
    assert (str(tuner.name), str(tuner.pruner), tuner.pruner_min_trials,
            tuner.pruner_warmup_epochs) == ("tpe", "asha", 1, 2)
    assert space.plain(tuner.enqueue) == [{}]  # from the reference
    grid = config.compose(["study=grid64"]).tuner  # S3's grid stays exhaustive
    assert (str(grid.name), str(grid.pruner)) == ("grid", "off")


def test_cost_aware_search_records_its_objective(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGGSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.compose([*TINY, *SMALL_DATA, "tracking.log_model=false",
                          "tuner=bayesian", "tuner.num_initial_points=1",
                          "tuner.cost=param_count", "model.hidden_units={choice:[8,64]}",
                          "experiment=cost"])
    assert task.run_job(cfg).completed == 2
    trials = results.load_trials(vstore.resolve_uri(None), "cost")
    for _, trial in trials.iterrows():
        expected = trial["val_accuracy"] - 0.02 * math.log10(trial["param_count"])
        assert trial["cost_adjusted_accuracy"] == pytest.approx(expected)
    assert trials["pareto_params"].any()
    assert tuners.TUNERS["bayesian"].counts_trials


class StopEveryone:
    """A pruner that stops every trial at every epoch."""

    def should_stop(self, trial, trials, epoch: int) -> bool:
        return True


@pytest.mark.parametrize("pruner", [StopEveryone(), pruning.SuccessiveHalvingPruner(3, 1, 1)])
def test_a_pruner_never_stops_the_reference_trial(pruner, tmp_path):
    """The reference (the first enqueued point) runs to its end whatever the pruner says, even
    when it is the worst trial at a rung; the others are stopped."""
    import keras_tuner as kt

    from vggsweep.search import oracles

    hp = kt.HyperParameters()
    hp.Choice("units", [16, 32, 64])
    from omegaconf import OmegaConf

    oracle = oracles.make_oracle(OmegaConf.create({"name": "random"}),
                                 OmegaConf.create({"max_trials": 3}), seed=1, pruner=pruner,
                                 enqueue=[{}])
    internals.set_project_dir(oracle, str(tmp_path), "p")
    oracle.update_space(hp)
    statuses = {}
    # The reference first (the worst curve of all), then a good trial, then a poor one.
    for curve in ([0.05, 0.06, 0.07], [0.9, 0.95, 0.97], [0.1, 0.2, 0.3]):
        trial = oracle.create_trial("tuner0")
        for epoch, value in enumerate(curve):
            answer = oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=epoch)
            if answer.status == internals.STOPPED:
                break
        statuses[trial.trial_id] = answer.status
        trial.status = internals.COMPLETED
        oracle.end_trial(trial)
    assert oracle.reference_trial_id == "0"
    assert statuses["0"] == internals.RUNNING
    assert statuses["2"] == internals.STOPPED
