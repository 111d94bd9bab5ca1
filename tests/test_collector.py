"""The garbage collector waits during start-up's imports, then sees only what came after."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess  # every test here starts processes


def test_paused_restores_the_collector_and_settle_freezes_once():
    script = """
import gc
from vggsweep.runtime import collector
with collector.paused():
    assert not gc.isenabled()
assert gc.isenabled()
collector.pause()
assert not gc.isenabled()
big = [[i] for i in range(50000)]
collector.settle()
assert gc.isenabled() and gc.get_freeze_count() >= 50000
frozen = gc.get_freeze_count()
more = [[i] for i in range(1000)]
collector.settle()  # later trials: the collector stays on, nothing more is frozen
assert gc.get_freeze_count() == frozen
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
    assert gc.isenabled()
