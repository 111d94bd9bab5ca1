"""The job plan (vggsweep.job.plan): saved tuner state that is truncated or corrupt stops the job
with one line naming the file before any run opens; `tuner.fresh=true` starts over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    TINY,
    compose,
    experiment_runs,
    project_dir,
)

from vggsweep import config
from vggsweep.errors import ConfigError, StateError
from vggsweep.job import plan, task
from vggsweep.tracking import store as vstore


def _copy_project(finished, cfg) -> Path:
    target = project_dir(cfg)
    shutil.copytree(finished["project"], target)
    return target


def _truncate(path: Path) -> None:
    text = path.read_text()
    assert len(text) > 10
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("state_file", ["trial_1/trial.json", "oracle.json"])
def test_corrupt_state_stops_the_job_with_one_line_naming_the_file(state_file, finished, home,
                                                                    store):
    experiment = finished["experiment"]
    cfg = compose(home, store, experiment, "budget.max_trials=3")
    project = _copy_project(finished, cfg)
    broken = project / state_file
    _truncate(broken)

    with pytest.raises(ConfigError) as caught:
        task.run_job(cfg)

    assert isinstance(caught.value, StateError)
    message = str(caught.value)
    assert "\n" not in message
    assert str(broken) in message
    assert "tuner.fresh=true" in message
    assert not [r for r in experiment_runs(store, experiment) if r.info.status == "RUNNING"]


def test_fresh_recovers_from_a_corrupt_state(finished, home, store):
    experiment = finished["experiment"]
    cfg = compose(home, store, experiment, "budget.max_trials=3")
    project = _copy_project(finished, cfg)
    _truncate(project / "oracle.json")
    with pytest.raises(StateError):
        task.run_job(cfg)

    fresh = compose(home, store, experiment, "budget.max_trials=1", "tuner.fresh=true",
                    "tracking.log_model=false")
    assert project_dir(fresh) == project  # fresh and max_trials do not re-key the job
    result = task.run_job(fresh)
    assert result.status == "completed" and result.completed == 1
    json.loads((project / "oracle.json").read_text())
    assert sorted(p.name for p in project.glob("trial_*")) == ["trial_0"]


@pytest.mark.subprocess
def test_corrupt_state_via_cli_exits_2_with_one_line(home):
    overrides = [*TINY, "experiment=corrupt-cli"]
    cfg = config.compose(overrides)  # the job's config, as the CLI composes it
    project = Path(home / "tuner_state") / (
        f"{cfg.experiment}-{plan.job_key(cfg, vstore.resolve_uri(None))}")
    project.mkdir(parents=True)
    broken = project / "oracle.json"
    broken.write_text('{"ongoing_trials": {}, "hyperparam')
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1")

    proc = subprocess.run([sys.executable, "-m", "vggsweep", *overrides], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300)

    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if not _library_noise(line)]
    assert len(ours) == 1, ours
    assert ours[0].startswith("error: ") and str(broken) in ours[0]
    assert "trial 1/" not in proc.stdout
    assert broken.read_text() == '{"ongoing_trials": {}, "hyperparam'  # left for the user


def _library_noise(line: str) -> bool:
    """TensorFlow/absl start-up logging and MLflow's store-creation notes (not vggsweep's)."""
    return (not line.strip() or line[:5] in ("I0000", "W0000", "E0000")
            or line.startswith(("WARNING: All log messages before absl", "To enable the following"))
            or " INFO mlflow." in line)
