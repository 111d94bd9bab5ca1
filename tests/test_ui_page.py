"""The UI page vggsweep's MLflow app serves (vggsweep.tracking.ui_app): MLflow's own answer with
one script in front that stores the model-training view when the browser has no choice stored;
every other request untouched. (tests/test_ui.py checks it in Chromium.)"""

from __future__ import annotations

import asyncio
import json

from vggsweep.tracking import ui

PAGE = b'<!doctype html><html><head><meta charset="utf-8"/></head><body></body></html>'


def _serve(path: str, method: str = "GET", headers=()) -> tuple[dict, bytes, list]:
    """Runs one request through the middleware around a stand-in for MLflow's app."""
    from vggsweep.tracking.ui_app import TrainingViewFirst

    seen = []

    async def mlflow_app(scope, receive, send):
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(PAGE)).encode()), (b"etag", b'"abc"')]})
        await send({"type": "http.response.body", "body": PAGE[:20], "more_body": True})
        await send({"type": "http.response.body", "body": PAGE[20:]})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    asyncio.run(TrainingViewFirst(mlflow_app)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, body, seen


def test_the_page_stores_the_training_view_unless_the_browser_chose():
    start, body, seen = _serve("/", headers=[(b"if-none-match", b'"abc"'), (b"host", b"x")])
    script = (f"<script>try{{if(window.localStorage.getItem({json.dumps(ui.WORKFLOW_KEY)})"
              f"===null)").encode()
    assert body.startswith(b'<!doctype html><html><head>' + script)
    assert b'setItem("mlflow.workflowType_v1","\\"machine_learning\\"")' in body
    assert body.endswith(PAGE[len(b"<!doctype html><html><head>"):])
    headers = dict(start["headers"])
    assert headers[b"content-length"] == str(len(body)).encode() and b"etag" not in headers
    assert seen[0]["headers"] == [(b"host", b"x")]  # MLflow always sends the page itself


def test_every_other_request_is_mlflows():
    for path, method in (("/static-files/x.js", "GET"), ("/", "POST"), ("/ajax-api/2.0/x", "GET")):
        _, body, _ = _serve(path, method)
        assert body == PAGE


def test_the_shared_view_groups_each_jobs_runs_and_keeps_the_accuracy_sort():
    state = ui.view_state()
    assert state["orderByKey"] == "metrics.`val_accuracy_kept`" and not state["orderByAsc"]
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "vggsweep.job"}]
    assert "runsExpanded" not in state  # a shared view cannot expand rows (MLflow drops it)
    assert {"metrics.`val_accuracy_kept`", "metrics.`test_accuracy`"} <= set(
        state["selectedColumns"])
    envelope = json.loads(ui.experiment_tags()[ui.VIEW_TAG])
    assert json.loads(envelope["state"]) == state and len(ui.experiment_tags()[ui.VIEW_TAG]) < 20000
    assert ui.app_installed()  # `make install` registers the app plugin with MLflow


def test_an_experiment_an_earlier_vggsweep_made_gets_the_current_view(tmp_path):
    from vggsweep.tracking import store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = json.dumps({"name": "vggsweep sweep", "createdAt": 1, "state": json.dumps(
        {"orderByKey": "metrics.`val_accuracy_kept`", "runsExpanded": {}})})
    experiment_id = store.prepare(uri, "old", {ui.VIEW_TAG: old})
    assert ui.prepare(uri, "old") == experiment_id
    tags = store.client(uri).get_experiment(experiment_id).tags
    assert json.loads(json.loads(tags[ui.VIEW_TAG])["state"]) == ui.view_state()
    assert tags["mlflow.experimentKind"] == "custom_model_development"
