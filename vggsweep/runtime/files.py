"""Files that many processes share: written atomically, guarded by inter-process locks.

A kill never leaves half a file (`atomic_write_json`: a temporary file, fsync, a rename), and
processes that share a tuner project take turns through `fcntl` locks on files in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path


def atomic_write_json(path: str, obj) -> str:
    """Writes JSON through a temporary file and a rename, so a kill never leaves half a file."""
    text = json.dumps(obj)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return text


@contextlib.contextmanager
def project_lock(project_dir: Path, name: str = ".best.lock"):
    """An inter-process lock in the project (workers keep the best model one at a time)."""
    project_dir.mkdir(parents=True, exist_ok=True)
    with open(project_dir / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_running(project: Path | None) -> bool:
    """Whether a process holds the job's lock now (it is running the job)."""
    if project is None or not (project / ".job.lock").is_file():
        return False
    with open(project / ".job.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def job_lock(project: Path, name: str):
    """One process at a time runs a job: another one running the same job waits, then resumes
    it (and finds it done). Workers of the job take no lock: they serve its process."""
    project.mkdir(parents=True, exist_ok=True)
    with open(project / ".job.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[{name}] another process is running this job; waiting for it to end",
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
