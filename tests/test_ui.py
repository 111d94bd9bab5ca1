"""The MLflow UI as a user meets it, in headless Chromium against `python -m vggsweep.ui`: the link
a sweep prints shows each trial under its job with the accuracy columns, every run name is unique,
and entering from the UI's home page in a fresh browser lands in the model-training view."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

sys.path.insert(0, str(Path(__file__).parent))
from webdriver import CHROMEDRIVER, CHROMIUM, Browser, free_port, wait_until_served

from vggsweep.tracking import store, ui

pytestmark = [pytest.mark.subprocess,  # every test here starts processes
              pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                 reason="needs headless Chromium and chromedriver: apt-get "
                                        "install chromium chromium-driver")]
EXPERIMENT = "ui"
SWEEP = ["-m", "model=mlp", "activation=relu,tanh", "data=digits", "budget=smoke",
         "data.train_samples=100", "data.test_samples=50", "model.hidden_layers=1",
         "budget.max_trials=2", "tracking.log_model=false", "verbose=0",
         f"experiment={EXPERIMENT}"]
JOBS = ("mlp-relu", "mlp-tanh")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real sweep (two jobs of two trials), its printed link, and the UI over its store."""
    home = tmp_path_factory.mktemp("ui")
    result = run_cli(SWEEP, home, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [link] = re.findall(r"^MLflow UI: .*then open (\S+)$", result.stdout, re.M)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vggsweep.ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=home, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        printed = server.stdout.readline()  # the command prints each experiment's link first
        wait_until_served(f"{base}/health", server, 180, "the UI server")
        yield {"home": home, "uri": uri, "base": base, "printed": printed,
               "link": link.replace(ui.local_base(), base)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _rows(browser: Browser) -> list[str]:
    """The runs table's rows, top to bottom, as text (group rows read "Group: <job>")."""
    return browser.run("return Array.from(document.querySelectorAll('[role=row]'))"
                       ".map(row => row.innerText.replace(/\\s+/g, ' ').trim())"
                       ".filter(text => text.length > 0);")


def test_the_printed_link_shows_each_trial_under_its_job_with_the_accuracy_columns(
        served, tmp_path):
    names = {run.info.run_name for run in store.client(served["uri"]).search_runs(
        [store.client(served["uri"]).get_experiment_by_name(EXPERIMENT).experiment_id])}
    trials = {f"{job}/trial-{n}" for job in JOBS for n in (1, 2)}
    assert names == set(JOBS) | trials  # unique, readable, numbered as the progress lines
    assert served["printed"].split() == [EXPERIMENT, served["link"]]  # `make ui` prints it
    with Browser.start(tmp_path / "profile") as browser:
        browser.open(served["link"])
        text = browser.wait_for(lambda page: "6 matching runs" in page
                                and all(f"Group: {job}" in page for job in JOBS),
                                what="the grouped runs table")
        rows = _rows(browser)
    header = text.split("Run Name", 1)[1].split("Group:", 1)[0]
    for column in ("val_accuracy_kept", "test_accuracy", "train_time_s", "param_count"):
        assert column in header, (column, header)
    assert "Sort: val_accuracy_kept" in text and "Group by: vggsweep.job" in text
    shown = [re.sub(r"^Pin (run|group) (#\w+ )?", "", row).split(" ")[0:2] for row in rows]
    groups = [i for i, row in enumerate(rows) if "Group: " in row]
    assert len(groups) == 2, rows
    for start, end in zip(groups, [*groups[1:], len(rows)]):
        job = rows[start].split("Group: ", 1)[1].split(" ")[0]
        under = {words[0] for words in shown[start + 1:end] if words}
        assert {f"{job}/trial-{n}" for n in (1, 2)} | {job} <= under, (job, rows)
        assert not {name for name in under if "/trial-" in name and not
                    name.startswith(f"{job}/")}, (job, rows)


def test_the_home_page_opens_a_vggsweep_experiment_in_the_model_training_view(served,
                                                                              tmp_path):
    with Browser.start(tmp_path / "fresh-profile") as browser:
        browser.open(served["base"] + "/")
        browser.wait_for(lambda page: EXPERIMENT in page.split(), what="the home page")
        browser.click_link(EXPERIMENT)
        url = browser.wait_for_url(lambda address: "workflowType=" in address)
        assert "workflowType=machine_learning" in url and "/runs" in url, url
        browser.wait_for(lambda page: "matching runs" in page, what="the runs table")
        # The control: a browser whose stored choice is GenAI (MLflow's own default, what a
        # plain `mlflow ui` gives a fresh browser) lands elsewhere, so the check above can fail.
        browser.run("window.localStorage.setItem('mlflow.workflowType_v1', '\"genai\"');")
        browser.open(served["base"] + "/")
        browser.wait_for(lambda page: EXPERIMENT in page.split(), what="the home page again")
        browser.click_link(EXPERIMENT)
        url = browser.wait_for_url(lambda address: "workflowType=" in address)
        assert "workflowType=genai" in url and "/overview" in url, url
