"""The MLflow UI, opened where a sweep's answer is: the model-training view, metric columns on.

MLflow 3's UI opens experiments in its GenAI view unless told otherwise (`workflowType`), and its
runs table hides every metric column until a user picks them. An experiment created by vggsweep
carries a shared view (`mlflow.sharedViewState.vggsweep`) that selects the columns, sorts on the
kept validation accuracy, and the link printed after a sweep opens it.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlparse

from vggsweep.tracking import store

VIEW_KEY = "vggsweep"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
#: The runs table's columns: what a sweep is judged on.
COLUMNS = ["val_accuracy_kept", "test_accuracy", "train_time_s", "param_count", "epochs_run",
           "best_val_accuracy", "best_test_accuracy"]
PARAM_COLUMNS = ["activation"]
TAG_COLUMNS = ["model", "data"]
DEFAULT_PORT = 5000


def view_state() -> dict:
    """The runs-table state the shared view restores."""
    columns = ([f"metrics.`{name}`" for name in COLUMNS]
               + [f"params.`{name}`" for name in PARAM_COLUMNS]
               + [f"tags.`{name}`" for name in TAG_COLUMNS])
    return {
        "selectedColumns": columns,
        "columnOrder": columns,
        "orderByKey": "metrics.`val_accuracy_kept`",
        "orderByAsc": False,
        "searchFilter": "",
        "runsExpanded": {},
    }


def experiment_tags() -> dict:
    """Tags that make the UI open an experiment as a model-training one, with its columns."""
    envelope = {"name": "vggsweep sweep", "createdAt": int(time.time() * 1000),
                "state": json.dumps(view_state())}
    return {store.EXPERIMENT_KIND: store.TRAINING_KIND, VIEW_TAG: json.dumps(envelope)}


def runs_url(base: str, experiment_id: str) -> str:
    """The UI's runs table of an experiment, in the model-training view, with the shared view."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def hint(uri: str, experiment: str) -> str:
    """How to open the runs of `experiment` in the UI, in one line."""
    try:
        _, experiment_id = store.open_existing(uri, experiment)
    except Exception:  # noqa: BLE001 - a hint, not a requirement
        experiment_id = "<id>"
    if urlparse(uri).scheme in ("http", "https"):
        return runs_url(uri, experiment_id)
    url = runs_url(f"http://127.0.0.1:{DEFAULT_PORT}", experiment_id)
    return f"make ui (or mlflow ui --backend-store-uri {uri}), then open {url}"
