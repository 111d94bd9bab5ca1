"""The leaderboard reads a recorded sweep back from MLflow: rows, types, ranking, filters, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # finds results_fixtures in any import mode
from results_fixtures import EXPERIMENT, SWEEP_A, record_sweep

from vggsweep.errors import ResultsError
from vggsweep.leaderboard import group_best, main
from vggsweep.outputs import leaderboard
from vggsweep.tracking import results
from vggsweep.tracking.results import load_trials

REPO_ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMETERS = [
    "augment", "batch_norm", "batch_size", "conv_blocks", "dense_layers", "dense_units", "dropout",
    "epochs", "filters", "kernel_size", "l2", "learning_rate", "pool_size", "seed", "temperature",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return record_sweep(tmp_path_factory.mktemp("recorded"))


@pytest.fixture(scope="module")
def trials(sweep):
    return load_trials(sweep.tracking_uri, sweep.experiment)


def _row(trials: pd.DataFrame, run_id: str) -> pd.Series:
    return trials.set_index("run_id").loc[run_id]


def test_one_row_per_trial_run_skipping_jobs_and_confidence_runs(sweep, trials):
    assert len(trials) == len(sweep.trials) == 10
    assert set(trials["run_id"]) == set(sweep.trials.values())
    assert not set(trials["run_id"]) & set(sweep.parents.values())


def test_columns_follow_the_documented_layout(trials):
    expected = (
        ["rank", "trial", "model", "activation", "data"] + HYPERPARAMETERS
        + ["val_accuracy", "test_accuracy", "train_time_s", "param_count", "epochs_run"]
        + ["behind_best_images", "behind_best_p"]
        + ["status", "failure_reason", "trial_id", "run_id", "parent_run_id", "job",
           "data_sha256", "reference", "logged_model"]
        + results.EXTRA_COLUMNS
    )
    assert list(trials.columns) == expected
    assert results.hyperparameter_columns(trials) == HYPERPARAMETERS


def test_params_come_back_with_their_types(sweep, trials):
    dtypes = trials.dtypes.astype(str)
    assert dtypes["filters"] == dtypes["dense_units"] == dtypes["epochs"] == "Int64"
    assert dtypes["batch_norm"] == dtypes["augment"] == "boolean"
    assert dtypes["dropout"] == dtypes["learning_rate"] == dtypes["l2"] == "float64"
    assert dtypes["param_count"] == dtypes["epochs_run"] == dtypes["rank"] == "Int64"
    cnn = _row(trials, sweep.trials["cnn/01"])
    assert cnn["filters"] == 64 and isinstance(cnn["filters"], int | np.integer)
    assert bool(cnn["batch_norm"]) is True and cnn["learning_rate"] == pytest.approx(1e-3)
    assert cnn["job"] == "model=cnn activation=relu"
    assert cnn["parent_run_id"] == sweep.parents["cnn"]
    mlp = _row(trials, sweep.trials["mlp/02"])
    assert pd.isna(mlp["filters"]) and mlp["l2"] == pytest.approx(1e-6)


def test_searched_activation_comes_from_the_trial_params(sweep, trials):
    assert _row(trials, sweep.trials["vgg16/00"])["activation"] == "sigmoid"
    assert _row(trials, sweep.trials["vgg16/01"])["activation"] == "relu"


@pytest.mark.parametrize(
    ("texts", "dtype", "values"),
    [
        (["1", "-2", None], "Int64", [1, -2, None]),
        (["True", "false", "None"], "boolean", [True, False, None]),
        (["1", "0.5", ""], "float64", [1.0, 0.5, None]),
        (["relu", "1"], "str", ["relu", "1"]),
    ],
)
def test_parse_param_values(texts, dtype, values):
    parsed = results.parse_param_values(texts)
    assert str(parsed.dtype) == dtype
    assert [None if pd.isna(v) else v for v in parsed] == values


def test_ranked_on_validation_accuracy_with_unfinished_trials_last(sweep, trials):
    order = ["vgg16/01", "cnn/01", "cnn/03", "cnn/00", "mlp/01", "mlp/00", "mlp/02", "vgg16/00"]
    assert list(trials["run_id"][:8]) == [sweep.trials[name] for name in order]
    assert list(trials["rank"][:8]) == list(range(1, 9))
    assert trials["rank"][8:].isna().all()
    assert set(trials["status"][8:]) == {"FAILED", "KILLED"}


def test_the_best_is_compared_image_by_image_with_the_next_and_the_reference(sweep, trials):
    from scipy import stats

    rows = trials.set_index("run_id")
    best, runner_up = rows.loc[sweep.trials["vgg16/01"]], rows.loc[sweep.trials["cnn/01"]]
    assert best["behind_best_images"] == 0 and pd.isna(best["behind_best_p"])
    # the best got 4 images right that the runner-up missed, and missed 2 it got right
    assert runner_up["behind_best_images"] == 2
    assert runner_up["behind_best_p"] == pytest.approx(stats.binomtest(4, 6).pvalue)
    reference = rows.loc[sweep.trials["cnn/00"]]
    assert bool(reference["reference"]) and reference["behind_best_images"] == 4
    assert rows.loc[sweep.trials["vgg16/00"], "behind_best_images"] == 176
    for name in ("mlp/00", "mlp/01", "mlp/02"):  # validated on other images: not compared
        assert pd.isna(rows.loc[sweep.trials[name], "behind_best_images"])
    assert trials["behind_best_images"].isna().sum() == 5  # the mlp's 3, the failed, the killed


def test_failure_reasons_and_interrupted_trials(sweep, trials):
    assert _row(trials, sweep.trials["cnn/02"])["failure_reason"] == "NaN loss at epoch 1"
    killed = _row(trials, sweep.trials["cnn/03-killed"])["failure_reason"]
    assert killed == f"interrupted; re-run as {sweep.trials['cnn/03'][:8]}"


def test_optimizer_params_only_on_request(sweep):
    with_optimizer = load_trials(sweep.tracking_uri, sweep.experiment,
                                 include_optimizer_params=True)
    assert {"optimizer_name", "optimizer_learning_rate"} <= set(with_optimizer.columns)


@pytest.mark.parametrize("sweep_filter", [SWEEP_A, "2025-01-01/12-00-00", "12-00-00"])
def test_sweep_filter_matches_path_suffixes(sweep, sweep_filter):
    rows = load_trials(sweep.tracking_uri, sweep.experiment, sweep=sweep_filter)
    assert set(rows["model"]) == {"cnn", "mlp"} and len(rows) == 8


def test_sweep_filter_matches_the_absolute_path(sweep):
    rows = load_trials(sweep.tracking_uri, sweep.experiment, sweep=str(sweep.sweep_b_dir))
    assert set(rows["model"]) == {"vgg16"}


def test_parent_model_and_status_filters(sweep):
    by_parent = load_trials(
        sweep.tracking_uri, sweep.experiment, parent_run_ids=[sweep.parents["mlp"]]
    )
    assert set(by_parent["run_id"]) == {sweep.trials[f"mlp/0{i}"] for i in range(3)}
    assert len(load_trials(sweep.tracking_uri, sweep.experiment, model="vgg16")) == 2
    failed = load_trials(sweep.tracking_uri, sweep.experiment, status="failed")
    assert list(failed["run_id"]) == [sweep.trials["cnn/02"]] and failed["rank"].isna().all()
    killed = load_trials(sweep.tracking_uri, sweep.experiment, model="cnn", status="KILLED")
    assert list(killed["run_id"]) == [sweep.trials["cnn/03-killed"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sweep": "2030-01-01/00-00-00"}, "recorded sweeps:"),
        ({"model": "resnet"}, "cnn, mlp, vgg16"),
        ({"status": "done"}, "finished, pruned, failed, killed"),
    ],
)
def test_unknown_filter_values_name_the_valid_ones(sweep, kwargs, message):
    with pytest.raises(ResultsError, match=message):
        load_trials(sweep.tracking_uri, sweep.experiment, **kwargs)


def test_rank_on_a_lower_is_better_metric(sweep, trials):
    by_time = results.rank_trials(trials, "train_time_s")
    assert by_time["run_id"].iloc[0] == sweep.trials["mlp/02"]
    assert by_time["train_time_s"].iloc[:8].is_monotonic_increasing


def test_group_best_is_the_isolation_table(sweep, trials):
    table = group_best(trials)
    assert list(zip(table["model"], table["activation"])) == [
        ("vgg16", "relu"), ("cnn", "relu"), ("mlp", "tanh"), ("vgg16", "sigmoid"),
    ]
    cnn = table.iloc[1]
    assert (cnn["n_trials"], cnn["n_finished"]) == (5, 3)
    assert cnn["run_id"] == sweep.trials["cnn/01"] and cnn["val_accuracy"] == pytest.approx(0.98)
    assert cnn["val_accuracy_min"] == pytest.approx(0.97)
    assert cnn["val_accuracy_max"] == pytest.approx(0.98)
    assert cnn["val_accuracy_std"] == pytest.approx(pd.Series([0.97, 0.975, 0.98]).std())
    assert str(table["filters"].dtype) == "Int64"


def test_group_best_keeps_a_group_without_finished_trials(sweep):
    failed_only = load_trials(sweep.tracking_uri, sweep.experiment, status="failed")
    table = group_best(failed_only)
    assert len(table) == 1 and table["n_finished"].iloc[0] == 0
    assert pd.isna(table["val_accuracy"].iloc[0])


def test_group_best_rejects_unknown_columns(trials):
    with pytest.raises(ResultsError, match="unknown column"):
        group_best(trials, by=["optimizer"])


def test_load_histories_one_row_per_epoch(sweep):
    from mlflow import MlflowClient

    run_id = sweep.trials["cnn/01"]
    history = results.load_histories(MlflowClient(sweep.tracking_uri), [run_id])[run_id]
    assert list(history.index) == [0, 1, 2]  # the final val_accuracy, logged at step 3, is no epoch
    assert list(history["val_accuracy"]) == pytest.approx([0.93, 0.98, 0.97])
    assert set(history.columns) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_write_table_csv_round_trips(trials, tmp_path):
    path = leaderboard.write_table(trials, tmp_path / "board.csv")
    read = pd.read_csv(path)
    assert list(read.columns) == list(trials.columns) and len(read) == len(trials)
    assert read["filters"].dropna().tolist() == trials["filters"].dropna().tolist()


def test_write_table_markdown_is_a_table(trials, tmp_path):
    text = leaderboard.write_table(trials, tmp_path / "board.md").read_text()
    lines = text.strip().splitlines()
    assert len(lines) == len(trials) + 2
    assert lines[0].startswith("| rank | trial | model | activation |")
    assert {line.count(" | ") for line in lines[2:]} == {lines[0].count(" | ")}
    assert "0.9900" in lines[2] and "NaN loss at epoch 1" in text


def test_write_table_html_and_unknown_format(trials, tmp_path):
    text = leaderboard.write_table(trials, tmp_path / "board.html").read_text()
    assert text.count("<tr") == len(trials) + 1 and "<th>val_accuracy</th>" in text
    with pytest.raises(ResultsError, match=r"\.csv, \.md, \.html"):
        leaderboard.write_table(trials, tmp_path / "board.xlsx")


def test_format_console_rounds_and_shortens(sweep, trials):
    text = leaderboard.format_console(trials)
    lines = text.splitlines()
    assert len(lines) == len(trials) + 2 and lines[0].split()[:3] == ["rank", "trial", "model"]
    best = sweep.trials["vgg16/01"]
    assert best[:8] in lines[2] and best not in text
    assert "0.9900" in lines[2] and "1.00e-04" in lines[2]


def test_cli_prints_the_top_rows(sweep, capsys):
    assert main(["--experiment", EXPERIMENT, "--tracking-uri", sweep.tracking_uri,
                 "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # what the 3 share in one line, then the header: rank, trial, what varies, the metrics
    assert lines[0].startswith("Same in every row: data=mnist, activation=relu, ")
    assert len(lines) == 1 + 2 + 3 and lines[3].split()[:3] == ["1", "vgg16-searched/trial-2",
                                                               "vgg16"]
    assert lines[1].split()[3:5] == ["val_accuracy", "test_accuracy"]
    assert "pool_size" not in lines[1] and "pool_size=2" in lines[0]


def test_cli_by_group_by_and_out(sweep, capsys, tmp_path):
    out = tmp_path / "groups.md"
    code = main([
        "--experiment", EXPERIMENT, "--tracking-uri", sweep.tracking_uri, "--sweep", SWEEP_A,
        "--by", "train_time_s", "--group-by", "model,activation", "--out", str(out),
    ])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]  # after the "same in every row"
    assert lines[0].split()[:5] == ["rank", "trial", "model", "activation", "train_time_s"]
    assert {"n_trials", "n_finished", "train_time_s_std"} <= set(lines[0].split())
    assert [line.split()[2] for line in lines[2:]] == ["mlp", "cnn"]  # fastest group first
    assert out.read_text().count("\n") == 2 + 2


def test_cli_uses_the_tracking_uri_from_the_environment(sweep, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.tracking_uri)
    assert main(["--experiment", EXPERIMENT, "--model", "mlp"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 2 + 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--experiment", "nope"], "unknown experiment 'nope'"),
        (["--experiment", EXPERIMENT, "--by", "speed"], "valid: val_accuracy"),
        (["--experiment", EXPERIMENT, "--group-by", "optimizer"], "unknown column"),
        (["--experiment", EXPERIMENT, "--top", "0"], "positive integer"),
        (["--experiment", EXPERIMENT, "--out", "board.xlsx"], "valid: .csv, .md, .html"),
        (["--tracking-uri", "sqlite:///x.db"], "--experiment"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(sweep, capsys, argv, message):
    if "--tracking-uri" not in argv:
        argv = [*argv, "--tracking-uri", sweep.tracking_uri]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_unknown_experiment_creates_nothing(sweep, capsys):
    from mlflow import MlflowClient

    before = len(MlflowClient(sweep.tracking_uri).search_experiments())
    assert main(["--experiment", "nope", "--tracking-uri", sweep.tracking_uri]) == 2
    assert len(MlflowClient(sweep.tracking_uri).search_experiments()) == before


def test_cli_missing_store_is_not_created(tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    assert main(["--experiment", EXPERIMENT, "--tracking-uri", f"sqlite:///{store}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MLflow store at" in err[0]
    assert not store.exists()


def _child_env() -> dict:
    """This environment, with the repository importable and no tracking URI from outside."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_child_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.subprocess
def test_import_is_light():
    result = _run_python(
        "import sys, vggsweep.leaderboard\n"
        "heavy = ('mlflow', 'matplotlib', 'tensorflow', 'keras_tuner')\n"
        "print([m for m in heavy if m in sys.modules])", REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.subprocess
def test_cli_subprocess_reads_mlflow_without_tensorflow(sweep):
    result = _run_python(
        "import sys\nfrom vggsweep.leaderboard import main\n"
        f"code = main(['--experiment', {EXPERIMENT!r}, '--tracking-uri', {sweep.tracking_uri!r}])\n"
        "print('HEAVY', [m for m in ('tensorflow', 'keras_tuner') if m in sys.modules])\n"
        "sys.exit(code)", REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1 + 2 + 10 + 1


@pytest.mark.subprocess
def test_cli_subprocess_default_store_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vggsweep.leaderboard", "--experiment", EXPERIMENT],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=_child_env(),
    )
    store = tmp_path / "mlflow.db"
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no MLflow store at {store} (tracking URI sqlite:///{store}); "
        "pass --tracking-uri, e.g. sqlite:///<launch dir>/mlflow.db, or set MLFLOW_TRACKING_URI"
    ]
    assert list(tmp_path.iterdir()) == []
