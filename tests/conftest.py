"""Shared fixtures: an isolated launch directory, the real-MNIST location, CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST not found at {SHARED_MNIST} (the ../shared folder is absent in a "
    "user's fresh clone)",
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A fresh launch directory: its own mlflow.db and tuner_state, no inherited tracking URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGGSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def cli_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def run_cli(args: list[str], cwd: Path, timeout: int = 300, module: str = "vggsweep"):
    """Runs `python -m <module> args` in `cwd`; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(cwd),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow SQLite store for a module's in-process jobs (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The launch directory of a test: cwd, VGGSWEEP_HOME, no inherited tracking URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGGSWEEP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store):
    """A random-search job of 3 trials that logged its best model (in its own launch dir)."""
    home = tmp_path_factory.mktemp("finished")
    patch = pytest.MonkeyPatch()
    patch.chdir(home)
    patch.setenv("VGGSWEEP_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        experiment = "finished"
        cfg = helpers.compose(home, store, experiment, "budget.max_trials=3")
        from vggsweep.job import task

        result = task.run_job(cfg)
    finally:
        patch.undo()
    helpers.assert_completed_job(result, store, experiment, 3)
    return {"cfg": cfg, "result": result, "project": helpers.project_dir(cfg),
            "experiment": experiment}
