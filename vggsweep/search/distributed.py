"""Parallel trials inside a job, on keras-tuner's distributed mode.

With `tuner.workers=N`, the job's process is keras-tuner's chief: it serves the job's oracle over
gRPC (keras-tuner's own `OracleServicer`, on `tuner.chief_host`, a free port) and starts N worker
processes (`python -m vggsweep.worker`) that each train trials and record them as child runs of the
job's parent run. More workers can join from other machines (the command is printed). The chief
supervises its workers: one that dies mid-trial is started again under the same id and gets that
trial back (keras-tuner hands a known worker its ongoing trial), so a kill costs only that trial.
keras-tuner's own chief loop polls every 20 s and waits forever for a dead worker; this one
polls every 0.2 s and gives up on a worker after `MAX_RESTARTS`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent import futures

from vggsweep.errors import EXIT_INFRASTRUCTURE, InfrastructureError
from vggsweep.runtime import accelerator, interrupts

MAX_RESTARTS = 3
POLL_S = 0.2
WORKER_ENV = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")


def worker_command(address: str, project, worker_id: str, tracking_uri: str | None = None):
    command = [sys.executable, "-m", "vggsweep.worker", "--chief", address,
               "--project", str(project), "--worker-id", worker_id]
    return command + (["--tracking-uri", tracking_uri] if tracking_uri else [])


class Chief:
    """The job's oracle served over gRPC, and the local worker processes it supervises."""

    def __init__(self, oracle, host: str, port: int = 0):
        import grpc

        from vggsweep.search import internals

        self.oracle = oracle
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        internals.oracle_servicer(oracle, self.server)
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        self.address = f"{_connect_host(host)}:{self.port}"
        self.server.start()
        self.workers: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.failed: list[str] = []

    def start(self, worker_id: str, project, env: dict) -> None:
        self.workers[worker_id] = subprocess.Popen(
            worker_command(self.address, project, worker_id), env={**os.environ, **env},
            preexec_fn=_end_with_parent)

    def done(self) -> bool:
        """True when every local worker has ended and no trial is still running."""
        from vggsweep.search import internals

        return all(p.poll() is not None for p in self.workers.values()) and (
            internals.search_is_over(self.oracle))

    def stop(self, grace_s: float = 1.0) -> None:
        self.server.stop(grace_s).wait()

    def terminate(self, signum: int | None = None) -> None:
        """Ends every worker (SIGTERM, or SLURM's warning signal when that is what stopped the
        job: its open runs end KILLED with that reason), then kills what remains."""
        signum = signum if signum == interrupts.WARNING_SIGNAL else signal.SIGTERM
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signum)
        deadline = time.monotonic() + 30
        for process in self.workers.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def serve(job, tuner, report, parent_run_id: str) -> None:
    """Runs the job's search on `tuner.workers` worker processes; returns when it is over."""
    cfg = job.cfg
    job.save(parent_run_id)
    tuner.oracle.verbose = 0  # keras-tuner's own display off: workers print progress lines
    tuner.save()
    chief = Chief(tuner.oracle, cfg.tuner.chief_host, cfg.tuner.chief_port)
    workers = cfg.tuner.workers
    report.note(f"{workers} workers; oracle at {chief.address}; another machine joins with: "
                f"python -m vggsweep.worker --chief {chief.address} --project {job.project}")
    envs = {f"worker{i}": {**accelerator.worker_env(cfg.accelerator, i, workers),
                           "PYTHONUNBUFFERED": "1"} for i in range(workers)}
    try:
        for worker_id, env in envs.items():
            chief.start(worker_id, job.project, env)
        while not chief.done():
            time.sleep(POLL_S)
            _supervise(chief, job, envs, report)
    except BaseException as stop:
        chief.terminate(getattr(stop, "signum", None))
        raise
    finally:
        chief.stop()
        tuner.oracle.save()
    if chief.failed:
        report.note(f"workers {', '.join(chief.failed)} failed {MAX_RESTARTS + 1} times; their "
                    "trials were ended FAILED")


def _supervise(chief: Chief, job, envs: dict, report) -> None:
    """Starts again a worker that died (it gets its ongoing trial back); ends the trial of one
    that keeps dying, so that the search can finish."""
    for worker_id, process in list(chief.workers.items()):
        code = process.poll()
        if code is None or code == 0 or worker_id in chief.failed:
            continue
        if code == EXIT_INFRASTRUCTURE:  # its trial stays ongoing: the rerun trains it
            raise InfrastructureError(f"worker {worker_id} stopped: the tracking store or a "
                                      "disk failed it (its line above)")
        if chief.restarts.get(worker_id, 0) < MAX_RESTARTS:
            chief.restarts[worker_id] = chief.restarts.get(worker_id, 0) + 1
            report.note(f"worker {worker_id} ended with code {code}; starting it again "
                        f"({chief.restarts[worker_id]}/{MAX_RESTARTS}): it resumes its trial")
            chief.start(worker_id, job.project, envs[worker_id])
        else:
            chief.failed.append(worker_id)
            _fail_ongoing(chief.oracle, worker_id, f"worker {worker_id} ended with code {code}")


def _fail_ongoing(oracle, worker_id: str, reason: str) -> None:
    from vggsweep.search import internals

    trial = oracle.ongoing_trials.get(worker_id)
    oracle.tuner_ids.discard(worker_id)
    if trial is not None:
        trial.status = internals.FAILED
        trial.message = reason
        oracle.end_trial(trial)


def _end_with_parent() -> None:
    """In a local worker, before it starts: SIGTERM when the job's process dies (Linux), so that
    a killed job leaves no worker waiting for its oracle."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _connect_host(host: str) -> str:
    """The address workers connect to: this machine's name when listening on every interface."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        return socket.getfqdn()
    return host
