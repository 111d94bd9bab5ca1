"""Interrupts (SIGTERM, Ctrl-C, SLURM's warning) that never land in the middle of a store write.

A sweep, a job process and a worker turn SIGTERM and SIGINT into `Interrupted` (a
`KeyboardInterrupt`), so that every open MLflow run ends KILLED on the way out. Raised at an
arbitrary bytecode, that exception can cut a store call in half (after a query ran, before its
rows were read): the interrupted connection keeps its lock on the SQLite database, and the writes
that end the runs then fail with "database is locked" (the runs stay RUNNING).

So every call to the store runs inside `deferred()`: a signal that arrives there is held until the
call returns, then raised. Training, data loading and everything else stay interruptible at once.
A second signal while one is held is raised at once (the user insists).

An interrupt raised where a library catches everything (TensorFlow's imports have bare
`except:` clauses: a signal in the first seconds of a job was lost there, and the job ran on as
if SLURM had never warned it) is not lost: `check()`, called where the work goes on (each
trial's start, each epoch's end, the launcher's wait), raises it again.

On a SLURM cluster a job also gets a warning signal (USR2, submitit's: `signal_delay_s` before its
time limit, or when it is preempted). It interrupts the same way, with a reason the runs it ends
record ("time limit", "preempted"), never as a failure: `slurm_warning()` is the job's side
(`vggsweep.job.cluster` then lets submitit requeue the job); any other process of a SLURM job (a
job's workers) ends its runs KILLED on it too instead of dying with them RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

#: The reason a run ended KILLED by an interrupt records, unless the signal says more.
INTERRUPTED = "interrupted"
#: SLURM's warning before a time limit or on preemption (submitit's; $SUBMITIT_PREEMPT_SIGNAL).
WARNING_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"),
                         signal.SIGUSR2)
#: The reason a process that is not the job's own records for the warning signal.
SLURM_WARNING = "SLURM's warning signal (time limit or preemption)"

_depth = 0  # nesting of deferred() in the main thread (the only thread signals reach)
_pending: tuple[int, str] | None = None
_reasons: dict[int, Callable[[], str]] = {}  # signal -> why it interrupts (default: INTERRUPTED)
_raised: tuple[int, str] | None = None  # the interrupt raised, until its handlers are removed


class Interrupted(KeyboardInterrupt):
    """An interrupt by a signal; `reason` is what the runs it ends KILLED record."""

    def __init__(self, signum: int, reason: str = INTERRUPTED):
        super().__init__(f"signal {signum}: {reason}")
        self.signum = signum
        self.reason = reason


def reason(error: BaseException) -> str:
    """Why an interrupt ended a run: its signal's reason, or `INTERRUPTED`."""
    return error.reason if isinstance(error, Interrupted) else INTERRUPTED


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _why(signum: int) -> str:
    explain = _reasons.get(signum)
    return explain() if explain else INTERRUPTED


def _raise(signum: int, why: str):
    global _raised
    _raised = (signum, why)
    raise Interrupted(signum, why)


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    global _pending
    if _depth and _pending is None:
        _pending = (signum, _why(signum))
        return
    _pending = None
    _raise(signum, _why(signum))


def check() -> None:
    """Raises again the interrupt already raised, if the process is still at work: something
    swallowed it (a library's bare `except:`). Called only where the work goes on normally,
    never on the way out (where the interrupt is being handled)."""
    if _raised is not None and _in_main_thread():
        raise Interrupted(*_raised)


def _forget() -> None:
    global _raised, _pending
    _raised = _pending = None


def _install(signum: int) -> object | None:
    """Points `signum` at `_handler`; returns the handler it replaced (None: nothing changed)."""
    current = signal.getsignal(signum)
    if current is signal.SIG_IGN or current is _handler:
        return None
    signal.signal(signum, _handler)
    return current if current is not None else signal.SIG_DFL


def _in_slurm_job() -> bool:
    return "SLURM_JOB_ID" in os.environ


@contextlib.contextmanager
def handled():
    """Within: SIGTERM, and SIGINT unless it is ignored (a background job), raise `Interrupted`,
    held in `deferred()` sections; in a SLURM job, so does its warning signal when nothing else
    handles it. On the way out the handlers it replaced come back. Nests (an inner one changes
    nothing); outside the main thread it changes nothing.
    """
    replaced = {}
    if _in_main_thread():
        wanted = [signal.SIGTERM, signal.SIGINT]
        if _in_slurm_job() and signal.getsignal(WARNING_SIGNAL) is signal.SIG_DFL:
            wanted.append(WARNING_SIGNAL)
        for signum in wanted:
            previous = _install(signum)
            if previous is not None:
                replaced[signum] = previous
    if WARNING_SIGNAL in replaced:
        _reasons[WARNING_SIGNAL] = lambda: SLURM_WARNING
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
        if WARNING_SIGNAL in replaced:
            _reasons.pop(WARNING_SIGNAL, None)
        if replaced:  # the outermost section: what it raised has been handled
            _forget()


@contextlib.contextmanager
def slurm_warning(explain: Callable[[], str]):
    """Within (the main thread of a SLURM job): the warning signal raises `Interrupted` with the
    reason `explain()` gives when it arrives, held in `deferred()` sections like SIGTERM. Yields
    the handler it replaced (submitit's, which checkpoints and requeues the job); puts it back
    on the way out."""
    previous = signal.getsignal(WARNING_SIGNAL)
    _reasons[WARNING_SIGNAL] = explain
    signal.signal(WARNING_SIGNAL, _handler)
    try:
        yield previous
    finally:
        signal.signal(WARNING_SIGNAL, previous if previous is not None else signal.SIG_DFL)
        _reasons.pop(WARNING_SIGNAL, None)
        _forget()


@contextlib.contextmanager
def deferred():
    """A section that a signal does not interrupt; the signal is raised when it ends."""
    global _depth, _pending
    if not _in_main_thread():
        yield  # handlers run in the main thread only: other threads are never interrupted
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            (signum, why), _pending = _pending, None
            _raise(signum, why)
