"""Plots, report.html and the end-of-sweep outputs, on a recorded sweep (no training)."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # finds results_fixtures in any import mode
from results_fixtures import EXPERIMENT, SWEEP_A, record_sweep  # noqa: E402

from vggsweep import report
from vggsweep.outputs import page, plots  # noqa: E402
from vggsweep.outputs import sweep as outputs  # noqa: E402
from vggsweep.tracking import results

SWEEP_PLOTS = {"accuracy_vs_time", "isolation", "learning_curves", "parallel_coordinates",
               "importance"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return record_sweep(tmp_path_factory.mktemp("recorded"))


@pytest.fixture(scope="module")
def trials(sweep):
    return results.load_trials(sweep.tracking_uri, sweep.experiment)


@pytest.fixture(scope="module")
def sweep_outputs(sweep):
    """write_sweep_outputs for the two jobs of sweep A, once for the module."""
    return outputs.write_sweep_outputs(
        sweep.sweep_a_dir, sweep.tracking_uri, sweep.experiment,
        parent_run_ids=[sweep.parents["cnn"], sweep.parents["mlp"]],
    )


def assert_png_not_blank(path) -> np.ndarray:
    """Opens a PNG and checks it holds more than one colour; returns the pixels."""
    from matplotlib.image import imread

    pixels = imread(Path(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 0.01 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 2
    return pixels


def test_pareto_front_keeps_only_undominated_points():
    times = [1.0, 2.0, 3.0, 4.0, 3.0]
    scores = [0.5, 0.4, 0.7, 0.6, 0.7]
    assert plots.pareto_front(times, scores).tolist() == [True, False, True, False, False]


def test_varying_columns_skip_constants(trials):
    columns = plots.varying_columns(plots.finished_trials(trials))
    assert columns[:2] == ["model", "activation"]
    assert {"filters", "dropout", "learning_rate"} <= set(columns)
    assert not {"epochs", "seed", "batch_size", "pool_size"} & set(columns)


@pytest.mark.parametrize(
    ("values", "continuous"),
    [
        (pd.Series([1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 1e-2]), True),  # a sampled learning rate
        (pd.Series([0.0, 0.25, 0.5, 0.25]), False),  # a few dropout choices
        (pd.Series([16, 32, 64, 128, 256, 512], dtype="Int64"), False),  # filter choices
        (pd.Series([True, False] * 5, dtype="boolean"), False),
    ],
)
def test_which_hyperparameters_get_a_numeric_axis(values, continuous):
    assert plots.common.is_continuous(values) is continuous


def test_learning_curves_from_mlflow_histories(sweep, trials, tmp_path):
    from mlflow import MlflowClient

    labels = plots.top_trial_labels(trials, k=3)
    assert list(labels.values())[0] == "#1 vgg16/relu trial 01"
    histories = results.load_histories(MlflowClient(sweep.tracking_uri), labels)
    curves = plots.learning_curves_png({labels[r]: h for r, h in histories.items()}, tmp_path / "c.png")
    assert_png_not_blank(curves)


def _synthetic_trials(n: int) -> pd.DataFrame:
    """Trials whose validation accuracy depends on `dropout` only; `filters` is noise."""
    rng = np.random.default_rng(1)
    dropout = np.tile([0.0, 0.25, 0.5], n)[:n]
    return pd.DataFrame({
        "rank": pd.array(range(1, n + 1), dtype="Int64"), "model": "cnn", "activation": "relu",
        "dropout": dropout, "filters": pd.array(rng.choice([16, 32, 64], n), dtype="Int64"),
        "val_accuracy": 0.9 + 0.1 * dropout + rng.normal(0, 0.002, n),
        "train_time_s": rng.uniform(1, 10, n), "status": "FINISHED", "trial_id": "00",
    })


def test_importance_credits_the_hyperparameter_that_matters():
    importance = plots.hyperparameter_importance(_synthetic_trials(12))
    assert importance.index[0] == "dropout" and importance["dropout"] > 0.9
    assert importance.get("filters", 0.0) < 0.1
    assert ((importance >= 0) & (importance <= 1)).all()


def test_importance_with_too_few_trials_says_so(tmp_path):
    few = _synthetic_trials(3)
    assert plots.hyperparameter_importance(few).empty
    assert_png_not_blank(plots.importance_png(few, tmp_path / "importance.png"))


def test_empty_sweep_still_gives_readable_figures(trials, tmp_path):
    written = plots.sweep_plots(trials.iloc[0:0], {}, tmp_path)
    assert set(written) == SWEEP_PLOTS
    for path in written.values():
        assert_png_not_blank(path)


def test_confusion_counts_and_matrix(tmp_path):
    y_true = np.array([0, 1, 2, 2, 1])
    y_pred = np.array([0, 2, 2, 2, 1])
    counts = plots.confusion_counts(y_true, y_pred)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    one_hot = np.eye(3)[y_pred]  # probability/one-hot rows are accepted too
    assert plots.confusion_counts(y_true, one_hot).tolist() == counts.tolist()
    path = plots.confusion_matrix_png(y_true, one_hot, tmp_path / "cm.png", class_names=["a", "b", "c"])
    assert_png_not_blank(path)


@pytest.mark.parametrize("shape", [(30, 28, 28), (30, 28, 28, 1)])
def test_misclassified_and_samples_grids(tmp_path, shape):
    rng = np.random.default_rng(0)
    images = rng.random(shape)
    y_true = rng.integers(0, 10, 30)
    y_pred = np.where(np.arange(30) % 3 == 0, (y_true + 1) % 10, y_true)
    four = plots.misclassified_png(images, y_true, y_pred, tmp_path / "4.png", max_images=4)
    nine = plots.misclassified_png(images, y_true, y_pred, tmp_path / "9.png", max_images=9)
    assert assert_png_not_blank(four).shape[0] < assert_png_not_blank(nine).shape[0]  # 2x2 < 3x3
    assert_png_not_blank(plots.samples_png(images, y_true, tmp_path / "s.png"))


def test_misclassified_without_mistakes_says_so(tmp_path):
    images = np.zeros((4, 28, 28))
    labels = np.arange(4)
    assert_png_not_blank(plots.misclassified_png(images, labels, labels, tmp_path / "m.png"))


def test_write_sweep_outputs_writes_everything(sweep, sweep_outputs):
    assert set(sweep_outputs) == {"leaderboard", "report"} | SWEEP_PLOTS
    board = pd.read_csv(sweep_outputs["leaderboard"])
    assert sweep_outputs["leaderboard"] == sweep.sweep_a_dir / "leaderboard.csv"
    assert len(board) == 8 and set(board["model"]) == {"cnn", "mlp"}
    for name in SWEEP_PLOTS:
        assert_png_not_blank(sweep_outputs[name])
    assert sweep_outputs["report"] == sweep.sweep_a_dir / "report.html"


def test_sweep_plots_are_logged_on_every_job_run(sweep, sweep_outputs):
    from mlflow import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    for job in ("cnn", "mlp"):
        logged = {Path(a.path).name for a in client.list_artifacts(sweep.parents[job], "sweep_plots")}
        assert logged == {f"{name}.png" for name in SWEEP_PLOTS} | {"leaderboard.csv"}
    assert client.list_artifacts(sweep.parents["vgg16"], "sweep_plots") == []


def test_a_failing_plot_or_report_does_not_stop_the_csv(sweep, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    def quick(trials_or_histories, path, **kwargs):
        return plots.message_png(path, "stand-in", "a cheap figure")

    for name, plot in plots.SWEEP_PLOTS.items():
        draw = broken if name == "isolation" else (lambda trials, histories, path: quick(trials, path))
        monkeypatch.setitem(plots.SWEEP_PLOTS, name, plot._replace(draw=draw))
    monkeypatch.setattr(page, "render_report", broken)
    with caplog.at_level(logging.WARNING):
        written = outputs.write_sweep_outputs(tmp_path, sweep.tracking_uri, sweep.experiment,
                                                  parent_run_ids=[sweep.parents["mlp"]])
    assert set(written) == {"leaderboard"} | SWEEP_PLOTS - {"isolation"}
    assert len(pd.read_csv(written["leaderboard"])) == 3
    assert "plot isolation failed: boom" in caplog.text and "report.html failed: boom" in caplog.text


def test_report_page_holds_the_answer_tables_and_images(sweep, sweep_outputs):
    page = sweep_outputs["report"].read_text()
    best = sweep.trials["cnn/01"]
    headline = re.search(r'<p class="headline">(.*?)</p>', page, re.S).group(1)
    assert "cnn / relu" in headline and "0.9800" in headline and "0.9760" in headline
    assert "never used for selection" in headline
    assert "8 trials: 6 finished, 1 failed, 1 interrupted" in headline
    assert page.count('<img src="data:image/png;base64,') == len(SWEEP_PLOTS)
    # isolation table, two Pareto sets (time, parameters), leaderboard, failures
    assert page.count("<table") == 5 and best[:8] in page
    assert "Pareto set: validation accuracy against training time" in page
    assert "NaN loss at epoch 1" in page and "vgg16" not in page  # sweep B is not in this report


def test_report_cli_rebuilds_the_page_for_one_sweep(sweep, capsys):
    target = sweep.sweep_b_dir / "report.html"
    code = report.main(["--sweep-dir", str(sweep.sweep_b_dir), "--experiment", EXPERIMENT,
                        "--tracking-uri", sweep.tracking_uri])
    assert code == 0 and capsys.readouterr().out.strip() == str(target)
    page = target.read_text()
    assert "vgg16 / relu" in page and "model=cnn" not in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sweep-dir", "/nonexistent/sweep", "--experiment", EXPERIMENT], "is not a directory"),
        (["--sweep-dir", "{root}", "--experiment", EXPERIMENT], "recorded sweeps:"),
        (["--sweep-dir", "{root}/" + SWEEP_A, "--experiment", "nope"], "unknown experiment"),
        (["--experiment", EXPERIMENT], "--sweep-dir"),
    ],
)
def test_report_cli_bad_input_is_one_line_and_exit_2(sweep, capsys, argv, message):
    argv = [a.replace("{root}", str(sweep.root)) for a in argv]
    code = report.main([*argv, "--tracking-uri", sweep.tracking_uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def _chromium() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome")
    return next((shutil.which(name) for name in names if shutil.which(name)), None)


def _run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium: apt-get install chromium")
def test_report_renders_in_headless_chromium(sweep_outputs, tmp_path):
    """The page opens from disk: every image decodes (naturalWidth > 0) and the tables are there."""
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
              "img.setAttribute('data-natural-width', img.naturalWidth); });</script></body>")
    probe.write_text(sweep_outputs["report"].read_text().replace("</body>", script))
    browser = _chromium()
    dom = _run_chromium(browser, tmp_path / "profile", "--dump-dom", probe.as_uri()).stdout
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == len(SWEEP_PLOTS) and min(widths) > 0
    assert dom.count('<table class="dataframe leaderboard"') == 1
    assert re.search(r"<td>NaN loss at epoch 1</td>", dom)
    screenshot = tmp_path / "page.png"
    _run_chromium(browser, tmp_path / "profile2", f"--screenshot={screenshot}",
                  "--window-size=1200,2000", sweep_outputs["report"].as_uri())
    assert_png_not_blank(screenshot)


def test_a_sweep_without_trials_still_gets_its_outputs(sweep, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    experiment_id = client.create_experiment("no-trials", artifact_location=tmp_path.as_uri())
    job = client.create_run(experiment_id, tags={"vggsweep.role": "job", "model": "vgg16"})
    client.set_terminated(job.info.run_id, "FAILED")
    written = outputs.write_sweep_outputs(tmp_path / "sweep", sweep.tracking_uri, "no-trials")
    assert set(written) == {"leaderboard", "report"} | SWEEP_PLOTS
    assert pd.read_csv(written["leaderboard"]).empty
    assert "No trial finished. 0 trials" in written["report"].read_text()
