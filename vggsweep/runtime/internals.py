"""Every standard-library internal vggsweep relies on, behind this one door. `NAMES` lists them;
`tests/test_internals.py` checks that this Python still has each.
"""

from __future__ import annotations

#: (module, attribute) of every internal used below.
NAMES = (("multiprocessing.util", "_exit_function"),)


def run_multiprocessing_exit_hooks() -> None:
    """What multiprocessing does at interpreter exit (its finalizers: semaphores, temporary
    folders), for a process that leaves with `os._exit`, which skips it."""
    import multiprocessing.util

    multiprocessing.util._exit_function()  # noqa: SLF001 - the door
