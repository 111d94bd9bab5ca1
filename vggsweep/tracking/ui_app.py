"""MLflow's server app with one change: its page opens the model-training view by default.

Registered as the MLflow app plugin `vggsweep` (entry point group `mlflow.app`, pyproject.toml),
so `mlflow ui --app-name vggsweep` (what `python -m vggsweep.ui` and `make ui` run) serves MLflow's
own app, security middleware included, and only the UI's page (`/`) changes: a script at the top
of it stores the model-training workflow type in the browser when none is stored yet
(`vggsweep.tracking.ui` explains why that is the one lever MLflow 3.17 leaves). Loaded by uvicorn
in the server's processes, never imported by vggsweep itself.
"""

from __future__ import annotations

import json

from mlflow.server.fastapi_app import app as mlflow_app

from vggsweep.tracking import internals
from vggsweep.tracking.ui import TRAINING_WORKFLOW, WORKFLOW_KEY

#: Runs before the UI's code (deferred), so the UI reads the stored value on its first render.
SCRIPT = ("<script>try{if(window.localStorage.getItem(%s)===null)"
          "window.localStorage.setItem(%s,%s)}catch(error){}</script>"
          % (json.dumps(WORKFLOW_KEY), json.dumps(WORKFLOW_KEY),
             json.dumps(json.dumps(TRAINING_WORKFLOW)))).encode()
PAGE_PATHS = {internals.ui_page_path(), internals.ui_page_path().rstrip("/") or "/"}
#: Asked for without them, MLflow sends the page itself (never "304: use the one you have",
#: which may be a page without the script).
CONDITIONAL = (b"if-none-match", b"if-modified-since")


class TrainingViewFirst:
    """ASGI middleware: MLflow's answer to `GET /` with `SCRIPT` added to its <head>; every
    other request goes to MLflow's app untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in PAGE_PATHS:
            await self.app(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                      if k.lower() not in CONDITIONAL]}
        start, body = {}, []

        async def held(message):  # the page is small: hold it, add the script, send it
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await _send_page(send, start, b"".join(body))

        await self.app(scope, receive, held)


async def _send_page(send, start: dict, page: bytes) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    is_html = any(k.lower() == b"content-type" and b"text/html" in v for k, v in headers)
    if start.get("status") == 200 and is_html and b"<head>" in page:
        page = page.replace(b"<head>", b"<head>" + SCRIPT, 1)
        # The page changed: no cache may keep MLflow's (or answer 304 for it).
        headers = [(k, v) for k, v in headers if k.lower() not in (b"etag", b"last-modified")]
    headers.append((b"content-length", str(len(page)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": page})


app = TrainingViewFirst(mlflow_app)
