"""The served best model: an MLflow "model from code" that answers like a classifier.

MLflow copies this file into every logged model (`logged_model.log`) and runs it when the model is
loaded, so it imports neither vggsweep nor anything but MLflow, NumPy and Keras: a served model
needs only its own requirements. `predict` returns the class probabilities (a softmax of the Keras
model's output, which is logits / temperature: the softmax at the model's temperature) under
`probabilities` and the predicted class under `class`, and prints nothing: the Keras model is
called directly in chunks, not through `Model.predict` (a progress bar per call, and Keras'
input-structure warning). The Keras model travels as the artifact `keras_model` (a .keras file)
and is loaded with `safe_mode=True`. Never imported by vggsweep.
"""

import contextlib
import os
import re
import sys
import tempfile

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

BATCH_SIZE = 256
#: What TensorFlow's native code prints when it is imported on a CPU-only machine, and is no
#: problem (the same as `vggsweep.runtime.quiet.BENIGN`; a test keeps them equal).
BENIGN = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations"
    r"|cudart_stub\.cc|cuda_platform\.cc:\d+\] failed call to cuInit|cuda_executor|"
    r"cpu_feature_guard|To enable the following instructions|rebuild TensorFlow with the "
    r"appropriate compiler flags|computation_placer|TF-TRT Warning|Unable to register cu")


@contextlib.contextmanager
def _benign_stderr_hidden():
    """Hides the benign notes native libraries print on stderr meanwhile; anything else is
    printed after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines()
                    if line.strip() and not BENIGN.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


class KerasClassifier(PythonModel):
    """Images in (n, height, width, channels), floats 0..1; probabilities and classes out."""

    def load_context(self, context):
        with _benign_stderr_hidden():  # importing TensorFlow prints its notes on the device
            import keras

            self.model = keras.saving.load_model(context.artifacts["keras_model"],
                                                 compile=False, safe_mode=True)

    # The ndarray hint tells MLflow not to validate by type hints (and not to warn that there
    # are none); the model's signature is what MLflow enforces. A single named input arrives as
    # {"image": array}.
    def predict(self, context, model_input: np.ndarray, params=None):
        import keras

        images = model_input["image"] if isinstance(model_input, dict) else model_input
        images = np.asarray(images, dtype=np.float32)
        batch_size = int((params or {}).get("batch_size") or BATCH_SIZE)
        chunks = [keras.ops.convert_to_numpy(self.model(images[start:start + batch_size],
                                                        training=False))
                  for start in range(0, len(images), batch_size)]
        classes = int(self.model.output_shape[-1])
        logits = (np.concatenate(chunks) if chunks else np.zeros((0, classes))).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))  # a stable softmax
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        return {"probabilities": probabilities.astype(np.float32),
                "class": probabilities.argmax(axis=-1).astype(np.int64)}


mlflow.models.set_model(KerasClassifier())
