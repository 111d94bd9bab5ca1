"""The writes of one process to the tracking store: queued, kept on disk, written in order by one
thread, so that training never waits for the store.

Each record (a batch of metrics, params and tags; a run's status; a run's end) is appended to a
JSON-lines file before it is queued, so a kill or a give-up loses nothing: the next process that
opens the same file (the rerun of the job) writes what it holds first. The writer thread sends
the records one at a time, in order; while the store is away it tries again (the bound and the
lines are `faults.Health`'s), and once the queue is empty the file is emptied. A record written
twice (a kill between its write and the file's emptying) changes nothing: metrics keep their
original timestamps and steps (MLflow keeps one point per key, timestamp, step and value), a param
keeps its value, a tag is set again, a run ends with its original end time. So each record takes
effect exactly once, and run creation, which is not idempotent, is not queued (see
`store.GuardedClient.create_run`).

MLflow's own asynchronous logging is not used: it writes batches concurrently (out of order) and
drops a batch that fails (vggsweep's notes: mlflow.md, C3).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from vggsweep.errors import InfrastructureError
from vggsweep.runtime import files
from vggsweep.tracking import faults, store

#: The room kept beside each outbox while it is open, for a full disk (`_reserve`).
RESERVE_BYTES = 1 << 20


def send(client, record: dict) -> None:
    """Writes one record with `client` (an MlflowClient)."""
    from mlflow.entities import Metric, Param, RunTag

    op, run_id = record["op"], record["run"]
    if op == "batch":
        store.retry(client.log_batch, run_id,
                    metrics=[Metric(k, float(v), int(t), int(s))
                             for k, v, t, s in record.get("metrics", ())],
                    params=[Param(k, str(v)) for k, v in record.get("params", ())],
                    tags=[RunTag(k, str(v)) for k, v in record.get("tags", ())])
    elif op == "status":
        store.retry(client.update_run, run_id, status=record["status"])
    elif op == "end":
        store.retry(client.set_terminated, run_id, record["status"], end_time=record["time"])
    elif op == "untag":
        from mlflow.exceptions import MlflowException

        try:
            store.retry(client.delete_tag, run_id, record["key"])
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":  # deleted already: done
                raise
    else:
        raise ValueError(f"unknown outbox record {op!r}")


def _reserve(path: Path) -> Path | None:
    """A file of `RESERVE_BYTES` beside the outbox, deleted when the disk is full: the room to
    keep the last records and end the runs. None when it cannot be made (no room)."""
    try:
        if not path.is_file() or path.stat().st_size < RESERVE_BYTES:
            with open(path, "wb") as handle:
                os.posix_fallocate(handle.fileno(), 0, RESERVE_BYTES)
        return path
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def read(path: Path) -> list[dict]:
    """The records a file holds (a last line cut by a kill was never queued: skipped)."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


class Outbox:
    """An ordered, persistent queue of store writes and the thread that writes them.

    Args:
        client: an MlflowClient (not guarded: this thread waits and retries on its own).
        uri: the tracking URI (its `faults.Health`: bound, lines).
        path: the JSON-lines file; None keeps the records in memory only.
    """

    def __init__(self, client, uri: str, path: Path | None = None):
        self.client, self.uri, self.path = client, uri, path
        self.health = faults.health(uri)
        self.queue: collections.deque = collections.deque()
        self.condition = threading.Condition()
        self.error: BaseException | None = None  # what stopped the writer
        self.file = None
        self.file_failed = False
        self.stopping = False
        self.reserve = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.queue.extend(read(path))  # an earlier process's records come first
            self.file = open(path, "a", encoding="utf-8")
            self.reserve = _reserve(path.with_suffix(".reserve"))
        self.thread = threading.Thread(target=self._write_all, name="vggsweep-outbox",
                                       daemon=True)
        self.thread.start()

    def adopt(self, other: Path) -> int:
        """Takes over the records another process left in `other` (a worker's), after ours;
        returns how many."""
        records = read(other)
        for record in records:
            self.put(record)
        if self.file is not None:
            os.fsync(self.file.fileno())
        other.unlink(missing_ok=True)
        return len(records)

    def put(self, record: dict) -> None:
        """Queues a record and appends it to the file; never waits for the store and never
        raises (a file that cannot grow, e.g. on a full disk, leaves the record in memory)."""
        with self.condition:
            if self.file is not None and not self.file_failed:
                try:
                    self.file.write(json.dumps(record) + "\n")
                    self.file.flush()
                except (OSError, ValueError):
                    self.file_failed = True
            self.queue.append(record)
            self.condition.notify_all()

    def check(self) -> None:
        """Raises what stopped the writer (a full disk), or TrackingUnavailable once the store
        has been away longer than the bound."""
        if self.error is not None:
            raise self.error
        if self.health.expired():
            raise self.health.error()

    def pending(self) -> int:
        return len(self.queue)

    def kept(self) -> str:
        """Where the records left are, in words (for the line that ends a job)."""
        if self.path is None or self.file_failed:
            return "could not be kept on disk"
        return f"kept in {self.path}, written when the same command is rerun"

    def _file_usable(self) -> bool:
        return self.file is not None and not self.file.closed and not self.file_failed

    def flush(self) -> None:
        """Waits until every record is written; raises what stopped the writer."""
        with self.condition:
            while self.queue and self.error is None and self.thread.is_alive():
                self.condition.wait(timeout=1.0)
        if self.error is not None:
            raise self.error
        if self.queue:
            raise RuntimeError("the outbox writer ended with records left")

    def close(self, wait: bool = True, wait_s: float | None = None) -> int:
        """Stops the writer, after writing every record (`wait`; at most `wait_s`, if given);
        returns how many records are left, kept in the file for the next process."""
        if wait and self.error is None:
            with self.condition:
                if wait_s is None:
                    while self.queue and self.error is None and self.thread.is_alive():
                        self.condition.wait(timeout=1.0)
                else:
                    self.condition.wait_for(lambda: not self.queue or self.error is not None,
                                            timeout=wait_s)
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        self.thread.join(timeout=5.0)
        if self.queue and not self.thread.is_alive() and (
                self.file_failed or files.is_disk_full(self.error)):
            self._rescue()
        left = len(self.queue)
        if self.file is not None:
            with self.condition:
                with contextlib.suppress(OSError, ValueError):
                    self.file.flush()
                    os.fsync(self.file.fileno())
                with contextlib.suppress(OSError):
                    self.file.close()
            if left == 0:
                with contextlib.suppress(OSError):
                    self.path.unlink(missing_ok=True)
        if self.reserve is not None:
            with contextlib.suppress(OSError):
                self.reserve.unlink(missing_ok=True)
            self.reserve = None
        return left

    def _rescue(self) -> None:
        """After a full disk: frees the reserve, keeps the queued records in the file, then
        tries once more to write them to the store (the ends of the runs, with their cause), so
        that no run stays RUNNING where the store can still be written."""
        if self.reserve is not None:
            with contextlib.suppress(OSError):
                self.reserve.unlink()
            self.reserve = None
        if self.file is not None:
            try:
                self.file.seek(0)
                self.file.truncate(0)
                self.file.write("".join(json.dumps(record) + "\n" for record in self.queue))
                self.file.flush()
                self.file_failed = False
            except (OSError, ValueError):
                self.file_failed = True
        while self.queue:
            try:
                send(self.client, self.queue[0])
            except Exception:  # noqa: BLE001 - still full: the records stay in the file
                return
            self._done()

    # ----------------------------------------------------------------------------------------
    # The writer thread.

    def _write_all(self) -> None:
        while True:
            with self.condition:
                self.condition.wait_for(lambda: self.queue or self.stopping)
                if self.stopping and (not self.queue or self.error is not None):
                    return
                record = self.queue[0]
            started = time.monotonic()
            try:
                send(self.client, record)
            except Exception as error:  # noqa: BLE001 - every failure is sorted below
                if not self._failed(record, error, started):
                    return
                continue
            self.health.succeeded()
            self._done()

    def _failed(self, record: dict, error: Exception, started: float) -> bool:
        """Handles a failed write; returns whether the writer goes on."""
        problem = faults.fault(error, self.health, store.local_store_path(self.uri), started)
        if problem is error:  # the store answered no: this record can never be written
            print(f"warning: a tracking record for run {record.get('run')} was refused and "
                  f"dropped: {' '.join(str(error).split())[:300]}", file=sys.stderr, flush=True)
            self._done()
            return True
        if isinstance(problem, InfrastructureError):
            with self.condition:
                self.error = problem
                self.condition.notify_all()
            return False
        with self.condition:  # away: try again after a pause (close() ends the pause)
            self.condition.wait_for(lambda: self.stopping, timeout=self.health.pause())
            return not self.stopping

    def _done(self) -> None:
        with self.condition:
            self.queue.popleft()
            if not self.queue and self._file_usable():
                with contextlib.suppress(OSError, ValueError):
                    self.file.truncate(0)
            self.condition.notify_all()
