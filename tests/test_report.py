"""The sweep's outputs and report (vggsweep.outputs.sweep, .page, `python -m vggsweep.report`):
everything written from the store, a failing part never costs the CSV, the page in Chromium.
"""

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
from results_fixtures import EXPERIMENT, SWEEP_A, record_sweep

from vggsweep import report
from vggsweep.outputs import page, plots
from vggsweep.outputs import sweep as outputs
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
        artifacts = client.list_artifacts(sweep.parents[job], "sweep_plots")
        logged = {Path(a.path).name for a in artifacts}
        assert logged == {f"{name}.png" for name in SWEEP_PLOTS} | {"leaderboard.csv"}
    assert client.list_artifacts(sweep.parents["vgg16"], "sweep_plots") == []


def test_a_failing_plot_or_report_does_not_stop_the_csv(sweep, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    def quick(trials_or_histories, path, **kwargs):
        return plots.message_png(path, "stand-in", "a cheap figure")

    for name, plot in plots.SWEEP_PLOTS.items():
        draw = broken if name == "isolation" else (
            lambda trials, histories, path: quick(trials, path))
        monkeypatch.setitem(plots.SWEEP_PLOTS, name,
                            plot._replace(draw=draw, note=lambda trials, histories: None))
    monkeypatch.setattr(page, "render_report", broken)
    with caplog.at_level(logging.WARNING):
        written = outputs.write_sweep_outputs(tmp_path, sweep.tracking_uri, sweep.experiment,
                                                  parent_run_ids=[sweep.parents["mlp"]])
    assert set(written) == {"leaderboard"} | SWEEP_PLOTS - {"isolation"}
    assert len(pd.read_csv(written["leaderboard"])) == 3
    assert "plot isolation failed: boom" in caplog.text
    assert "report.html failed: boom" in caplog.text


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


def test_the_headline_says_by_how_much_the_best_wins_and_how_to_settle_it(sweep,
                                                                          sweep_outputs):
    page = sweep_outputs["report"].read_text()
    headline = re.search(r'<p class="headline">(.*?)</p>', page, re.S).group(1)
    assert "Best trial: <b>cnn-relu/trial-2</b>" in headline
    # the runner-up (cnn/03) missed 1 image the best got right, and got none it missed
    assert ("1 validation image more than the runner-up cnn-relu/trial-4 (McNemar p = 1: "
            "<b>within noise</b>)") in headline
    assert ("2 validation images more than the reference trial cnn-relu/trial-1 (McNemar "
            "p = 0.75: <b>within noise</b>)") in headline
    assert ("Within noise: to settle it, retrain the two best with new seeds: <code>python -m "
            f"vggsweep.confidence --experiment {EXPERIMENT} --sweep {sweep.sweep_a_dir} --top 2 "
            "--seeds 5 --tracking-uri") in headline


def test_the_leaderboard_shows_rank_metrics_and_what_varies_first(sweep_outputs):
    page = sweep_outputs["report"].read_text()
    section = page.split("<h2>Leaderboard", 1)[1]
    constants = re.search(r'<p class="constants">(.*?)</p>', section).group(1)
    assert constants.startswith("Same for every trial: data=mnist, batch_size=64, ")
    header = re.findall(r"<th>(.*?)</th>", section.split("</thead>", 1)[0])
    assert header[:4] == ["rank", "trial", "model", "activation"]
    assert header[4:8] == ["val_accuracy", "test_accuracy", "behind_best_images",
                           "behind_best_p"]
    assert "batch_size" not in header and "data" not in header  # the same for every trial
    assert {"filters", "dropout", "l2"} <= set(header)  # they vary


def test_a_plot_with_nothing_to_say_is_a_sentence(sweep, tmp_path):
    written = outputs.write_sweep_outputs(tmp_path, sweep.tracking_uri, sweep.experiment,
                                          parent_run_ids=[sweep.parents["mlp"]])
    assert "importance" not in written and "accuracy_vs_time" in written
    text = written["report"].read_text()
    assert ('<p class="note" id="note-importance">Hyperparameter importance needs at least 4 '
            "finished trials; 3 trials finished so far.</p>") in text
    assert text.count("<img") == len(SWEEP_PLOTS) - 1
    assert "(1 trials)" not in text


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


@pytest.mark.subprocess
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
    assert set(written) == {"leaderboard", "report"}  # no plot has anything to show: sentences
    assert pd.read_csv(written["leaderboard"]).empty
    text = written["report"].read_text()
    assert "No trial finished. 0 trials" in text
    assert text.count('<p class="note"') == len(SWEEP_PLOTS) and "<img" not in text
