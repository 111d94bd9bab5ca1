"""Files that many processes share: written atomically, guarded by inter-process locks.

A kill or a full disk never leaves half a file: every output and state file is written to a
temporary name in its folder, flushed to disk and renamed over the old one (`atomic_path`,
`atomic_write`, `atomic_write_json`); a write that fails for lack of space leaves the old file as
it was and raises `DiskFull`, one line that names the path and the space needed (`disk_full`).
Processes that share a tuner project take turns through `fcntl` locks on files in it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
from pathlib import Path

from vggsweep.errors import DiskFull

#: What a sweep needs free beside the file it writes: the store's journal, the state files, a
#: kept model. Said in the one line of a full disk, so that a user frees enough at once.
MARGIN_BYTES = 64 * 2**20
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    """The path itself or its nearest folder that exists."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = _existing(path)
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def disk_full_error(path: str | os.PathLike, needed: int = 0) -> DiskFull:
    """The one-line DiskFull for a write to `path` that needed about `needed` bytes."""
    path = Path(path)
    try:
        where = _mount_point(path)
        free = f"{_size(shutil.disk_usage(where).free)} free on {where}"
    except OSError:
        where, free = path.parent, "free space unknown"
    wanted = _size(max(int(needed), 0) + MARGIN_BYTES)
    return DiskFull(f"disk full: cannot write {path} ({free}); free at least {wanted} on "
                    f"{where}, then rerun the same command")


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it came from, says the disk (or a quota) is full."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, DiskFull):
            return True
        if isinstance(error, OSError) and error.errno in _FULL:
            return True
        if any(text in str(error).lower() for text in _FULL_TEXT):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def disk_full(error: BaseException, path: str | os.PathLike, needed: int = 0) -> DiskFull | None:
    """`error` as the DiskFull it means for a write to `path`, or None if it is another error."""
    if isinstance(error, DiskFull):
        return error
    return disk_full_error(path, needed) if is_disk_full(error) else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int = 0):
    """Yields a temporary path beside `path` (same suffix) for any writer (pandas, matplotlib,
    Keras); on success it is flushed to disk and renamed to `path`, else deleted. Raises
    DiskFull (the old file unchanged) when the disk is full."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        full = disk_full(error, path, needed) if isinstance(error, Exception) else None
        if full is not None and full is not error:
            raise full from error
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes `data` (text as UTF-8) atomically to `path`; returns the path."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, needed=len(raw)) as tmp, open(tmp, "wb") as handle:
        handle.write(raw)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj) -> str:
    """Writes JSON atomically, so a kill or a full disk never leaves half a file."""
    text = json.dumps(obj)
    atomic_write(path, text)
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
