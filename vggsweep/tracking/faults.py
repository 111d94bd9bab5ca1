"""When the tracking store fails: which errors mean it is away (a sweep waits for it, bounded by
`tracking.outage_s`) and which mean a full disk (the sweep stops at once); since when a store has
been away, said in one line; MLflow's HTTP settings derived from the bound.

A store's health is kept per tracking URI and per process, so the jobs of a sweep that run in one
process share it: once a store has been away longer than the bound, the next job gives up at
its first failed call instead of waiting the bound again. MLflow is imported inside the functions.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from vggsweep.errors import DiskFull, TrackingUnavailable
from vggsweep.runtime import files

#: How long a sweep waits for its store by default (`tracking.outage_s`).
DEFAULT_OUTAGE_S = 300.0
#: Waits between tries while a store is away (the last one repeats).
PAUSES_S = (0.5, 1.0, 2.0, 4.0, 5.0)
#: Failed tries in a row before the line is printed: a pooled connection that the server closed
#: fails once, and the next try opens a new one.
ANNOUNCE_AFTER = 2

AWAY, FULL = "away", "full"
_AWAY_TEXT = ("unable to open database file", "disk i/o error", "could not connect to server",
              "server closed the connection", "connection refused", "connection reset",
              "terminating connection", "database is locked", "queuepool limit")


def http_settings(outage_s: float) -> dict[str, str]:
    """MLflow's HTTP settings for a sweep that waits `outage_s` for its store.

    One attempt per call (MLflow's own retries, 7 with up to 120 s between them, would keep a call
    for about 247 s, and would repeat a POST behind our back: a second run for a `create_run`
    whose answer was late); vggsweep retries each call itself until the bound. The timeout of
    one attempt (connecting, and each wait for an answer) leaves room for several tries."""
    timeout = int(min(120.0, max(5.0, outage_s / 4)))
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}


def _chain(error: BaseException | None):
    seen = 0
    while error is not None and seen < 20:
        yield error
        error, seen = error.__cause__ or error.__context__, seen + 1


def classify(error: BaseException) -> str | None:
    """FULL: a disk is full; AWAY: the store did not answer (refused, timed out, a server error
    after which the request may be repeated, a database that cannot be opened or stays locked by
    other writers); None: the store answered (a bad request, an unknown run: not a fault of the
    infrastructure)."""
    if files.is_disk_full(error):
        return FULL
    if isinstance(error, TrackingUnavailable):
        return AWAY
    from mlflow.exceptions import RestException

    if isinstance(error, RestException):
        return None
    import requests

    for link in _chain(error):
        if isinstance(link, (requests.exceptions.RequestException, ConnectionError,
                             TimeoutError)):
            return AWAY
        if any(text in str(link).lower() for text in _AWAY_TEXT):
            return AWAY
    return None


def _cause(error: BaseException) -> str:
    """What the store's failure was, in a few words."""
    for link in _chain(error):
        name = type(link).__name__
        if isinstance(link, ConnectionRefusedError) or "refused" in str(link).lower():
            return "connection refused"
        if "Timeout" in name or isinstance(link, TimeoutError):
            return "no answer in time"
        if name == "ResponseError":
            return "it answers with server errors"
        if "database is locked" in str(link):
            return "the database stays locked by other writers"
    text = " ".join(str(error).split())
    return text[:160]


class Health:
    """Whether one store answers, in this process: since when it does not, the one line that
    says so, when to try again and when to give up."""

    def __init__(self, uri: str):
        self.uri = uri
        self.outage_s = DEFAULT_OUTAGE_S
        self.label = ""  # the job's prefix for the lines printed
        self.lock = threading.Lock()
        self.since: float | None = None  # time.time() of the first failure of this outage
        self.since_monotonic = 0.0
        self.failures = 0
        self.announced = False
        self.last_error = ""

    @property
    def what(self) -> str:
        local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
        return f"tracking store {self.uri}" if local else f"tracking server {self.uri}"

    def _say(self, text: str) -> None:
        print(f"{self.label + ' ' if self.label else ''}{text}", file=sys.stderr, flush=True)

    def failed(self, error: BaseException, started: float | None = None) -> None:
        """Records a failed try that began at `started` (time.monotonic(); a try that waited
        for its timeout began that long ago): the first of an outage starts its clock."""
        with self.lock:
            if self.since is None:
                now, began = time.monotonic(), started or time.monotonic()
                self.since, self.since_monotonic = time.time() - (now - began), began
                self.failures = 0
            self.failures += 1
            self.last_error = _cause(error)
            announce = self.failures >= ANNOUNCE_AFTER and not self.announced and \
                not self.expired()
            self.announced = self.announced or announce
        if announce:
            self._say(f"{self.what} unreachable since {self._clock()} ({self.last_error}); "
                      f"waiting up to {_duration(self.outage_s)} for it; training continues")

    def succeeded(self) -> None:
        """Records an answer: an outage ends (said in one line when its start was)."""
        if self.since is None:
            return
        with self.lock:
            down, announced = time.monotonic() - self.since_monotonic, self.announced
            self.since, self.failures, self.announced = None, 0, False
        if announced:
            self._say(f"{self.what} answers again after {_duration(down)}; the records kept "
                      "meanwhile are written in order")

    def expired(self) -> bool:
        """Whether the store has been away longer than the bound."""
        return self.since is not None and (
            time.monotonic() - self.since_monotonic > self.outage_s)

    def pause(self) -> float:
        """Seconds to wait before the next try (never past the bound)."""
        wait = PAUSES_S[min(max(self.failures - 1, 0), len(PAUSES_S) - 1)]
        left = self.since_monotonic + self.outage_s - time.monotonic() if self.since else wait
        return max(0.05, min(wait, left + 0.05))

    def error(self) -> TrackingUnavailable:
        down = time.monotonic() - self.since_monotonic if self.since else 0.0
        return TrackingUnavailable(
            f"{self.what} unreachable since {self._clock()} ({self.last_error}; "
            f"{_duration(down)}, tracking.outage_s={self.outage_s:g})")

    def _clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.since or time.time()))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")


_health: dict[str, Health] = {}
_health_lock = threading.Lock()


def health(uri: str) -> Health:
    """The store's health in this process (one per tracking URI)."""
    with _health_lock:
        if uri not in _health:
            _health[uri] = Health(uri)
        return _health[uri]


_http_configured = False


def configure(uri: str, outage_s: float | None, label: str = "") -> Health:
    """Sets how long this process waits for the store at `uri`, the prefix of its lines, and
    MLflow's HTTP settings from the bound (read by MLflow on every request)."""
    global _http_configured
    state = health(uri)
    state.outage_s = float(outage_s if outage_s is not None else DEFAULT_OUTAGE_S)
    state.label = label
    os.environ.update(http_settings(state.outage_s))
    _http_configured = True
    return state


def configure_http() -> None:
    """MLflow's HTTP settings from the default bound, unless a job of this process set them."""
    if not _http_configured:
        os.environ.update(http_settings(DEFAULT_OUTAGE_S))


def fault(error: BaseException, state: Health, path=None,
          started: float | None = None) -> BaseException | None:
    """What a failed call to the store (its file: `path`, None for a server) means for its
    caller: a DiskFull to raise at once, a TrackingUnavailable once the bound has passed, None
    to try again (the store is away, the failure recorded), or `error` itself (not a fault of the
    infrastructure)."""
    kind = classify(error)
    if kind == FULL:
        if isinstance(error, DiskFull):
            return error
        if path is None:
            return DiskFull(f"disk full at the {state.what}: {_cause(error)}; free "
                            "space there, then rerun the same command")
        return files.disk_full_error(path)
    if kind == AWAY:
        state.failed(error, started)
        return state.error() if state.expired() else None
    return error
