"""The MLflow UI, opened where a sweep's answer is: the model-training view, each job's trials
together under it, the accuracy columns on.

How MLflow 3.17's UI picks its view: no experiment tag decides it. The view is a *workflow type*,
read from the URL (`?workflowType=machine_learning`) or else from the browser's localStorage
(`mlflow.workflowType_v1`), whose initial value is hard-wired to GenAI in the UI's code; only the
sidebar's "GenAI | Model training" switch writes it. A link with the parameter opens the right
view; entering from the home page or the experiment list uses the stored value. So vggsweep
serves the UI as an MLflow app plugin (`mlflow ui --app-name vggsweep`, `ui_app.py`) whose page
stores "machine_learning" in a browser that has no choice stored yet: from any entry, the
model-training view (a user who picked GenAI in the switch keeps it).

The runs table: an experiment created by vggsweep carries a shared view
(`mlflow.sharedViewState.vggsweep`) that shows the accuracy columns, sorts on the kept validation
accuracy and groups the runs by job (the tag `vggsweep.job`, on a job's run and on each of its
trial runs). MLflow's UI nests child runs under their parent only when the table is not sorted
(or sorted by start time), and a shared view cannot expand a parent; groups keep the sort and
open expanded. The link printed after a sweep opens the view.
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
           "best_val_accuracy", "best_test_accuracy", "margin_runner_up_images",
           "margin_runner_up_p"]
PARAM_COLUMNS = ["activation"]
TAG_COLUMNS = ["model", "data"]
DEFAULT_PORT = 5000
#: The MLflow app plugin (an entry point of group `mlflow.app`) that serves the UI this way.
APP_NAME = "vggsweep"
#: The browser's stored workflow type, and the value that means the model-training view.
WORKFLOW_KEY = "mlflow.workflowType_v1"
TRAINING_WORKFLOW = "machine_learning"


def view_state() -> dict:
    """The runs-table state the shared view restores: the runs grouped by job (each group
    expanded, the job's run and its trials), sorted on the kept validation accuracy."""
    columns = ([f"metrics.`{name}`" for name in COLUMNS]
               + [f"params.`{name}`" for name in PARAM_COLUMNS]
               + [f"tags.`{name}`" for name in TAG_COLUMNS])
    return {
        "selectedColumns": columns,
        "columnOrder": columns,
        "orderByKey": "metrics.`val_accuracy_kept`",
        "orderByAsc": False,
        "searchFilter": "",
        "groupBy": {"aggregateFunction": "max",
                    "groupByKeys": [{"mode": "tag", "groupByData": store.JOB_NAME}]},
        "groupsExpanded": {},
    }


def experiment_tags() -> dict:
    """Tags that make the UI open an experiment as a model-training one, with its columns."""
    envelope = {"name": "vggsweep: trials by job", "createdAt": int(time.time() * 1000),
                "state": json.dumps(view_state())}
    return {store.EXPERIMENT_KIND: store.TRAINING_KIND, VIEW_TAG: json.dumps(envelope)}


def prepare(uri: str, experiment: str) -> str:
    """Creates the store and the experiment if needed, with `experiment_tags`; an experiment
    whose shared view an earlier vggsweep wrote gets this one's. Returns the experiment's id."""
    experiment_id = store.prepare(uri, experiment, experiment_tags())
    mlflow_client = store.client(uri)
    recorded = mlflow_client.get_experiment(experiment_id).tags.get(VIEW_TAG, "")
    try:
        current = json.loads(recorded).get("state") == json.dumps(view_state())
    except (ValueError, AttributeError):
        current = False
    if not current:
        mlflow_client.set_experiment_tag(experiment_id, VIEW_TAG, experiment_tags()[VIEW_TAG])
    return experiment_id


def runs_url(base: str, experiment_id: str) -> str:
    """The UI's runs table of an experiment, in the model-training view, with the shared view."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType={TRAINING_WORKFLOW}&viewStateShareKey={VIEW_KEY}")


def local_base(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def hint(uri: str, experiment: str) -> str:
    """How to open the runs of `experiment` in the UI, in one line."""
    try:
        _, experiment_id = store.open_existing(uri, experiment)
    except Exception:  # noqa: BLE001 - a hint, not a requirement
        experiment_id = "<id>"
    if urlparse(uri).scheme in ("http", "https"):
        return runs_url(uri, experiment_id)
    url = runs_url(local_base(), experiment_id)
    serve = f"python -m vggsweep.ui --tracking-uri {uri}"
    if store.resolve_uri(None) == uri:
        serve = f"make ui (or {serve})"
    return f"{serve}, then open {url}"


def app_installed() -> bool:
    """Whether MLflow finds vggsweep's app plugin (installed with vggsweep: `make install`)."""
    from importlib.metadata import entry_points

    return any(entry.name == APP_NAME for entry in entry_points(group="mlflow.app"))


def links(uri: str, base: str) -> list[str]:
    """One line per experiment of the store: its name and the link to its runs."""
    mlflow_client = store.client(uri)
    experiments = sorted(mlflow_client.search_experiments(), key=lambda e: e.name)
    shown = [e for e in experiments if e.name != "Default" or e.experiment_id != "0"]
    if not shown:
        return ["no experiment yet: run a sweep (make demo)"]
    width = max(len(e.name) for e in shown)
    return [f"{e.name:<{width}}  {runs_url(base, e.experiment_id)}" for e in shown]
