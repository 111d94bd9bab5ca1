"""The oracles (vggsweep.search.oracles): quasi-random search, seeds, warm starts first for
every tuner, the grid's start, and the job time limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    assert_completed_job,
    compose,
)

from vggsweep import config
from vggsweep.config import space
from vggsweep.job import checks, task
from vggsweep.search import internals, oracles


def _space():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Int("units", 16, 512, step=16)
    hp.Float("rate", 1e-4, 1e-2, sampling="log")
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    hp.Choice("act", ["relu", "tanh", "elu"])
    hp.Fixed("width", 3)
    return hp


def _quasi_oracle(directory: Path, seed: int = 7, max_trials: int = 50):
    oracle = oracles.QuasiRandomOracle(objective=oracles.OBJECTIVE, max_trials=max_trials,
                                      seed=seed)
    internals.set_project_dir(oracle, str(directory), "quasi")
    oracle.update_space(_space())
    return oracle


def _run_trials(oracle, count: int) -> list[dict]:
    """Creates `count` trials and ends them COMPLETED, as a tuner would (keras-tuner's
    `on_trial_end` saves the oracle again once the trial is no longer ongoing); returns their
    values."""
    values = []
    for _ in range(count):
        trial = oracle.create_trial("tuner0")
        assert trial.status == internals.RUNNING
        values.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = internals.COMPLETED
        oracle.end_trial(trial)
        oracle.save()
    return values


def test_quasi_random_points_are_distinct_and_in_range(tmp_path):
    points = _run_trials(_quasi_oracle(tmp_path), 20)
    keys = [tuple(sorted(p.items())) for p in points]
    assert len(set(keys)) == len(keys)
    for p in points:
        assert 16 <= p["units"] <= 512 and p["units"] % 16 == 0
        assert 1e-4 <= p["rate"] <= 1e-2
        assert 0.0 <= p["dropout"] <= 0.5 + 1e-9
        assert p["act"] in ("relu", "tanh", "elu")
        assert p["width"] == 3
    # low discrepancy: 20 points cover every choice and both halves of each range
    assert {p["act"] for p in points} == {"relu", "tanh", "elu"}
    assert min(p["units"] for p in points) < 264 < max(p["units"] for p in points)
    assert min(p["rate"] for p in points) < 1e-3 < max(p["rate"] for p in points)


def test_quasi_random_continues_its_sequence_after_reload(tmp_path):
    reference = _run_trials(_quasi_oracle(tmp_path / "reference"), 8)

    first = _quasi_oracle(tmp_path / "resumed")
    before = _run_trials(first, 4)
    state = json.loads((tmp_path / "resumed" / "quasi" / "oracle.json").read_text())
    assert state["next_index"] == first._next_index >= 4

    again = _quasi_oracle(tmp_path / "resumed")
    again.reload()
    assert again._next_index == state["next_index"]
    after = _run_trials(again, 4)
    assert before + after == reference
    assert sorted(again.trials) == sorted(f"{i:02d}" for i in range(8))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["random", "quasi_random"])
def test_a_seed_proposes_the_same_points_every_time(name, seed, tmp_path):
    """`seed: 0` (the default) seeds the tuner like any other seed: two fresh searches with the
    same seed propose the same hyperparameters."""
    from omegaconf import OmegaConf

    tuner_cfg = OmegaConf.create({"name": name})
    budget = OmegaConf.create({"max_trials": 5})
    proposals = []
    for attempt in range(2):
        oracle = oracles.make_oracle(tuner_cfg, budget, seed=seed)
        internals.set_project_dir(oracle, str(tmp_path / str(attempt)), "p")
        oracle.update_space(_space())
        proposals.append(_run_trials(oracle, 3))
    assert proposals[0] == proposals[1]


@pytest.mark.parametrize("name", ["random", "quasi_random", "bayesian"])
def test_enqueued_points_come_first(name, tmp_path):
    import keras_tuner as kt
    from omegaconf import OmegaConf

    hp = kt.HyperParameters()
    hp.Int("units", 16, 512, step=16)
    hp.Choice("act", ["relu", "tanh"])
    tuner_cfg = OmegaConf.create({"name": name, "num_initial_points": 2, "factor": 3,
                                  "hyperband_iterations": 1})
    points = [{"units": 496, "act": "tanh"}, {"units": 32}]
    oracle = oracles.make_oracle(tuner_cfg, OmegaConf.create({"max_trials": 5, "epochs": 2}),
                                 seed=0, enqueue=points)
    internals.set_project_dir(oracle, str(tmp_path), "p")
    oracle.update_space(hp)
    first, second = (oracle.create_trial(f"tuner{i}") for i in range(2))
    assert first.hyperparameters.values == {"units": 496, "act": "tanh"}
    assert second.hyperparameters.values == {"units": 32, "act": "relu"}  # the rest: defaults


def test_a_grid_starts_from_the_first_enqueued_point():
    spec = {"filters": {"choice": [16, 32, 64]}, "dropout": 0.2}
    started = space.with_defaults(spec, {"filters": 64})
    assert started == {"filters": {"choice": [16, 32, 64], "default": 64}, "dropout": 0.2}


def test_studies_warm_start_from_their_reference_points():
    for name in ("activations", "temperature", "mlp"):
        cfg = config.compose([f"study={name}"])
        checks.validate(cfg)
        assert cfg.tuner.enqueue, name
    [s3] = config.compose(["study=activations"]).tuner.enqueue
    assert dict(s3) == {"conv_blocks": 2, "filters": 32, "kernel_size": 3, "pool_size": 2,
                        "dense_layers": 1, "dense_units": 512, "dropout": 0.0,
                        "batch_norm": False, "learning_rate": 1.0e-3}


def test_time_limit_ends_the_job_normally_after_one_trial(home, store):
    experiment = "time-limit"
    cfg = compose(home, store, experiment, "budget.max_trials=3", "budget.time_limit_s=0.001",
                  "tracking.log_model=false")
    result = task.run_job(cfg)
    assert_completed_job(result, store, experiment, 1)


# --- The reference first: every search starts from the space's default point ---------------


@pytest.mark.parametrize("name", ["grid", "random", "quasi_random", "bayesian", "hyperband",
                                  "tpe"])
def test_every_tuner_starts_from_the_reference_and_names_it(name, home, store, capsys):
    """`python -m vggsweep model=cnn data=digits budget=smoke` with each tuner: its first trial is
    the space's default point, tagged as the reference, and the job line compares the best
    with it; the best is never below it."""
    experiment = f"reference-{name}"
    cfg = config.compose(["model=cnn", "data=digits", "budget=smoke", f"tuner={name}",
                          "verbose=0", f"tracking.uri={store}", f"experiment={experiment}",
                          f"tuner.directory={home / 'tuner_state'}", "tracking.log_model=false"])
    assert list(space.plain(cfg.tuner.enqueue)) == [{}]  # the default: the space's defaults
    result = task.run_job(cfg)
    runs = assert_completed_job(result, store, experiment)
    first = next(r for r in runs if int(r.data.tags["vggsweep.trial_id"]) == 0)
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    searched = {k for section in (cfg.model, cfg.optimizer) for k, v in section.items()
                if space.is_spec(v)} | {"activation"}
    defaults = {**model_kwargs, **optimizer_kwargs}
    assert {k: first.data.params[k] for k in searched} == {k: str(defaults[k])
                                                           for k in searched}
    assert [r.data.tags.get("vggsweep.reference") for r in runs].count("true") == 1
    assert first.data.tags.get("vggsweep.reference") == "true"
    reference_val = first.data.metrics["val_accuracy_kept"]
    assert result.best_val_accuracy >= reference_val
    parent = helpers_client(store).get_run(result.parent_run_id)
    assert parent.data.metrics["reference_val_accuracy"] == pytest.approx(reference_val)
    out = capsys.readouterr().out
    assert "reference trial 1" in out, out


def helpers_client(uri):
    from helpers import client

    return client(uri)


def _searched_space():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Choice("units", [16, 32, 64], default=32)
    hp.Choice("act", ["relu", "tanh"])
    hp.Fixed("width", 3)
    return hp


def _oracle(name: str, directory: Path, enqueue=({},), **tuner):
    from omegaconf import OmegaConf

    tuner_cfg = OmegaConf.create({"name": name, "num_initial_points": None, "factor": 3,
                                  "hyperband_iterations": 1, **tuner})
    oracle = oracles.make_oracle(tuner_cfg, OmegaConf.create({"max_trials": 6, "epochs": 9}),
                                 seed=3, enqueue=enqueue)
    internals.set_project_dir(oracle, str(directory), "p")
    oracle.update_space(_searched_space())
    return oracle


@pytest.mark.parametrize("name", ["random", "quasi_random", "bayesian", "hyperband", "tpe"])
def test_the_first_trial_is_the_reference_unless_enqueue_is_empty(name, tmp_path):
    oracle = _oracle(name, tmp_path / "on")
    first = oracle.create_trial("tuner0")
    values = {k: v for k, v in first.hyperparameters.values.items() if not k.startswith("tuner/")}
    assert values == {"units": 32, "act": "relu", "width": 3}
    assert oracle.reference_trial_id == first.trial_id
    assert oracles.is_reference(first.trial_id, True)
    if name == "hyperband":  # trained to the full budget, outside the brackets
        assert first.hyperparameters.values["tuner/epochs"] == 9
        assert first.hyperparameters.values["tuner/initial_epoch"] == 0
    assert oracle.get_state()["reference_trial_id"] == first.trial_id

    off = _oracle(name, tmp_path / "off", enqueue=())
    off.create_trial("tuner0")
    assert off.reference_trial_id is None and off.get_state()["reference_trial_id"] is None


def _run_out(oracle, score, step=None) -> None:
    """Runs the oracle's search to its end, each trial scored `score(its values)` at once."""
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status != internals.RUNNING:
            return
        metrics = {"val_accuracy": score(trial.hyperparameters.values)}
        oracle.update_trial(trial.trial_id, metrics, **({} if step is None else {"step": step}))
        trial.status = internals.COMPLETED
        oracle.end_trial(trial)


def test_hyperband_never_draws_the_reference_again(tmp_path):
    oracle = _oracle("hyperband", tmp_path)
    seen = []

    def score(values):
        if "tuner/trial_id" not in values:  # a new point (not a promotion)
            seen.append((values["units"], values["act"]))
        return 0.5 + 0.01 * len(seen)

    _run_out(oracle, score)
    assert seen[0] == (32, "relu") and len(set(seen)) == len(seen)


def test_bayesian_starts_with_three_random_points_per_searched_hyperparameter(tmp_path):
    oracle = _oracle("bayesian", tmp_path, enqueue=())
    oracle.create_trial("tuner0")
    assert oracle.num_initial_points == 6  # 2 searched (the fixed one does not count)


def test_tpe_learns_from_the_trials_and_resumes_from_them(tmp_path):
    """The Optuna-backed search is told every trial (pruned ones as pruned), never trains a
    point twice, ends when its sampler only repeats tried points, and a reloaded oracle rebuilds
    its study from the trials it saved."""
    oracle = _oracle("tpe", tmp_path)
    tried = []

    def score(values):
        tried.append((values["units"], values["act"]))
        return values["units"] / 100 + (values["act"] == "tanh") * 0.1

    _run_out(oracle, score, step=0)
    assert tried[0] == (32, "relu") and len(set(tried)) == len(tried) == 6  # all 6, once each
    study = oracle._optuna()
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) >= 6
    assert study.best_value == pytest.approx(0.74)

    again = _oracle("tpe", tmp_path)
    again.reload()
    assert len(again._optuna().trials) == 6 and again._optuna().best_value == pytest.approx(0.74)
