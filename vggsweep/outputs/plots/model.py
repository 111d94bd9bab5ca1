"""Pictures of one trained model on a split: confusion matrix, misclassified and sample images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import vggsweep.outputs.plots.common as common


def _as_class_ids(labels) -> np.ndarray:
    """Class ids from ids, one-hot rows or probability rows."""
    labels = np.asarray(labels)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(int).reshape(-1)


def confusion_counts(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    y_true, y_pred = _as_class_ids(y_true), _as_class_ids(y_pred)
    if n_classes is None:
        n_classes = int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def confusion_matrix_png(
    y_true,
    y_pred,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    split: str = "test",
) -> Path:
    """Confusion matrix of predicted against true classes, counts written in every cell.

    Args:
        y_true, y_pred: class ids, or one-hot/probability rows (argmax is taken).
        class_names: one name per class; default: the class ids.
        split: the data split the predictions were made on, shown in the title.
    """
    y_true, y_pred = _as_class_ids(y_true), _as_class_ids(y_pred)
    n_classes = len(class_names) if class_names is not None else None
    counts = confusion_counts(y_true, y_pred, n_classes)
    n_classes = len(counts)
    names = [str(c) for c in (class_names if class_names is not None else range(n_classes))]
    fig = common.figure(1.0 + 0.55 * n_classes + 1.5, 1.0 + 0.55 * n_classes)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    threshold = counts.max() / 2
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    ax.set_xticks(range(n_classes), names)
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
    ax.set_title(f"Confusion matrix, {split} set ({len(y_true)} images, accuracy {accuracy:.4f})")
    fig.colorbar(image, ax=ax, label="images (count)")
    return common.save(fig, path)


def _image_grid(images: np.ndarray, titles: Sequence[str], path, suptitle: str) -> Path:
    """Images (n, H, W[, C]) with values in 0..1 in a near-square grid, one title each.

    The grid is one montage in one axes (25 axes would take seconds to lay out)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    count, height, width = images.shape[:3]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    gap = max(2, height // 8)
    channels = images.shape[3:]
    montage = np.ones(((height + gap) * rows - gap, (width + gap) * columns - gap, *channels),
                      dtype=np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        montage[top:top + height, left:left + width] = image
    fig = common.figure(1.7 * columns, 1.8 * rows + 0.5)
    ax = fig.add_subplot()
    ax.imshow(montage, cmap="gray" if montage.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    for index, title in enumerate(titles[:count]):
        row, column = divmod(index, columns)
        ax.text(column * (width + gap) + width / 2, row * (height + gap) - 0.6, title,
                ha="center", va="bottom", fontsize=8)
    ax.set_axis_off()
    fig.suptitle(suptitle)
    return common.save(fig, path)


def misclassified_png(
    images, y_true, y_pred, path: str | os.PathLike, max_images: int = 25, *, split: str = "test"
) -> Path:
    """Grid of the first `max_images` misclassified images, titled "true 3 / pred 5".

    Args:
        images: array (n, H, W) or (n, H, W, 1|3), values in 0..1.
        y_true, y_pred: class ids, or one-hot/probability rows.
    """
    y_true, y_pred = _as_class_ids(y_true), _as_class_ids(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    title = f"Misclassified {split} images"
    if len(wrong) == 0:
        return common.message_png(
            path, title, f"none: all {len(y_true)} {split} images were classified correctly"
        )
    shown = wrong[:max_images]
    titles = [f"true {y_true[i]} / pred {y_pred[i]}" for i in shown]
    return _image_grid(np.asarray(images)[shown], titles, path,
                       f"{title}: {len(shown)} of {len(wrong)} shown ({len(y_true)} images in all)")


def samples_png(
    images, labels, path: str | os.PathLike, n: int = 9, *, split: str = "training"
) -> Path:
    """Grid (3x3 for n=9) of the first `n` images with their labels.

    Args:
        images: array (n, H, W) or (n, H, W, 1|3), values in 0..1.
        labels: class ids or one-hot rows.
    """
    images, labels = np.asarray(images)[:n], _as_class_ids(labels)[:n]
    titles = [f"label {label}" for label in labels]
    return _image_grid(images, titles, path, f"Sample {split} images")
