"""Shared files (vggsweep.runtime.files): JSON written atomically, whatever fails."""

from __future__ import annotations

import json

import pytest

from vggsweep.errors import DiskFull
from vggsweep.runtime import files
from vggsweep.search import oracles


def test_atomic_write_json_writes_a_complete_file_and_no_temp_file(tmp_path):
    path = tmp_path / "deep" / "state.json"
    obj = {"trials": list(range(1000)), "name": "x" * 1000}
    text = files.atomic_write_json(str(path), obj)
    assert json.loads(path.read_text()) == obj == json.loads(text)
    files.atomic_write_json(str(path), {"replaced": True})
    assert json.loads(path.read_text()) == {"replaced": True}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize("failure", ["fsync", "unserializable"])
def test_atomic_write_json_failure_keeps_the_old_file_and_no_temp_file(failure, tmp_path,
                                                                       monkeypatch):
    path = tmp_path / "state.json"
    files.atomic_write_json(str(path), {"version": 1})
    obj = {"version": 2}
    if failure == "fsync":
        def broken_fsync(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(oracles.os, "fsync", broken_fsync)
    else:
        obj = {"version": object()}
    # A full disk says so in one line (DiskFull), the old file unchanged.
    with pytest.raises(DiskFull if failure == "fsync" else TypeError):
        files.atomic_write_json(str(path), obj)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "a temporary file was left"
