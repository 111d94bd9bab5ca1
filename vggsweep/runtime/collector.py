"""Python's garbage collector around start-up: paused while the heavy libraries import, then
everything they built moved out of the collector's sight.

Importing TensorFlow, keras-tuner and MLflow builds over half a million long-lived objects. The
collector's full passes grow with the heap: measured here, ten of them ran during a job's
imports (1.7 s), and every later full pass (Keras' `clear_session` runs one before each trial)
cost 0.35 s. The imports create almost no garbage, so the collector waits until they are done
(`paused`), and `settle` then freezes what exists (`gc.freeze`: the permanent generation, never
scanned again) and turns the collector back on for the training, whose garbage it collects as
usual. Explicit `gc.collect()` calls work while it is paused.
"""

from __future__ import annotations

import contextlib
import gc

_frozen = False


def pause() -> None:
    """No automatic collection until `settle` (a process's entry point: the process ends)."""
    gc.disable()


@contextlib.contextmanager
def paused():
    """No automatic collection inside (unless `settle` ends the pause); then as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle() -> None:
    """The process's libraries are imported: freeze the objects alive now (once per process:
    a long-lived process such as a test run freezes only its first start-up) and collect again."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
    gc.enable()
