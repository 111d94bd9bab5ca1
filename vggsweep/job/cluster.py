"""Hydra's submitit launchers as vggsweep runs them: every job waited for, followed and accounted.

Hydra's plugin collects its jobs' results in job order and raises at the first one that failed:
one job SLURM cancelled ended the sweep (with a traceback) while the others still ran. vggsweep's
launchers (`hydra/launcher=submitit_slurm | submitit_local`: the classes of
`hydra_plugins.vggsweep_launcher`, registered by `vggsweep.config.launchers`, whose work is done
here) submit the same jobs the same way, then wait for every one of them
while the terminal shows each job's state and its progress lines, and hand Hydra a result for
each: a job that SLURM cancelled, timed out or failed is a failed job whose reason (`ended()`) the
sweep's outcome prints with what the store says.

Inside a SLURM job, SLURM's warning signal (submitit's USR2: `signal_delay_s` before the time
limit, or on preemption) ends the running trial and the job's run KILLED with the event as their
reason ("time limit", "preempted"); then submitit checkpoints the job (Hydra's launcher resubmits
itself with the same arguments) and requeues it (`hydra.launcher.max_num_timeout` times after time
limits); the requeued job resumes from its tuner state as a rerun does.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vggsweep.job import internals, slurm
from vggsweep.runtime import interrupts

LOG_POLL_S = 1.0  # the jobs' logs are read every second (local files)
STATE_POLL_S = 10.0  # SLURM is asked (one sacct call for every job) every 10 s
#: What happens to a job SLURM requeued (its state REQUEUED for a moment, then PENDING with the
#: reason BeginTime: requeued jobs are held, `cred_expire` + 1 s by default).
AGAIN = "SLURM starts it again after a short hold"
#: What SLURM's Reason column means when a job waits after a requeue.
WAITING = {"BeginTime": f"requeued: {AGAIN}"}


@dataclass
class Ended:
    """A launched job that returned no result: SLURM (or the executor) ended it."""

    index: int  # 1-based position in the sweep
    overrides: str  # as its runs record them (tag vggsweep.overrides)
    job_id: str
    state: str
    reason: str
    log: str

    def describe(self) -> str:
        return f"{self.reason}; log {self.log}"


_ENDED: list[Ended] = []


def ended() -> list[Ended]:
    """The jobs of this process's sweep that ended without a result (and why)."""
    return list(_ENDED)


class StillRunning(KeyboardInterrupt):
    """The launching process was interrupted while SLURM jobs go on; `lines` say which and how
    to follow or stop them."""

    def __init__(self, lines: list[str]):
        super().__init__("interrupted while SLURM jobs run")
        self.lines = lines


def launch(launcher, executor_name: str, job_overrides, initial_job_idx: int) -> list:
    """Submits the jobs as Hydra's submitit launcher does, waits for every one, and returns a
    Hydra JobReturn for each (see the module)."""
    from hydra.core.singleton import Singleton

    executor = slurm.make_executor(executor_name, launcher.params)
    sweep = launcher.config.hydra.sweep
    sweep_dir = Path(str(sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in sweep:  # as the plugin does
        os.chmod(sweep_dir, mode=int(str(sweep.mode), 8))
    arguments = [(list(overrides), "hydra.sweep.dir", initial_job_idx + number,
                  f"job_id_for_{initial_job_idx + number}", Singleton.get_state())
                 for number, overrides in enumerate(job_overrides)]
    jobs = executor.map_array(launcher, *zip(*arguments))
    follower = Follower(jobs, [list(o) for o in job_overrides], initial_job_idx,
                        initial_job_idx + len(jobs), on_slurm=executor_name == "slurm")
    follower.wait()
    return [follower.job_return(number) for number in range(len(jobs))]


def _event(handler) -> str:
    """The SLURM event behind the warning signal, as submitit counts it."""
    timed_out = internals.timed_out(handler)
    if timed_out is None:
        return interrupts.SLURM_WARNING
    return "time limit" if timed_out else "preempted"


def run_requeueing(run, max_num_timeout: int, label: str):
    """Runs the job (`run()`: Hydra's launcher in the job); on SLURM's warning signal its runs
    end KILLED ("time limit", "preempted"), then submitit's handler checkpoints the job and
    requeues it (it exits), or this raises why not. `label` starts the line that says so."""
    handler = signal.getsignal(interrupts.WARNING_SIGNAL)  # submitit's: checkpoint, requeue
    try:
        with interrupts.slurm_warning(lambda: _event(handler)):
            return run()
    except interrupts.Interrupted as stop:
        if stop.signum != interrupts.WARNING_SIGNAL or not callable(handler):
            raise
        event = stop.reason
    print(f"{label} {event}: SLURM's warning signal; the job's runs ended KILLED; requeueing "
          "the job (it resumes where it stopped)", flush=True)
    try:
        handler(interrupts.WARNING_SIGNAL, None)  # requeued: exits (SystemExit)
    except Exception as error:  # noqa: BLE001 - submitit's reason for not requeueing
        why = str(error).removeprefix("Job not requeued because: ").rstrip(".")
        raise RuntimeError(f"{event}, not requeued: {why} (hydra.launcher.max_num_timeout="
                           f"{max_num_timeout})") from None
    raise RuntimeError(f"{event}: submitit neither requeued the job nor said why")


class Follower:
    """Shows each job's state and its progress lines while the jobs run; reads how each ended."""

    def __init__(self, jobs, overrides: list[list[str]], first: int, total: int,
                 on_slurm: bool, stream=None):
        self.jobs = jobs
        self.overrides = overrides
        self.labels = [f"[job {first + n + 1}/{total}]" for n in range(len(jobs))]
        self.indices = [first + n + 1 for n in range(len(jobs))]
        self.on_slurm = on_slurm
        self.stream = stream or sys.stdout
        self.read = [0] * len(jobs)  # bytes of each job's log already shown
        self.shown: list[tuple | None] = [None] * len(jobs)
        self.states: dict[str, tuple[str, str]] = {}
        self.asked = float("-inf")
        self.sleep = time.sleep

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def wait(self) -> None:
        """Returns once every job is over; Ctrl-C raises StillRunning (SLURM jobs go on)."""
        try:
            while True:
                interrupts.check()  # a Ctrl-C that the imports swallowed
                self._ask_slurm()
                for number in range(len(self.jobs)):
                    self._show(number)
                if all(self._over(number) for number in range(len(self.jobs))):
                    return
                self.sleep(LOG_POLL_S)
        except KeyboardInterrupt:
            if self.on_slurm:
                raise StillRunning(self._still_running()) from None
            raise

    def _ask_slurm(self, force: bool = False) -> None:
        if not self.on_slurm or (time.monotonic() - self.asked < STATE_POLL_S and not force):
            return
        self.asked = time.monotonic()
        self.states.update(slurm.states([job.job_id for job in self.jobs]))

    def _state(self, number: int) -> tuple[str, str]:
        job = self.jobs[number]
        if self.on_slurm:
            return self.states.get(job.job_id, ("UNKNOWN", ""))
        return (job.state, "")

    def _over(self, number: int) -> bool:
        job = self.jobs[number]
        if job.paths.result_pickle.exists():
            return True
        return slurm.is_over(self._state(number)[0]) if self.on_slurm else job.done()

    def _show(self, number: int) -> None:
        """The job's new progress lines, and its state when it changed."""
        for line in self._new_lines(number):
            self._print(line)
        state = self._state(number)
        if self.jobs[number].paths.result_pickle.exists():
            state = ("RETURNED", "")  # the job handed back its result
        if state != self.shown[number] and state[0] != "UNKNOWN":
            self.shown[number] = state
            name, reason = state[0].lower(), state[1]
            why = AGAIN if name == "requeued" else (
                WAITING.get(reason, reason) if name == "pending" and reason != "None" else "")
            kind = "SLURM job" if self.on_slurm else "process"  # a local job's id is its PID
            where = f"{kind} {self.jobs[number].job_id}"
            self._print(f"{self.labels[number]} {where}: {name}{f' ({why})' if why else ''}")

    def _new_lines(self, number: int) -> list[str]:
        path = self.jobs[number].paths.stdout
        try:
            with open(path, "rb") as handle:
                handle.seek(0, 2)
                if handle.tell() < self.read[number]:
                    self.read[number] = 0  # a new log (truncated)
                handle.seek(self.read[number])
                chunk = handle.read()
        except OSError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.read[number] += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        return [line for line in lines if line.startswith(("[job ", "error:", "warning:"))]

    def _still_running(self) -> list[str]:
        running = [n for n in range(len(self.jobs)) if not self._over(n)]
        lines = [f"{len(running)} SLURM job(s) still run; they go on without this process:"]
        lines += [f"  {self.labels[n]} SLURM job {self.jobs[n].job_id} "
                  f"({' '.join(self.overrides[n])}): {self._state(n)[0].lower()}; log "
                  f"{self.jobs[n].paths.stdout}" for n in running]
        ids = " ".join(sorted({self.jobs[n].job_id.split("_")[0] for n in running}))
        lines.append(f"follow them: squeue -j {ids.replace(' ', ',')}; stop them: scancel {ids}")
        return lines

    def job_return(self, number: int):
        """What Hydra gets for the job: its own result, or a failed result saying why SLURM (or
        the executor) ended it (recorded in `ended()` for the sweep's outcome)."""
        job = self.jobs[number]
        if job.paths.result_pickle.exists():
            try:
                return job.results()[0]
            except Exception as error:  # noqa: BLE001 - the job's own error, read back
                reason = _last_line(str(error))
        else:
            self._ask_slurm(force=True)
            state = self._state(number)[0]
            reason = f"SLURM job {job.job_id} ended {state}" if self.on_slurm else (
                f"job {job.job_id} ended {state}")
        _ENDED.append(Ended(self.indices[number], " ".join(self.overrides[number]), job.job_id,
                            self._state(number)[0], reason, str(job.paths.stdout)))
        return _failed_return(self.overrides[number], reason)


def _last_line(trace: str) -> str:
    """The exception line of a job's traceback, without the exception's module path."""
    lines = [line.strip() for line in trace.splitlines()
             if line.strip() and not line.startswith(("-", "You can check", "or at paths"))]
    exception = next((line for line in reversed(lines) if re.match(r"^[\w.]+: ", line)),
                     lines[-1] if lines else "failed")
    return re.sub(r"^(?:\w+\.)+(\w+: )", r"\1", exception)


def _failed_return(overrides: list[str], reason: str):
    """A Hydra JobReturn for a job that returned nothing: COMPLETED for Hydra (which would
    raise at the first failed one), a failed JobResult for vggsweep, like a job's own failure."""
    from hydra.core.utils import JobReturn, JobStatus

    from vggsweep.job.runner import JobResult

    result = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    result.return_value = JobResult(" ".join(overrides), "failed", reason)
    return result
