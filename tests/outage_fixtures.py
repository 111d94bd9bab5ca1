"""Faults for the outage tests: an MLflow tracking server, a proxy in front of it that can stop
answering and start again (to the client, exactly a server that went away: its connections are
refused), a sweep run line by line, and a small filesystem that fills up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """A plain `mlflow server` on SQLite at 127.0.0.1 (its own process group: stop() ends its
    workers too); start() again serves the same store on the same port."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = Path(folder), port or free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Starts the server; returns the seconds it took to answer."""
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.folder / "server.log", "a")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{self.folder / 'mlflow.db'}", "--artifacts-destination",
             str(self.folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], cwd=self.folder, env=env, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        while time.monotonic() - started < START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log')}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return time.monotonic() - started
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # gone at once, like a crash
        self.process.wait(timeout=30)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port`. `down()`: its port refuses
    connections and the open ones are cut (a stopped server, to the client); `up()`: it
    answers again, on the same port."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:  # shutdown first: a thread blocked in accept() would go on
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for side in (source, sink):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)


@dataclass
class Sweep:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    marks: dict  # marker -> seconds after the start when it appeared


def sweep(home: Path, args: list[str], *, env: dict | None = None, on_line=None,
          timeout_s: float = 600, prefix: list[str] | None = None) -> Sweep:
    """Runs `python -m vggsweep ARGS` in `home`, calling `on_line(line, elapsed_s)` for each
    stdout and stderr line as it comes; returns its outcome."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(VGGSWEEP_HOME=str(home), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
                    **(env or {}))
    started = time.monotonic()
    process = subprocess.Popen([*(prefix or []), sys.executable, "-m", "vggsweep", *args],
                               cwd=home, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    watchdog = threading.Timer(timeout_s, process.kill)
    watchdog.start()
    out, err, marks = [], [], {}

    def read(stream, sink):
        for line in stream:
            sink.append(line)
            if on_line is not None:
                on_line(line, time.monotonic() - started)

    readers = [threading.Thread(target=read, args=(process.stdout, out), daemon=True),
               threading.Thread(target=read, args=(process.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait()
        for reader in readers:
            reader.join(timeout=30)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    return Sweep(process.returncode, "".join(out), "".join(err),
                 time.monotonic() - started, marks)


def can_mount_tmpfs() -> bool:
    """Whether this machine lets the tests mount a small tmpfs in a mount namespace of their
    own (root, or unprivileged user namespaces)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d"
                            " && rmdir $d"], capture_output=True, timeout=30)
    return probe.returncode == 0
