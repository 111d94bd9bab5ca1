"""Interrupts (SIGTERM, Ctrl-C) that never land in the middle of a write to the store.

A sweep, a job process and a worker turn SIGTERM and SIGINT into `KeyboardInterrupt`, so that
every open MLflow run ends KILLED on the way out. Raised at an arbitrary bytecode, that exception
can cut a store call in half (after a query ran, before its rows were read): the interrupted
connection keeps its lock on the SQLite database, and the writes that end the runs then fail with
"database is locked" (the runs stay RUNNING).

So every call to the store runs inside `deferred()`: a signal that arrives there is held until the
call returns, then raised. Training, data loading and everything else stay interruptible at once.
A second signal while one is held is raised at once (the user insists).
"""

from __future__ import annotations

import contextlib
import signal
import threading

_depth = 0  # nesting of deferred() in the main thread (the only thread signals reach)
_pending: int | None = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    global _pending
    if _depth and _pending is None:
        _pending = signum
        return
    _pending = None
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def handled():
    """Within: SIGTERM, and SIGINT unless it is ignored (a background job), raise
    KeyboardInterrupt, held in `deferred()` sections. On the way out the handlers it replaced
    come back. Nests (an inner one changes nothing); outside the main thread it changes nothing.
    """
    replaced = {}
    if _in_main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(signum)
            if current is not signal.SIG_IGN and current is not _handler:
                replaced[signum] = current
                signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


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
            signum, _pending = _pending, None
            raise KeyboardInterrupt(f"signal {signum}")
