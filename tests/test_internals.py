"""The private APIs vggsweep reaches behind its doors still exist in the installed libraries: an
upgrade that moves one fails here, by name, not in the middle of a sweep."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vggsweep"
DOORS = {"vggsweep/search/internals.py", "vggsweep/tracking/internals.py",
         "vggsweep/runtime/internals.py", "vggsweep/job/internals.py"}


def test_every_keras_tuner_internal_still_exists(tmp_path):
    import keras_tuner as kt

    from vggsweep.search import internals

    missing = [f"{owner.__name__}.{name}" for owner, name in internals.NAMES
               if not hasattr(owner, name)]
    assert not missing, f"keras-tuner {kt.__version__} lacks {missing}"
    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1, seed=1)
    assert all(hasattr(oracle, name) for name in internals.ORACLE_ATTRIBUTES)
    internals.set_seed(oracle, 0)
    assert oracle.seed == 0 and internals.retry_queue(oracle) == []
    internals.set_project_dir(oracle, str(tmp_path), "p")
    assert internals.oracle_file(oracle).endswith("oracle.json")
    tracker = internals.metrics_tracker({"val_accuracy": "max"})
    tracker.update("val_accuracy", 0.5, step=0)
    assert tracker.get_best_value("val_accuracy") == 0.5
    for status in ("RUNNING", "STOPPED", "IDLE", "COMPLETED", "FAILED"):
        assert getattr(internals, status) == getattr(internals.TrialStatus, status)


@pytest.mark.parametrize("door", ["vggsweep.tracking.internals", "vggsweep.runtime.internals",
                                  "vggsweep.job.internals"])
def test_every_mlflow_submitit_and_stdlib_internal_still_exists(door):
    module = importlib.import_module(door)
    missing = [f"{where}.{name}" for where, name in module.NAMES
               if not hasattr(importlib.import_module(where), name)]
    assert not missing, missing


def test_no_module_reaches_keras_tuner_internals_but_the_door():
    """`keras_tuner.src` and keras-tuner's private attributes appear in the doors only."""
    offenders = []
    private = re.compile(r"keras_tuner\.src|\._(retry_queue|seed_state|duplicate|get_oracle_fname|"
                         r"get_trial_dir|get_tuner_fname|is_worker|set_project_dir|"
                         r"populate_initial_space|random_values|save_trial)\b")
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if relative in DOORS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
