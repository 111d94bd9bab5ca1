"""The job's best model as an MLflow logged model: saved with its signature, input example,
requirements and metrics, on the job's parent run.
"""

from __future__ import annotations

import os
import time

from vggsweep.tracking import internals


def log(client, experiment_id: str, parent_id: str, model, example, *, step: int = 0,
        metrics: dict | None = None, tags: dict | None = None) -> str:
    """Logs `model` as the job's MLflow logged model on its parent run (signature, input
    example, the job's params, `metrics`); returns its URI (`models:/<id>`), loadable with
    `mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True})`."""
    import tempfile

    import mlflow.keras
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    params = {k: v[:6000] for k, v in client.get_run(parent_id).data.params.items()}
    logged = client.create_logged_model(experiment_id, name="best_model",
                                        source_run_id=parent_id, params=params, tags=tags,
                                        model_type="keras image classifier")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "model")
            # The folder exists before the input example is written into it: MLflow 3
            # writes the example first and fails otherwise (mlflow/mlflow#16183).
            os.makedirs(local)
            with internals.requirements_already_checked():
                mlflow.keras.save_model(
                    model, local, signature=_signature(model), input_example=example,
                    pip_requirements=_requirements(),
                    mlflow_model=Model(artifact_path=logged.artifact_location,
                                       model_uuid=logged.model_id, run_id=parent_id,
                                       model_id=logged.model_id))
            client.log_model_artifacts(logged.model_id, local)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(parent_id, [LoggedModelOutput(logged.model_id, step)])
    if metrics:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(parent_id, metrics=[
            Metric(k, float(v), now, step, model_id=logged.model_id)
            for k, v in metrics.items()])
    return logged.model_uri


def _signature(model):
    """The model's signature from its shapes (a prediction would trace the model again)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *model.input_shape[1:]), "image")])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *model.output_shape[1:]))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    """The pip requirements of the logged model, read from this environment (no subprocess)."""
    from importlib import metadata

    packages = ["keras", os.environ.get("KERAS_BACKEND", "tensorflow"), "numpy"]
    found = []
    for name in packages:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found
