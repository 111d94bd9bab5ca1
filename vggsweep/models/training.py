"""Train one configuration: build, compile, fit, evaluate. The only training path there is.

`train_one` serves the tuner's trials, `confidence`'s retraining and the benchmarks alike; it knows
nothing of tuners or tracking (per-epoch work comes in as Keras callbacks; one that stops the
training says why in its `stopped_by` attribute). The model outputs
logits divided by the softmax temperature; the loss is computed from them (`from_logits=True`),
which is numerically stabler than a softmax followed by a log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from vggsweep import models
from vggsweep.data import pipelines
from vggsweep.errors import NonFiniteLoss
from vggsweep.models.optimizers import build_optimizer
from vggsweep.runtime import collector

__all__ = ["FitResult", "NonFiniteLoss", "Trained", "classification_metrics", "compile_model",
           "evaluate", "fit", "steps_per_epoch", "train_one"]


def steps_per_epoch(splits, batch_size: int) -> int:
    return math.ceil(len(splits.y_train) / batch_size)


@dataclass
class FitResult:
    history: dict
    epochs_run: int
    best_epoch: int  # 1-based, counting from the first epoch of the whole run
    train_time_s: float
    images_per_s: float
    stopped_by: str | None = None  # why the fit ended before its last epoch (pruned, ...)


@dataclass
class Trained:
    """A trained configuration and its measures."""

    model: object
    fit: FitResult
    val_accuracy: float  # of the kept model (the best epoch's weights)
    test: dict = field(default_factory=dict)  # test_accuracy, test_nll, test_ece, test_loss
    test_predictions: np.ndarray | None = None


def compile_model(model, optimizer_params: dict, steps: int | None = None,
                  epochs: int | None = None, *, jit_compile="auto",
                  steps_per_execution: int = 1) -> None:
    """Compiles with the configured optimizer, a from-logits cross-entropy and accuracy.

    `steps` (per epoch) and `epochs` size the learning-rate schedules (per-epoch decay, cosine).
    """
    total = steps * epochs if steps and epochs else None
    optimizer_params = {**optimizer_params, "steps_per_epoch": steps, "total_steps": total}
    model.compile(
        optimizer=build_optimizer(**optimizer_params),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


class EpochLine(keras.callbacks.Callback):
    """Prints one line per epoch (verbose >= 1), readable in a terminal and in a CI log."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(
            f"    epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}"
            f"  accuracy {logs.get('accuracy', float('nan')):.4f}"
            f"  val_accuracy {logs.get('val_accuracy', float('nan')):.4f}"
            f"  ({time.perf_counter() - self.started:.1f}s)",
            flush=True,
        )


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Checks the loss once per epoch (a per-batch check would slow every step)."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if any(not math.isfinite(logs[k]) for k in ("loss", "val_loss") if k in logs):
            self.model.stop_training = True


def _callbacks(epochs: int, patience: int | None, use_ema: bool, extra: Sequence, verbose: int):
    callbacks = [StopOnNonFiniteLoss()]
    if use_ema:
        # Validation then sees the averaged weights, which are also the weights kept at the end.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=False))
    callbacks.append(
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=patience or epochs + 1,
            restore_best_weights=not use_ema, verbose=0,
        )
    )
    if verbose >= 1:
        callbacks.append(EpochLine(epochs))
    return callbacks + list(extra)


def fit(model, splits, *, epochs: int, batch_size: int, patience: int | None = None,
        initial_epoch: int = 0, use_ema: bool = False, callbacks: Sequence = (),
        verbose: int = 0) -> FitResult:
    """Trains on the training split, validating every epoch; keeps the best epoch's weights.

    Raises:
        NonFiniteLoss: when the loss became NaN or infinite.
    """
    start = time.perf_counter()
    history = model.fit(
        **pipelines.training_batches(splits.x_train, splits.y_train, batch_size,
                                       model.steps_per_execution),
        **pipelines.validation_batches(splits.x_val, splits.y_val, batch_size),
        epochs=epochs, initial_epoch=initial_epoch,
        callbacks=_callbacks(epochs, patience, use_ema, callbacks, verbose),
        verbose=2 if verbose >= 2 else 0,
    ).history
    train_time_s = time.perf_counter() - start
    for key in ("loss", "val_loss"):
        bad = next((i for i, v in enumerate(history.get(key, [])) if not math.isfinite(v)), None)
        if bad is not None:
            raise NonFiniteLoss(f"{key} became {history[key][bad]} at epoch "
                                f"{initial_epoch + bad + 1}: training diverged")
    epochs_run = len(history.get("loss", []))
    val = history.get("val_accuracy", [0.0])
    return FitResult(
        history=history,
        epochs_run=epochs_run,
        best_epoch=initial_epoch + int(np.argmax(val)) + 1,
        train_time_s=train_time_s,
        images_per_s=len(splits.y_train) * epochs_run / max(train_time_s, 1e-9),
        stopped_by=next((c.stopped_by for c in callbacks if getattr(c, "stopped_by", None)),
                        None),
    )


def train_one(family: str, model_kwargs: dict, optimizer_kwargs: dict, splits, *,
              image_size: int, epochs: int, batch_size: int, seed: int,
              patience: int | None = None, initial_epoch: int = 0, weights: str | None = None,
              callbacks: Sequence = (), evaluate_test: bool = True, verbose: int = 0,
              compile_options: dict | None = None) -> Trained:
    """Builds, compiles and trains one configuration; measures the kept model.

    Args:
        family, model_kwargs, optimizer_kwargs: the point (`space.point`).
        image_size: the size the model works at.
        epochs: the last epoch to train to (counting from 0, so `initial_epoch` < `epochs`).
        seed: seeds Keras, NumPy and Python for the initial weights and the shuffling.
        weights: a checkpoint to start from (Hyperband's promoted trials).
        callbacks: Keras callbacks of the caller (per-epoch tracking, pruning); one that stops
            the training sets `stopped_by` (why), which `FitResult.stopped_by` reports.
        evaluate_test: measure the test split once (selection never reads it).
        compile_options: `compile_model` keywords (XLA, steps per execution).

    Raises:
        NonFiniteLoss: the training diverged.
        ModelConfigError: the point cannot be built.
    """
    collector.settle()  # the libraries are imported by the first training: collect from here on
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = models.build_model(family, model_kwargs, input_shape=splits.image_shape,
                               num_classes=splits.num_classes, image_size=image_size)
    compile_model(model, optimizer_kwargs, steps_per_epoch(splits, batch_size), epochs,
                  **(compile_options or {}))
    if weights:
        import warnings

        with warnings.catch_warnings():  # a fresh optimizer has not built its variables yet
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(weights)
    use_ema = bool(optimizer_kwargs.get("ema"))
    result = fit(model, splits, epochs=epochs, batch_size=batch_size, patience=patience,
                 initial_epoch=initial_epoch, use_ema=use_ema, callbacks=callbacks,
                 verbose=verbose)
    if use_ema:  # the kept weights are the averaged ones: measure them
        val_accuracy = evaluate(model, splits.x_val, splits.y_val, "val")[0]["val_accuracy"]
    else:  # the best epoch's weights were restored; Keras measured them on validation then
        val_accuracy = float(max(result.history.get("val_accuracy", [0.0])))
    trained = Trained(model, result, val_accuracy)
    if evaluate_test:
        trained.test, trained.test_predictions = evaluate(model, splits.x_test, splits.y_test,
                                                          "test")
    return trained


def predict_logits(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    return np.asarray(model.predict(**pipelines.prediction_batches(x, batch_size), verbose=0),
                      dtype=np.float64)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Accuracy, negative log-likelihood and expected calibration error (equal-width bins)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    predicted = probs.argmax(axis=1)
    correct = predicted == labels
    confidence = probs.max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return {
        "accuracy": float(correct.mean()),
        "nll": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "ece": float(ece),
    }


def evaluate(model, x: np.ndarray, y: np.ndarray, prefix: str) -> tuple[dict, np.ndarray]:
    """Metrics of `model` on one split, named `<prefix>_accuracy` etc., and the predictions."""
    logits = predict_logits(model, x)
    metrics = classification_metrics(logits, y)
    named = {f"{prefix}_{name}": value for name, value in metrics.items()}
    named[f"{prefix}_loss"] = metrics["nll"]  # the training loss (cross-entropy) on this split
    return named, logits.argmax(axis=1)
