"""The MLflow UI opens a vggsweep experiment in its model-training view with the metric columns
shown (checked in headless Chromium against a real `mlflow ui`)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from results_fixtures import EXPERIMENT, record_sweep

from vggsweep.tracking import store, ui

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = [pytest.mark.subprocess,  # every test here starts processes
              pytest.mark.skipif(CHROMIUM is None,
                                 reason="needs headless Chromium: apt-get install chromium")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    recorded = record_sweep(root)
    client = store.client(recorded.tracking_uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    for key, value in ui.experiment_tags().items():  # as `python -m vggsweep` tags its own
        client.set_experiment_tag(experiment_id, key, value)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", recorded.tracking_uri,
         "--host", "127.0.0.1", "--port", str(port)], cwd=root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    yield {"url": ui.runs_url(base, experiment_id), "root": root}
    server.terminate()
    server.wait(timeout=30)


def _dom(url: str, profile: Path) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=30000",
             "--window-size=2400,1200", "--dump-dom"]
    dom = subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True,
                         timeout=120).stdout
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))  # the page's text


def test_the_runs_table_shows_the_accuracy_columns(ui_server):
    for attempt in range(3):  # the first page a fresh server serves can be slow
        text = _dom(ui_server["url"], ui_server["root"] / f"profile{attempt}")
        if "14 matching runs" in text:
            break
    assert "Model training" in text  # the view, not GenAI's
    assert "14 matching runs" in text  # the fixture's jobs and trials
    header = text.split("Run Name", 1)[1].split("Hide run", 1)[0]  # the table's column headers
    for column in ("test_accuracy", "train_time_s", "param_count", "activation", "model"):
        assert column in header, (column, header)
