"""`python -m vggsweep.server` (`make server`): an MLflow tracking server on PostgreSQL.

A PostgreSQL cluster is initialised on first use in `<dir>/pgdata` (Debian's `postgresql`
package; run as the `postgres` user when started by root), listening on 127.0.0.1 only, on a
port of its own, with a socket in a private folder. The MLflow server (uvicorn, MLflow's
host/CORS protection on) stores runs there and serves artifacts from `<dir>/artifacts`, on
`127.0.0.1:PORT`. Ctrl-C (or SIGTERM) stops both. Sweeps point at it with
`tracking.uri=http://127.0.0.1:PORT`.

    python -m vggsweep.server --port 5055 --dir mlflow_server
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vggsweep.errors import ConfigError

DATABASE = "mlflow"
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or a one-line error."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent  # Debian links pg_ctl alone into /usr/local/bin
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise ConfigError("PostgreSQL is not installed (no pg_ctl): apt-get install postgresql, or "
                      "point sweeps at another tracking server")


class Postgres:
    """A private PostgreSQL cluster in a folder, for one user (`mlflow`) and one database."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.data, self.sockets = folder / "pgdata", folder / "socket"
        self.log = folder / "postgres.log"
        self.bin = postgres_bin()
        self.as_postgres = os.geteuid() == 0  # initdb refuses root: run as `postgres`

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ConfigError(f"{Path(command[0]).name} failed (see {self.log}): "
                              f"{said[-1] if said else done.returncode}")
        return done

    def _own(self, *paths: Path) -> None:
        if self.as_postgres:
            for path in paths:
                shutil.chown(path, "postgres", "postgres")

    def _check_reachable(self) -> None:
        """As root, the cluster runs as `postgres`, which must be able to reach the folder."""
        if not self.as_postgres:
            return
        for folder in [self.folder, *self.folder.parents]:
            if folder.exists() and not os.stat(folder).st_mode & 0o001:
                raise ConfigError(f"PostgreSQL runs as the user postgres, which cannot enter "
                                  f"{folder}; give --dir a folder it can reach (e.g. under /srv "
                                  "or /tmp), or start the server as a regular user")

    def start(self) -> str:
        """Initialises the cluster on first use, starts it; returns the backend store URI."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        fresh = not (self.data / "PG_VERSION").is_file()
        if fresh:
            self.data.mkdir(mode=0o700, exist_ok=True)
            self._own(self.data)
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", DATABASE,
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
        self.log.touch()
        self._own(self.sockets, self.log)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets}"
        started = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                            "-l", str(self.log), "-w", "-t", "60", "start", check=False)
        if started.returncode != 0:
            raise ConfigError(f"PostgreSQL did not start (see {self.log}): "
                              f"{(started.stderr or started.stdout).strip().splitlines()[-1:]}")
        if fresh:
            try:
                self._run(str(self.bin / "createdb"), "-h", str(self.sockets), "-p",
                          str(self.port), "-U", DATABASE, DATABASE)
            except BaseException:
                self.stop()
                raise
        return (f"postgresql+psycopg2://{DATABASE}@/{DATABASE}"
                f"?host={self.sockets}&port={self.port}")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                  check=False)


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the MLflow server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.5)
    raise ConfigError(f"the MLflow server did not answer at {url} within {timeout_s:.0f}s")


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def serve(args: argparse.Namespace) -> int:
    """Starts PostgreSQL and the MLflow server as `args` say; returns when they stopped."""
    if args.port > 65535:
        raise ConfigError(f"--port {args.port}: valid ports are 1 to 65535")
    if args.host not in ("127.0.0.1", "localhost") and not args.allowed_hosts:
        raise ConfigError(f"--host {args.host} serves other machines: name the addresses they "
                          "use with --allowed-hosts (MLflow refuses other Host headers)")
    folder = Path(args.dir).expanduser().resolve()
    database = Postgres(folder, _free_port())
    for signum in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a background job ignores it
        signal.signal(signum, _terminate)
    backend = database.start()
    try:
        return _serve(args, folder, database, backend)
    finally:
        database.stop()


def _serve(args: argparse.Namespace, folder: Path, database: Postgres, backend: str) -> int:
    url = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
               "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
               "--host", args.host, "--port", str(args.port), "--workers", "2"]
    if args.app_name:
        command += ["--app-name", args.app_name]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    server = subprocess.Popen(command, start_new_session=True)
    try:
        wait_until_up(url, server)
        print(f"MLflow tracking server on {url} (PostgreSQL on 127.0.0.1:{database.port}, "
              f"data in {folder}); sweeps: tracking.uri={url}; Ctrl-C stops both", flush=True)
        server.wait()
        return 1
    except KeyboardInterrupt:
        print("stopping the MLflow server and PostgreSQL", flush=True)
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
