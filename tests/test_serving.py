"""The best model as MLflow serves it: `mlflow.pyfunc.load_model(uri).predict(images)` and
`mlflow models serve` answer with class probabilities (the softmax at the model's temperature)
and the predicted class, under named outputs that the signature declares, and print nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import client
from webdriver import free_port, wait_until_served

from vggsweep import data
from vggsweep.tracking.store import LOGGED_MODEL


@pytest.fixture(scope="module")
def served_model(finished, store):
    """The finished job's logged model: its URI, some test images and what Keras makes of them."""
    import keras

    parent = client(store).get_run(finished["result"].parent_run_id)
    uri = parent.data.tags[LOGGED_MODEL]
    splits = data.load(finished["cfg"].data)
    images = np.asarray(splits.x_test[:20], dtype=np.float32)
    [kept] = (finished["project"] / "kept").glob("trial_*.keras")
    logits = keras.saving.load_model(kept, safe_mode=True)(images, training=False)
    logits = np.asarray(logits, dtype=np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"uri": uri, "images": images,
            "probabilities": expected / expected.sum(1, keepdims=True)}


def _environment(tracking_uri: str) -> dict:
    """What a user's shell needs for MLflow's serving commands: the venv's bin on PATH (MLflow
    runs a bare `uvicorn`) and the store that holds `models:/` URIs."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user has it: nothing set
    return env


def _check_answer(answer: dict, expected: np.ndarray) -> None:
    probabilities = np.asarray(answer["probabilities"], dtype=np.float64)
    assert probabilities.shape == expected.shape == (20, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(probabilities, expected, atol=1e-5)
    assert list(answer["class"]) == list(expected.argmax(axis=1))


def test_the_signature_names_probabilities_and_class(served_model, store):
    import mlflow

    mlflow.set_tracking_uri(store)
    info = mlflow.models.get_model_info(served_model["uri"])
    assert list(info.flavors) == ["python_function"]
    outputs = info.signature.outputs.to_dict()
    assert [(o["name"], o["tensor-spec"]["dtype"], list(o["tensor-spec"]["shape"]))
            for o in outputs] == [("probabilities", "float32", [-1, 10]),
                                  ("class", "int64", [-1])]
    assert info.signature.inputs.to_dict()[0]["name"] == "image"
    assert info.signature.params.to_dict()[0]["name"] == "batch_size"


@pytest.mark.subprocess
def test_pyfunc_predict_answers_like_a_classifier_and_prints_nothing(served_model, store,
                                                                     tmp_path):
    np.save(tmp_path / "images.npy", served_model["images"])
    code = (
        "import json, sys, numpy as np, mlflow\n"
        f"model = mlflow.pyfunc.load_model({served_model['uri']!r})\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r})\n"
        "answers = [model.predict(images) for _ in range(3)]\n"
        "json.dump({k: v.tolist() for k, v in answers[-1].items()}, "
        f"open({str(tmp_path / 'answer.json')!r}, 'w'))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_environment(store),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stdout, result.stderr) == ("", "")  # no bar, no warning, no TF notes
    _check_answer(json.loads((tmp_path / "answer.json").read_text()),
                  served_model["probabilities"])


@pytest.mark.subprocess
def test_mlflow_models_serve_answers_over_http(served_model, store, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
         served_model["uri"], "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=_environment(store), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True)  # it starts uvicorn
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_served(f"{base}/ping", server, 240, "mlflow models serve")
        body = json.dumps({"inputs": {"image": served_model["images"].tolist()}}).encode()
        request = urllib.request.Request(f"{base}/invocations", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the CLI and the uvicorn it started
        server.wait(timeout=30)
    _check_answer(answer["predictions"], served_model["probabilities"])


def test_the_served_model_hides_the_same_notes_as_vggsweep():
    """The model's code cannot import vggsweep (it travels alone): its copy of the benign
    TensorFlow notes must stay vggsweep's."""
    import ast

    from vggsweep.runtime import quiet
    from vggsweep.tracking import logged_model

    tree = ast.parse(logged_model.CODE.read_text())
    [pattern] = [ast.literal_eval(node.value.args[0]) for node in tree.body
                 if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "BENIGN"]
    assert pattern == quiet.BENIGN.pattern
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert "vggsweep" not in imported and {"mlflow", "numpy", "keras"} <= imported


def test_the_leaderboard_names_the_model_on_the_best_trials_row(served_model, finished, store):
    from vggsweep.tracking import results

    trials = results.load_trials(store, finished["experiment"])
    named = trials[trials["logged_model"].notna()]
    assert list(named["logged_model"]) == [served_model["uri"]]
    assert named["rank"].iloc[0] == 1  # the job's best trial, the one whose model was logged
