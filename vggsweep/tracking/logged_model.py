"""The job's best model as an MLflow logged model that answers like a classifier.

Logged on the job's parent run with its signature, input example, requirements and metrics, as a
Python model "from code" (`classifier_model.py`, copied into the model) around the Keras model
(`artifacts/classifier.keras`): `mlflow.pyfunc.load_model(uri).predict(images)` and
`mlflow models serve` return `{"probabilities": (n, K) float32, "class": (n,) int64}` and print
nothing. The Keras model itself: `mlflow.pyfunc.load_model(uri).unwrap_python_model().model`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vggsweep.tracking import internals, store

#: The model's code, copied into every logged model (it imports neither vggsweep nor the rest).
CODE = Path(__file__).with_name("classifier_model.py")
KERAS_FILE = "classifier.keras"
DEFAULT_BATCH_SIZE = 256


def log(client, experiment_id: str, parent_id: str, model, example, *, step: int = 0,
        metrics: dict | None = None, tags: dict | None = None) -> str:
    """Logs the Keras classifier `model` as the job's MLflow logged model on its parent run
    (signature, input example, the job's params, `metrics`, the logged model's `tags`), tags the
    run with its URI (`vggsweep.logged_model`) and returns it (`models:/<id>`)."""
    import tempfile

    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    params = {k: v[:6000] for k, v in client.get_run(parent_id).data.params.items()}
    logged = client.create_logged_model(experiment_id, name="best_model",
                                        source_run_id=parent_id, params=params, tags=tags,
                                        model_type="keras image classifier")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            keras_file = os.path.join(tmp, KERAS_FILE)
            model.save(keras_file)
            local = os.path.join(tmp, "model")
            # The folder exists before the input example is written into it: MLflow 3
            # writes the example first and fails otherwise (mlflow/mlflow#16183).
            os.makedirs(local)
            with internals.requirements_already_checked():
                mlflow.pyfunc.save_model(
                    local, python_model=str(CODE), artifacts={"keras_model": keras_file},
                    signature=signature(model.input_shape, model.output_shape),
                    input_example=example, pip_requirements=_requirements(),
                    mlflow_model=Model(artifact_path=logged.artifact_location,
                                       model_uuid=logged.model_id, run_id=parent_id,
                                       model_id=logged.model_id))
            client.log_model_artifacts(logged.model_id, local)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(parent_id, [LoggedModelOutput(logged.model_id, step)])
    client.set_tag(parent_id, store.LOGGED_MODEL, logged.model_uri)
    if metrics:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(parent_id, metrics=[
            Metric(k, float(v), now, step, model_id=logged.model_id)
            for k, v in metrics.items()])
    return logged.model_uri


def signature(input_shape, output_shape):
    """Images in; class probabilities and the predicted class out; a `batch_size` parameter
    (images per forward pass)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    classes = output_shape[-1]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape[1:]), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes), "probabilities"),
                        TensorSpec(np.dtype(np.int64), (-1,), "class")]),
        params=ParamSchema([ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE)]))


def _requirements() -> list[str]:
    """The pip requirements of the logged model, read from this environment (no subprocess)."""
    from importlib import metadata

    packages = ["mlflow", "keras", os.environ.get("KERAS_BACKEND", "tensorflow"), "numpy"]
    found = []
    for name in packages:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found
