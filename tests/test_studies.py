"""Every study in sweeps/ composes, validates, and runs under `budget=smoke` as a real command.

The runs shrink each study (1 trial per job, 64 training and 64 test images, VGG at 1/16 width
where every job of the study is a VGG) but keep what makes it the study: its model, tuner,
experiment and its own sweep of jobs. `family_x_activation` pins `activation=relu`: its VGG16 jobs
cannot be narrowed (the cnn jobs of the same sweep have no width_multiplier), so the study runs
its model sweep (vgg16, cnn) once instead of three times. The studies of several jobs skip the
logging of each job's best model (`tracking.log_model=false`); the single-job ones keep it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from vggsweep import config
from vggsweep.config import space
from vggsweep.job import checks
from vggsweep.tracking import store

STUDIES = sorted(p.stem for p in config.SWEEPS_DIR.glob("*.yaml"))
TINY = ["budget=smoke", "data=digits", "budget.max_trials=1", "data.train_samples=64",
        "data.test_samples=64"]
NARROW_VGG = "model.width_multiplier=0.0625"

#: Per study: extra overrides of the smoke run, and the jobs it must run as {tag: values}.
NO_MODEL = "tracking.log_model=false"
RUNS = {
    "activations": ([NO_MODEL], {"activation": {"relu", "sigmoid", "tanh"}, "model": {"cnn"}}),
    "family_x_activation": (["activation=relu", NO_MODEL],
                            {"model": {"vgg16", "cnn"}, "activation": {"relu"}}),
    "grid64": ([], {"model": {"cnn"}, "tuner": {"grid"}, "activation": {"relu"}}),
    "mlp": ([], {"model": {"mlp"}, "activation": {"relu"}}),
    "temperature": ([NO_MODEL], {"model": {"cnn"}, "activation": {"relu"}}),
    "vgg_depth": ([NARROW_VGG, NO_MODEL], {"model": {"vgg11", "vgg13", "vgg16", "vgg19"}}),
}
JOBS = {"activations": 3, "family_x_activation": 2, "grid64": 1, "mlp": 1, "temperature": 4,
        "vgg_depth": 4}


def sweep_combinations(name: str) -> list[list[str]]:
    """The per-job overrides of a study's own sweep (hydra.sweeper.params)."""
    cfg = config.compose([f"study={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    if not params:
        return [[]]
    return config.expand_sweep([f"{k}={v}" for k, v in params.items()])


def test_every_study_is_covered():
    assert STUDIES, "no study found in sweeps/"
    assert set(RUNS) == set(JOBS) == set(STUDIES)


# --------------------------------------------------------------------------------------------
# composition


@pytest.mark.parametrize("name", STUDIES)
def test_study_composes_and_validates(name):
    cfg = config.compose([f"study={name}"])
    checks.validate(cfg)
    assert cfg.experiment == name
    for combination in sweep_combinations(name):
        job = config.compose([f"study={name}", *combination])
        checks.validate(job)
        assert job.experiment == name


@pytest.mark.parametrize("name", STUDIES)
def test_command_line_budget_wins_over_the_study(name):
    cfg = config.compose([f"study={name}", "budget=smoke"])
    smoke = OmegaConf.load(config.CONF_DIR / "budget" / "smoke.yaml")
    assert cfg.budget == smoke.budget
    assert cfg.data.train_samples == smoke.data.train_samples


def test_grid64_is_exactly_the_64_point_grid():
    cfg = config.compose(["study=grid64"])
    checks.validate(cfg)
    assert cfg.tuner.name == "grid"
    assert cfg.activation == "relu"
    assert not space.is_spec(cfg.activation)
    assert space.grid_size(cfg.model) == 64
    optimizer = {k: v for k, v in cfg.optimizer.items() if k != "name"}
    assert space.grid_size(optimizer) == 1  # nothing else is searched
    assert cfg.budget.max_trials >= 64  # the s3 budget covers the whole grid


def test_sweeping_studies_expand_to_their_jobs():
    for name, count in JOBS.items():
        assert len(sweep_combinations(name)) == (
            6 if name == "family_x_activation" else count), name


# --------------------------------------------------------------------------------------------
# real runs


def _run_study(home: Path, name: str) -> subprocess.CompletedProcess:
    extra, _ = RUNS[name]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "vggsweep", f"study={name}", *TINY, *extra],
                          cwd=home, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
@pytest.mark.parametrize("name", STUDIES)
def test_study_runs_under_smoke_budget(name, tmp_path):
    import mlflow

    proc = _run_study(tmp_path, name)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"the study did not record experiment {name!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    parents = [r for r in runs if r.data.tags.get(store.ROLE) == "job"]
    trials = [r for r in runs if r.data.tags.get(store.ROLE) == "trial"]
    assert len(parents) == JOBS[name]
    assert len({p.data.tags[store.JOB_KEY] for p in parents}) == JOBS[name]
    for parent in parents:
        assert parent.info.status == "FINISHED"
        mine = [t for t in trials if t.data.tags.get(store.PARENT) == parent.info.run_id]
        assert [t.info.status for t in mine] == ["FINISHED"]
        assert mine[0].data.metrics["test_accuracy"] >= 0
        assert mine[0].data.params["train_size"] == "64"
    _, expected_tags = RUNS[name]
    for tag, values in expected_tags.items():
        assert {p.data.tags.get(tag) for p in parents} == values, tag
    _check_study_specifics(name, trials)

    # the sweep's leaderboard lists every trial
    board = [ln.split(": ", 1)[1] for ln in proc.stdout.splitlines()
             if ln.startswith("leaderboard: ")]
    assert len(board) == 1, proc.stdout[-2000:]
    table = pd.read_csv(board[0])
    assert set(table["run_id"]) == {t.info.run_id for t in trials}


def _check_study_specifics(name: str, trials: list) -> None:
    params = [t.data.params for t in trials]
    if name == "temperature":
        assert sorted(float(p["temperature"]) for p in params) == [0.6, 1.0, 2.0, 5.0]
    elif name == "grid64":
        (p,) = params
        assert p["conv_blocks"] in ("2", "3") and p["filters"] in ("32", "64")
        assert p["dropout"] == "0.0" and p["batch_norm"] == "False"
        assert float(p["learning_rate"]) == 1.0e-3
    elif name == "mlp":
        (p,) = params
        assert p["ema"] == "True" and p["staircase"] == "True"
        assert p["decay_steps"] == "1000"
    elif name == "vgg_depth":
        assert {p["width_multiplier"] for p in params} == {"0.0625"}
        stages = {tuple(int(n) for n in re.findall(r"\d+", p["stages"])) for p in params}
        assert stages == {(1, 1, 2, 2, 2), (2, 2, 2, 2, 2), (2, 2, 3, 3, 3), (2, 2, 4, 4, 4)}
