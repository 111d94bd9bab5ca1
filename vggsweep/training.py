"""Compile, fit and evaluate one model: the per-trial work, free of tuner and tracking concerns.

The model outputs logits divided by the softmax temperature; the loss is computed from them
(`from_logits=True`), which is numerically stabler than a softmax followed by a log.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

from vggsweep.optimizers import build_optimizer


def steps_per_epoch(splits, batch_size: int) -> int:
    return math.ceil(len(splits.y_train) / batch_size)


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class FitResult:
    history: dict
    epochs_run: int
    best_epoch: int
    train_time_s: float
    images_per_s: float


def compile_model(model, optimizer_params: dict, steps_per_epoch: int | None = None,
                  epochs: int | None = None, jit_compile="auto") -> None:
    """Compiles with the configured optimizer, a from-logits cross-entropy and accuracy.

    `steps_per_epoch` and `epochs` size the learning-rate schedules (per-epoch decay, cosine)."""
    total = steps_per_epoch * epochs if steps_per_epoch and epochs else None
    optimizer_params = {**optimizer_params, "steps_per_epoch": steps_per_epoch,
                        "total_steps": total}
    model.compile(
        optimizer=build_optimizer(**optimizer_params),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _callbacks(epochs: int, patience: int | None, use_ema: bool, extra: list, verbose: int):
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
        initial_epoch: int = 0, use_ema: bool = False, callbacks=(), verbose: int = 0) -> FitResult:
    """Trains on the training split, validating every epoch; keeps the best epoch's weights.

    Raises:
        NonFiniteLoss: when the loss became NaN or infinite.
    """
    start = time.perf_counter()
    history = model.fit(
        splits.x_train, splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=epochs, initial_epoch=initial_epoch, batch_size=batch_size, shuffle=True,
        callbacks=_callbacks(epochs, patience, use_ema, list(callbacks), verbose),
        verbose=2 if verbose >= 2 else 0,
    ).history
    train_time_s = time.perf_counter() - start
    losses = history.get("loss", [])
    for key in ("loss", "val_loss"):
        bad = next((i for i, v in enumerate(history.get(key, [])) if not math.isfinite(v)), None)
        if bad is not None:
            raise NonFiniteLoss(f"{key} became {history[key][bad]} at epoch "
                                f"{initial_epoch + bad + 1}: training diverged")
    epochs_run = len(losses)
    val = history.get("val_accuracy", [0.0])
    return FitResult(
        history=history,
        epochs_run=epochs_run,
        best_epoch=initial_epoch + int(np.argmax(val)) + 1,
        train_time_s=train_time_s,
        images_per_s=len(splits.y_train) * epochs_run / max(train_time_s, 1e-9),
    )


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


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
