"""A throw-away single-node SLURM cluster (accounting included) for the SLURM tests.

Stdlib only. Needs Debian's packages (`.ci/run` installs them):

    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge \
        mariadb-server-core mariadb-client-core

and root: every daemon runs as root (SlurmUser=root, munged as root, mariadbd --user=root).
Everything -- configs, state, logs, spool, pid files, the MariaDB datadir and socket, the munge
key and socket -- lives under the one folder given to `start`; nothing under /etc, /run or /var
is used, and the system's own services (if any) are not touched: the cluster has its own
sockets and free TCP ports on 127.0.0.1. The daemons run in the foreground as children of the
calling process (each stopped by its PID; they get SIGTERM if that process dies).

    cluster = start(folder)          # blocks until every daemon is ready (4-10 s)
    try:
        subprocess.run(["sinfo"], env=cluster.full_env())
    finally:
        cluster.stop()               # cancels jobs, stops the daemons, reaps leftovers

`python tests/slurm_cluster.py serve FOLDER [cred_expire=N|default] [cpus=N]` starts one by hand,
prints the `export` lines for a shell and stops it on Ctrl-C.

Why each setting is what it is: the comments below; what a user's cluster differs in, and the
figures measured on this one: the README's "A cluster with SLURM".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Cluster", "ClusterError", "start", "missing_programs"]

CLUSTER_NAME = "vggsweep"
PARTITION = "debug"
# Requeued jobs get BeginTime = now + cred_expire + 1 (slurm.conf(5), AuthInfo);
# the default of 120 s makes every requeue wait two minutes.  5 is SLURM's minimum;
# it is also the lifetime of a job-step launch credential, so leave some margin.
CRED_EXPIRE = 10
DEF_MEM_PER_CPU = 1024  # MB
KILL_WAIT = 5  # seconds between SIGTERM and SIGKILL at a job's time limit

REQUIRED_PROGRAMS = (
    "munged", "munge", "mariadb-install-db", "mariadbd", "mariadb",
    "slurmdbd", "slurmctld", "slurmd", "sacctmgr", "sinfo", "scontrol",
    "sbatch", "sacct", "squeue", "scancel",
)
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes


class ClusterError(RuntimeError):
    """A daemon failed to start or to become ready; the message says which and why."""


def _which(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def missing_programs() -> list[str]:
    """Programs this module needs that are not installed (empty when all are)."""
    return [p for p in REQUIRED_PROGRAMS if _which(p) is None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", 0))  # free on every address: slurmctld binds INADDR_ANY
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text[-lines:])


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the thread that started it dies (Linux prctl)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Daemon:
    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path,
                 die_with_parent: bool = True):
        self.name = name
        self.argv = argv
        self.log = log  # the daemon's own log file
        self.out = log.with_suffix(".out")  # its stdout/stderr
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )

    def died(self) -> str | None:
        rc = self.proc.poll()
        if rc is None:
            return None
        return f"{self.name} exited with status {rc}"

    def diagnostics(self) -> str:
        parts = [f"command: {' '.join(self.argv)}"]
        for p in (self.out, self.log):
            if p.exists() and p.stat().st_size:
                parts.append(f"--- last lines of {p} ---\n{_tail(p)}")
        return "\n".join(parts)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Cluster:
    """A running cluster; see :func:`start`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.etc = folder / "etc"
        self.log_dir = folder / "log"
        self.run_dir = folder / "run"
        self.slurm_conf = self.etc / "slurm.conf"
        self.slurmdbd_conf = self.etc / "slurmdbd.conf"
        self.munge_socket = self.run_dir / "munge.socket"
        self.mysql_socket = self.run_dir / "mysqld.sock"
        self.node_name = socket.gethostname().split(".")[0]
        self.partition = PARTITION
        self.cluster_name = CLUSTER_NAME
        self.daemons: list[_Daemon] = []
        self.timings: dict[str, float] = {}
        path_dirs = os.environ.get("PATH", "").split(os.pathsep)
        path = os.pathsep.join([d for d in path_dirs if d]
                               + [d for d in SBIN_DIRS if d not in path_dirs])
        #: What SLURM's client commands (sbatch, sacct, ...) and submitit need.
        #: Only SLURM_CONF is essential: it names slurm.conf, which names the
        #: munge socket (AuthInfo), the ports and the accounting daemon.
        self.env: dict[str, str] = {
            "SLURM_CONF": str(self.slurm_conf),
            "PATH": path,
        }
        self._stopped = False
        self.die_with_parent = True

    # -- helpers -----------------------------------------------------------
    def full_env(self) -> dict[str, str]:
        """os.environ plus :attr:`env` (what a subprocess should get)."""
        env = dict(os.environ)
        # A SLURM_* variable from an enclosing job would confuse the clients.
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")):
                del env[key]
        env.update(self.env)
        return env

    def run(self, *argv: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command (e.g. a SLURM client) against this cluster."""
        return subprocess.run(
            list(argv), env=self.full_env(), capture_output=True, text=True,
            check=check, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def _wait(self, what: str, probe, daemon: _Daemon | None, timeout: float,
              interval: float = 0.25):
        """Poll probe() until it returns a true value; fail clearly on timeout or daemon death."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while True:
            try:
                result = probe()
            except (subprocess.SubprocessError, OSError) as exc:
                result, last = None, str(exc)
            if isinstance(result, tuple):
                result, last = result
            if result:
                self.timings[what] = time.monotonic() - t0
                return result
            if daemon is not None:
                why = daemon.died()
                if why:
                    raise ClusterError(f"{what}: {why}\n{daemon.diagnostics()}")
            if time.monotonic() > deadline:
                diag = daemon.diagnostics() if daemon else ""
                raise ClusterError(f"{what}: not ready after {timeout:.0f} s "
                                   f"(last probe: {last.strip()})\n{diag}")
            time.sleep(interval)

    def _probe(self, *argv: str, timeout: float = 10):
        try:
            r = self.run(*argv, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"{argv[0]} timed out"
        return r.returncode == 0, (r.stdout + r.stderr)

    def _spawn(self, name: str, argv: list[str],
               extra_env: dict[str, str] | None = None) -> _Daemon:
        env = {**self.full_env(), **(extra_env or {})}
        d = _Daemon(name, argv, self.log_dir / f"{name}.log", env, self.folder,
                    self.die_with_parent)
        self.daemons.append(d)
        return d

    # -- stop ----------------------------------------------------------------
    def cancel_all_jobs(self, timeout: float = 30) -> None:
        """scancel every job and wait (bounded) until none is left running."""
        try:
            self.run("scancel", "--user=" + _user(), check=False, timeout=20)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r = self.run("squeue", "-h", "-o", "%i %T", check=False, timeout=20)
                if r.returncode != 0 or not r.stdout.strip():
                    return
                time.sleep(0.5)
        except (subprocess.SubprocessError, OSError):
            pass

    def stop(self) -> None:
        """Cancel jobs, stop every daemon (by its PID, newest first), reap leftovers. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        alive = {d.name for d in self.daemons if d.proc.poll() is None}
        if {"slurmctld", "slurmd"} <= alive:
            self.cancel_all_jobs()
        pids = tuple(d.proc.pid for d in self.daemons)
        for d in reversed(self.daemons):
            d.stop()
        _kill_leftovers(str(self.slurm_conf), pids)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def _proc_table() -> dict[int, tuple[int, str, bytes]]:
    """pid -> (ppid, comm, environ) for every process we may read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        table[int(entry)] = (ppid, comm, environ)
    return table


def _kill_leftovers(slurm_conf: str, daemon_pids: tuple[int, ...] = ()) -> list[int]:
    """SIGKILL what is left of this cluster's jobs once the daemons are stopped.

    A backstop for stop(): a process is killed when its environment has
    SLURM_CONF=<this slurm.conf> (slurmd, slurmstepd and job tasks all carry it) AND it
    is a slurmstepd, or descends from a slurmstepd or one of our daemons, or is an
    orphan (parent 1, e.g. a task whose slurmstepd died).  Other processes that merely
    exported SLURM_CONF -- the caller, its shell, a sibling `sleep` -- are spared.
    """
    marker = f"SLURM_CONF={slurm_conf}".encode()
    table = _proc_table()
    roots = set(daemon_pids) | {pid for pid, (_, comm, _) in table.items() if comm == "slurmstepd"}

    def ours(pid: int) -> bool:
        seen = set()
        while pid in table and pid not in seen:
            seen.add(pid)
            if pid in roots:
                return True
            pid = table[pid][0]
        return False

    me = os.getpid()
    killed = []
    for pid, (ppid, comm, environ) in table.items():
        if pid == me or marker not in environ.split(b"\0"):
            continue
        if comm == "slurmstepd" or ours(pid) or ppid == 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _detect_node() -> dict[str, str]:
    """`slurmd -C` -> {'CPUs': '2', 'RealMemory': '24105', ...}."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True,
                         check=True, timeout=30, env={"PATH": os.environ.get("PATH", "")}).stdout
    first = out.splitlines()[0]
    return dict(kv.split("=", 1) for kv in first.split() if "=" in kv)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def start(folder, timeout: float = 60.0, cpus: int | None = None,
          cred_expire: int | None = CRED_EXPIRE,
          die_with_parent: bool = True) -> Cluster:
    """Start munged, mariadbd, slurmdbd, slurmctld and slurmd under ``folder``.

    Blocks until the node is idle and accounting answers; raises ClusterError
    (after stopping whatever it started) naming the daemon that failed and the
    tail of its log.  ``cpus`` declares more (or fewer) CPUs than slurmd
    detects, to run several jobs at once on a small machine.  ``cred_expire``
    (seconds, >= 5, None for SLURM's 120) bounds how long a requeued job waits.
    With ``die_with_parent`` the daemons get SIGTERM if the calling thread dies
    without calling stop() (e.g. pytest killed with SIGKILL); call start() from
    a thread that outlives the cluster (pytest fixtures do).
    """
    if os.geteuid() != 0:
        raise ClusterError("the test cluster must be started as root (all daemons run as root)")
    missing = missing_programs()
    if missing:
        raise ClusterError("missing programs: " + ", ".join(missing) + " (.ci/run installs them)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    c = Cluster(folder)
    c.die_with_parent = die_with_parent
    for sock in (c.munge_socket, c.mysql_socket):
        if len(str(sock)) > MAX_SOCKET_PATH:
            raise ClusterError(f"folder path too long for a unix socket: {sock}")
    t_start = time.monotonic()
    try:
        _start(c, timeout, cpus, cred_expire)
    except BaseException:
        c.stop()
        raise
    c.timings["start"] = time.monotonic() - t_start
    return c


def _start(c: Cluster, timeout: float, cpus: int | None, cred_expire: int | None) -> None:
    folder = c.folder
    state, spool, mysql_data = folder / "state", folder / "spool", folder / "mysql"
    for d in (c.etc, c.log_dir, c.run_dir, state, spool, spool / f"slurmd-{c.node_name}"):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)

    # --- munged --------------------------------------------------------------
    key = c.etc / "munge.key"
    if not key.exists():  # munged wants it owned by its user, not readable by others
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
    key.chmod(0o400)
    munged = c._spawn("munged", [
        _which("munged"), "--foreground", "--force",
        f"--socket={c.munge_socket}", f"--key-file={key}",
        f"--pid-file={c.run_dir / 'munged.pid'}", f"--seed-file={c.run_dir / 'munged.seed'}",
        f"--log-file={c.log_dir / 'munged.log'}", "--num-threads=2",
    ])
    probe = f"munge -n -S {c.munge_socket} | unmunge -S {c.munge_socket}"
    c._wait("munged", lambda: c._probe("bash", "-c", probe),
            munged, timeout)

    # --- mariadbd ------------------------------------------------------------
    if not (mysql_data / "mysql").is_dir():
        t0 = time.monotonic()
        r = subprocess.run([
            _which("mariadb-install-db"), "--no-defaults", f"--datadir={mysql_data}", "--user=root",
            "--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve",
        ], capture_output=True, text=True, timeout=max(timeout, 120), stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed ({r.returncode}):\n"
                               f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        c.timings["mariadb-install-db"] = time.monotonic() - t0
    mysqld = c._spawn("mariadbd", [
        _which("mariadbd"), "--no-defaults", f"--datadir={mysql_data}", "--user=root",
        f"--socket={c.mysql_socket}", f"--pid-file={c.run_dir / 'mariadbd.pid'}",
        f"--log-error={c.log_dir / 'mariadbd.log'}", "--skip-networking", "--skip-name-resolve",
        "--skip-log-bin", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
        "--innodb-lock-wait-timeout=900", f"--tmpdir={c.run_dir}",
    ])
    c._wait("mariadbd", lambda: c._probe("mariadb", f"--socket={c.mysql_socket}", "-uroot",
                                          "-e", "SELECT 1"),
            mysqld, timeout)

    # --- configs -------------------------------------------------------------
    ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd")}
    node = _detect_node()
    node_cpus = int(node["CPUs"])
    extra = ""
    if cpus and cpus != node_cpus:
        node_line = f"CPUs={cpus} RealMemory={node['RealMemory']}"
        extra = "SlurmdParameters=config_overrides\n"
    else:
        node_line = " ".join(f"{k}={node[k]}" for k in
                             ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                              "ThreadsPerCore", "RealMemory")
                             if k in node)
    auth_info = f"socket={c.munge_socket}"
    if cred_expire is not None:  # None: SLURM's default (120 s)
        auth_info += f",cred_expire={cred_expire}"
    n = c.node_name
    _write(c.etc / "plugstack.conf", "")
    _write(c.slurm_conf, f"""\
# generated by tests/slurm_cluster.py -- single-node test cluster
ClusterName={c.cluster_name}
SlurmctldHost={n}(127.0.0.1)
SlurmctldPort={ports['ctld']}
SlurmdPort={ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo={auth_info}
StateSaveLocation={state}
SlurmdSpoolDir={spool}/slurmd-%n
SlurmctldPidFile={c.run_dir}/slurmctld.pid
SlurmdPidFile={c.run_dir}/slurmd.pid
SlurmctldLogFile={c.log_dir}/slurmctld.log
SlurmdLogFile={c.log_dir}/slurmd.log
# debug: the logs show each signal SLURM sends (a failing test prints them)
SlurmctldDebug=debug
SlurmdDebug=debug
PlugStackConfig={c.etc}/plugstack.conf
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
# run the main scheduler every 2 s (default 60 s) so a job whose BeginTime passed starts promptly,
# and schedule batch jobs right after submission (batch_sched_delay, default 3 s)
SchedulerParameters=sched_interval=2,bf_interval=5,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={DEF_MEM_PER_CPU}
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['dbd']}
# connections to slurmdbd authenticate through the munge socket named here, not AuthInfo's
AccountingStoragePass={c.munge_socket}
JobCompType=jobcomp/none
ReturnToService=2
KillWait={KILL_WAIT}
InactiveLimit=0
MinJobAge=300
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
{extra}NodeName={n} NodeAddr=127.0.0.1 NodeHostname={n} {node_line} State=UNKNOWN
PartitionName={c.partition} Nodes={n} Default=YES MaxTime=INFINITE State=UP
""")
    _write(c.slurmdbd_conf, f"""\
# generated by tests/slurm_cluster.py
AuthType=auth/munge
AuthInfo=socket={c.munge_socket}
DbdHost={n}
DbdAddr=127.0.0.1
DbdPort={ports['dbd']}
SlurmUser=root
DebugLevel=info
LogFile={c.log_dir}/slurmdbd.log
PidFile={c.run_dir}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
""", 0o600)  # slurmdbd insists on 0600, owned by SlurmUser

    # --- slurmdbd ------------------------------------------------------------
    # slurmdbd.conf has no socket option: libmariadb takes the socket from MYSQL_UNIX_PORT
    # (StorageHost=localhost means "unix socket" to the MySQL client library)
    slurmdbd = c._spawn("slurmdbd", [_which("slurmdbd"), "-D"],
                        {"MYSQL_UNIX_PORT": str(c.mysql_socket)})
    c._wait("slurmdbd", lambda: c._probe("sacctmgr", "-n", "-P", "list", "cluster"), slurmdbd,
            timeout)
    r = c.run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster")
    if c.cluster_name not in r.stdout.split():
        c.run("sacctmgr", "-i", "add", "cluster", c.cluster_name)

    # --- slurmctld, slurmd ---------------------------------------------------
    slurmctld = c._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
    c._wait("slurmctld", lambda: c._probe("scontrol", "ping"), slurmctld, timeout)
    slurmd = c._spawn("slurmd", [_which("slurmd"), "-D", "-N", n])

    def node_idle():
        ok, out = c._probe("sinfo", "-h", "-n", n, "-o", "%T")
        state = out.strip().lower()
        # "down*"/"unknown*" just mean "not registered yet"; these mean a bad node definition
        if ok and state.startswith(("drain", "inval", "fail")) or state == "down":
            reason = c.run("scontrol", "show", "node", n, check=False).stdout
            reason = re.search(r"Reason=.*", reason)
            raise ClusterError(f"node {n} is {state}: {reason.group(0) if reason else '?'}\n"
                               f"{slurmd.diagnostics()}\n{slurmctld.diagnostics()}")
        return ok and state in ("idle", "mixed", "allocated"), out
    c._wait("slurmd", node_idle, slurmd, timeout)



def _serve(folder: str, *options: str) -> int:
    """Start, print the environment to use, and stop on SIGINT/SIGTERM.

    options: cred_expire=N|default, cpus=N
    """
    kw = {}
    for opt in options:
        k, v = opt.split("=", 1)
        kw[k] = None if v == "default" else int(v)
    c = start(folder, **kw)
    print(f"cluster up in {c.timings['start']:.1f} s; use:", flush=True)
    for k, v in c.env.items():
        print(f"export {k}={v}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
        print("cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        sys.exit(_serve(sys.argv[2], *sys.argv[3:]))
    print(__doc__)
    sys.exit(2)
