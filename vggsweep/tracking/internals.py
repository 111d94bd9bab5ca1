"""Every MLflow internal vggsweep relies on, behind this one door (the rest is MLflow's public
client API). `NAMES` lists them; `tests/test_internals.py` checks that the installed MLflow still
has each, so an upgrade that moves one fails there, by name.
"""

from __future__ import annotations

import contextlib

#: (module, attribute) of every MLflow internal used below.
NAMES = (("mlflow.utils.environment", "warn_dependency_requirement_mismatches"),
         ("mlflow.server.handlers", "_add_static_prefix"))


def ui_page_path() -> str:
    """The path MLflow's server answers its UI page at: `/`, under `--static-prefix` if any."""
    from mlflow.server import handlers

    return handlers._add_static_prefix("/")  # noqa: SLF001 - the door to MLflow's internals


def requirements_already_checked():
    """Skips MLflow's check that this environment satisfies a model's requirements while the
    model is saved. vggsweep's requirements are this environment's own versions, so the check
    can find no mismatch, and it costs about 1 s: it maps every installed distribution to its
    modules. Where MLflow moves the check, nothing is skipped (and the test names it)."""
    from unittest import mock

    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    if not hasattr(environment, name):
        return contextlib.nullcontext()
    return mock.patch.object(environment, name, lambda _requirements: None)
