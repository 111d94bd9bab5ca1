"""Every input checked: the nasty ones a new user tried give one line and exit 2, fast, and none
hangs or eats memory (each command runs under a timeout); data are checked before any run opens;
any image dataset runs by name and its name shows everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from vggsweep import config
from vggsweep.errors import ConfigError
from vggsweep.job import checks

TIMEOUT_S = 60


def _npz(path: Path, *, n=60, shape=(12, 12), classes=3, **replace) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
              "y_train": np.arange(n) % classes,
              "x_test": rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8),
              "y_test": np.arange(n // 2) % classes}
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _refused(args: list[str], home: Path, module: str = "vggsweep") -> str:
    started = time.perf_counter()
    done = run_cli(args, home, timeout=TIMEOUT_S, module=module)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert time.perf_counter() - started < TIMEOUT_S / 2
    assert not (home / "mlflow.db").exists() and not (home / "tuner_state").exists()
    return lines[0]


@pytest.mark.subprocess
@pytest.mark.parametrize(("args", "said"), [
    (["model=mlp", "model.dropout={min:0.1,max:0.5,step:0}"], "step must be a number > 0"),
    (["model=mlp", "model.dropout={min:0.1,max:0.5,step:-0.1}"], "step must be a number > 0"),
    (["tracking.uri=nonsense://x"], "unknown scheme 'nonsense'"),
    (["optimizer.learning_rate=-1"], "optimizer.learning_rate=-1"),
    (["data=digits", "data.image_size=7"], "data.image_size=7 would shrink"),
])
def test_the_inputs_a_new_user_tried_are_refused_in_one_line(args, said, tmp_path):
    line = _refused(["data=digits", "budget=smoke", *args], tmp_path)
    assert said in line, line


@pytest.mark.subprocess
@pytest.mark.parametrize(("arrays", "said"), [
    ({"y_train": np.r_[-1, np.arange(59) % 3]}, "holds the label -1"),
    ({"x_train": np.zeros((60, 144), np.uint8)}, "images must be (n, H, W)"),
    ({"x_test": np.zeros((30, 10, 10), np.uint8)}, "both splits must have one shape"),
    ({"x_train": np.full((60, 12, 12), 2.0, np.float32)}, "floats outside [0, 1]"),
    ({"y_test": None}, "lacks y_test"),
    ({"y_train": np.zeros(60, int)}, "at least 2 are needed"),
])
def test_bad_data_is_refused_before_any_run(arrays, said, tmp_path):
    path = _npz(tmp_path / "bad.npz", **arrays)
    line = _refused(["data=npz", "data.name=bad", f"data.path={path}", "budget=smoke"], tmp_path)
    assert said in line and str(path) in line, line


@pytest.mark.subprocess
def test_a_truncated_npz_is_named(tmp_path):
    path = _npz(tmp_path / "cut.npz")
    path.write_bytes(path.read_bytes()[:300])
    line = _refused(["data=npz", "data.name=cut", f"data.path={path}"], tmp_path)
    assert f"{path} is not a readable .npz" in line


@pytest.mark.subprocess
def test_confidence_needs_two_seeds(tmp_path):
    line = _refused(["--experiment", "x", "--seeds", "1"], tmp_path,
                    module="vggsweep.confidence")
    assert "--seeds" in line and ">= 2" in line


@pytest.mark.parametrize(("overrides", "said"), [
    (["model.dropout={min:0.0,max:1.0,step:1e-9}"], "at most 10,000"),
    (["optimizer.learning_rate={min:0,max:0.1,sampling:log}"], "log sampling needs min > 0"),
    (["model.filters={min:64,max:16}"], "min 64 is greater than max 16"),
    (["optimizer.beta_1=1.5"], "optimizer.beta_1=1.5 is out of range"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5 is out of range"),
    (["budget.batch_size=0"], "must be a positive integer"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["verbose=5"], "verbose=5 is out of range"),
    (["tuner.workers=0"], "tuner.workers=0 must be a positive integer"),
    (["tuner=hyperband", "tuner.pruner=asha"], "Hyperband already halves"),
    (["tuner.enqueue=[{filtrs:32}]"], "tuner.enqueue[0] sets filtrs"),
    (["tuner.name=grd"], "tuner.name"),
    (["data=npz"], "data.name=NAME"),
])
def test_every_config_value_is_range_checked(overrides, said):
    with pytest.raises(ConfigError) as info:
        checks.validate(config.compose(["model=cnn", *overrides]))
    assert said in str(info.value) and "\n" not in str(info.value)


@pytest.mark.subprocess
def test_any_dataset_by_name_shows_its_name_everywhere(tmp_path):
    """Three-channel 16x16 images of three classes: the models adapt, the name is recorded."""
    rng = np.random.default_rng(1)
    labels = np.arange(240) % 3
    images = (rng.random((240, 16, 16, 3)) * 0.3 + labels[:, None, None, None] * 0.3)
    path = tmp_path / "tricolor.npz"
    np.savez(path, x_train=images[:180].astype(np.float32), y_train=labels[:180],
             x_test=images[180:].astype(np.float32), y_test=labels[180:])
    done = run_cli(["-m", "model=cnn,mlp", "activation=relu", "data=npz", "data.name=tricolor",
                    f"data.path={path}", "budget=smoke", "budget.epochs=2", "experiment=named",
                    "tracking.log_model=false"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("named")
    parents = client.search_runs([experiment.experiment_id], "tags.`vggsweep.role` = 'job'")
    assert len(parents) == 2
    assert {p.data.tags["data"] for p in parents} == {"tricolor"}
    assert {p.data.tags["data_shape"] for p in parents} == {"16x16x3"}
    assert all(len(p.data.tags["data_sha256"]) == 16 for p in parents)
    [csv] = list((tmp_path / "multirun").glob("*/*/leaderboard.csv"))
    board = pd.read_csv(csv)
    assert set(board["data"]) == {"tricolor"} and len(board) == 4
    report = (csv.parent / "report.html").read_text()
    assert "tricolor" in report and parents[0].data.tags["data_sha256"] in report
