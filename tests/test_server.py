"""`make server`: an MLflow tracking server on PostgreSQL, a sweep against it, the leaderboard and
report read back from it, its host protection, and Ctrl-C stopping both servers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import cli_env, run_cli


def _postgres_missing() -> str | None:
    from vggsweep.errors import ConfigError
    from vggsweep.tracking import server

    try:
        server.postgres_bin()
    except ConfigError as error:
        return str(error)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[server]')"
    return None


pytestmark = [pytest.mark.subprocess,  # every test here starts processes
              pytest.mark.skipif(_postgres_missing() is not None,
                                 reason=f"needs PostgreSQL: {_postgres_missing()}")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    import os
    import shutil
    import tempfile

    # As root, PostgreSQL runs as `postgres`, which must reach the folder (pytest's is private).
    home = Path(tempfile.mkdtemp(prefix="vggsweep-server-"))
    os.chmod(home, 0o755)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "vggsweep.server", "--port", str(port), "--dir",
         str(home / "mlflow_server")], cwd=home, env=cli_env(home), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1)
    started = time.monotonic()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "MLflow tracking server on" in line or time.monotonic() - started > 180:
            break
    assert "MLflow tracking server on" in "".join(lines), "".join(lines)[-3000:]
    yield {"home": home, "uri": f"http://127.0.0.1:{port}", "process": process}
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    shutil.rmtree(home, ignore_errors=True)


def test_a_sweep_records_into_the_server_and_reads_back(tracking_server, tmp_path):
    uri = tracking_server["uri"]
    done = run_cli(["-m", "model=mlp", "activation=relu", "data=digits", "budget=smoke",
                    "data.train_samples=100", "data.test_samples=50", f"tracking.uri={uri}",
                    "experiment=served"], tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    board = run_cli(["--tracking-uri", uri, "--experiment", "served"], tmp_path,
                    module="vggsweep.leaderboard")
    assert board.returncode == 0, board.stderr
    # after the line of what every row shares, the header and its rule
    rows = [line for line in board.stdout.splitlines()[3:] if line.strip()]
    assert len(rows) == 2 and "model=mlp," in board.stdout.splitlines()[0]  # every row's
    [sweep] = list((tmp_path / "multirun").glob("*/*"))
    report = run_cli(["--sweep-dir", str(sweep), "--tracking-uri", uri, "--experiment",
                      "served"], tmp_path, module="vggsweep.report")
    assert report.returncode == 0 and Path(report.stdout.strip()).is_file(), report.stderr


def test_the_server_refuses_other_hosts(tracking_server):
    search = f"{tracking_server['uri']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(search) == 200
    assert _status(search, host="evil.example.com") == 403


def test_an_unreachable_server_is_one_line(tmp_path):
    done = run_cli(["model=mlp", "data=digits", "budget=smoke",
                    f"tracking.uri=http://127.0.0.1:{_free_port()}"], tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no MLflow server answers" in done.stderr


def test_ctrl_c_stops_both_servers(tracking_server):
    process = tracking_server["process"]
    data = tracking_server["home"] / "mlflow_server" / "pgdata"
    assert (data / "postmaster.pid").is_file()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert not (data / "postmaster.pid").exists()  # PostgreSQL stopped cleanly
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{tracking_server['uri']}/health", timeout=5)
