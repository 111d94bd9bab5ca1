"""Composition of every config file, and the one-line errors of bad input."""

import subprocess
import sys
import time

import pytest
from conftest import ROOT, cli_env, run_cli

from vggsweep import config
from vggsweep.errors import ConfigError
from vggsweep.job import checks
from vggsweep.search import tuners

GROUP_OPTIONS = [(g, o) for g in ("model", "data", "optimizer", "tuner", "budget")
                 for o in config.group_options(g)]


#: Options that need a value of the user's (the data they name).
NEEDS_DATA = {("data", "npz"), ("data", "idx")}


@pytest.mark.parametrize("group, option", [g for g in GROUP_OPTIONS if g not in NEEDS_DATA])
def test_every_config_file_composes_and_validates(group, option):
    cfg = config.compose([f"{group}={option}"])
    checks.validate(cfg)
    assert cfg[group] is not None


@pytest.mark.parametrize("option", ["npz", "idx"])
def test_named_dataset_options_need_a_name_and_a_path(option, tmp_path):
    with pytest.raises(ConfigError, match="data.name|data.path") as info:
        checks.validate(config.compose([f"data={option}"]))
    assert "\n" not in str(info.value)
    import numpy as np

    np.savez(tmp_path / "set.npz", x_train=np.zeros((20, 8, 8), "uint8"), y_train=np.arange(20) % 2,
             x_test=np.zeros((10, 8, 8), "uint8"), y_test=np.arange(10) % 2)
    if option == "idx":
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            (tmp_path / stem).write_bytes(b"")
    path = tmp_path / "set.npz" if option == "npz" else tmp_path
    cfg = config.compose([f"data={option}", "data.name=tiny", f"data.path={path}"])
    checks.validate(cfg)
    assert cfg.data.name == "tiny"


def test_group_options_are_complete():
    assert set(config.group_options("model")) >= {"cnn", "vgg11", "vgg13", "vgg16", "vgg19", "mlp"}
    assert set(config.group_options("tuner")) == set(tuners.TUNERS)
    assert set(config.group_options("budget")) >= {"smoke", "quick", "full"}


def test_smoke_budget_matches_its_promise():
    cfg = config.compose(["budget=smoke"])
    assert (cfg.budget.max_trials, cfg.budget.epochs, cfg.data.train_samples) == (2, 1, 512)


def test_command_line_fixes_or_reopens_a_hyperparameter():
    fixed = config.compose(["model.filters=64", "activation=relu"])
    assert fixed.model.filters == 64 and fixed.activation == "relu"
    reopened = config.compose(["model.filters=64", "model.filters={choice:[16,32]}"])
    assert dict(reopened.model.filters) == {"choice": [16, 32]}
    replaced = config.compose(["model.conv_blocks={choice:[2,3]}"])  # over a {min, max} spec
    assert dict(replaced.model.conv_blocks) == {"choice": [2, 3]}
    checks.validate(replaced)


def test_expand_sweep_gives_one_override_list_per_job():
    combos = config.expand_sweep(["model=vgg16,cnn", "activation=relu,tanh,sigmoid", "seed=1"])
    assert len(combos) == 6
    assert ["model=vgg16", "activation=relu", "seed=1"] in combos


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=vgg17"], "model=vgg17 is not a known model; valid options: cnn, mlp, vgg11"),
        (["activation=rleu"], "activation='rleu' is not valid; valid: relu, tanh, sigmoid"),
        (["seed=abc"], "seed=abc"),
        (["data=mnist", "data.path=/nonexistent"], "data.path=/nonexistent does not exist"),
        (["model.filtrs=3"], "model.filtrs is not a known key; valid: augment"),
        (["optimizer.lr=3"], "optimizer.lr is not a known key; valid: beta_1"),
        (["model.filters={choice:[]}"], "non-empty list"),
        (["model.filters=abc"], "model.filters='abc' has the wrong type; expected int"),
        (["model=vgg16", "model.pooling=valid"], "block 5 pool 2x2 on a 1x1 feature map"),
        (["tuner=annealing"], "tuner=annealing is not a known tuner"),
        (["budget.epochs=0"], "budget.epochs=0 must be a positive integer"),
    ],
)
def test_bad_input_is_one_line(overrides, expected):
    with pytest.raises(ConfigError) as info:
        checks.validate(config.compose(overrides))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [["model=vgg17"], ["activation=rleu"], ["seed=abc"], ["data=mnist", "data.path=/nonexistent"],
     ["-m", "model=cnn,vgg17"], ["-m", "activation=relu,rleu", "data=digits"]],
)
def test_cli_bad_input_exits_non_zero_with_one_line_and_creates_nothing(args, tmp_path):
    started = time.perf_counter()
    result = run_cli(args, tmp_path, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()
    assert time.perf_counter() - started < 20  # no TensorFlow import on this path


@pytest.mark.subprocess
def test_help_and_cfg_are_instant_and_do_not_import_tensorflow(tmp_path):
    for flag in (["--help"], ["--cfg", "job"]):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "vggsweep", *flag], cwd=tmp_path,
            env=cli_env(tmp_path), capture_output=True, text=True, timeout=60,
        )
        elapsed = time.perf_counter() - started
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
        assert not {"tensorflow", "keras", "keras_tuner", "mlflow"} & imported
        assert elapsed < 5, elapsed  # -X importtime itself slows imports down
    assert "activation:" in result.stdout and "model:" in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_installed_package_finds_its_configs():
    # The package-dir mapping in pyproject.toml installs conf/ and sweeps/ inside the package.
    text = (ROOT / "pyproject.toml").read_text()
    assert '"vggsweep.conf" = "conf"' in text and '"vggsweep.sweeps" = "sweeps"' in text
    assert (config.CONF_DIR / "config.yaml").is_file()


@pytest.mark.subprocess
def test_a_regular_install_finds_its_configs_from_another_directory(tmp_path):
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(ROOT), "-w", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = list((tmp_path / "wheel").glob("vggsweep-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**cli_env(elsewhere), "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-m", "vggsweep", "--cfg", "job", "study=grid64"], cwd=elsewhere,
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "experiment: grid64" in result.stdout
    located = subprocess.run(
        [sys.executable, "-c", "import vggsweep.config as c; print(c.CONF_DIR)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
    )
    assert located.stdout.strip().startswith(str(site)), located.stdout + located.stderr
