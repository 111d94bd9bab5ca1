"""PNG figures of a sweep and of one trained model; plain pandas/numpy in, a PNG path out.

Figures are drawn with matplotlib's object-oriented API (`matplotlib.figure.Figure`, saved by the
Agg canvas) rather than `pyplot`: no global backend switch, no display needed, no figure left open.
Where the data cannot support a figure (no finished trial, too few trials for an importance
estimate, no misclassified image), a figure saying so is written instead, so every function always
returns a readable PNG.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vggsweep.leaderboard import hyperparameter_columns

logger = logging.getLogger(__name__)

METRIC_LABELS = {
    "val_accuracy": "validation accuracy (fraction correct)",
    "test_accuracy": "test accuracy (fraction correct)",
    "train_time_s": "training time per trial (s)",
}
MIN_TRIALS_FOR_IMPORTANCE = 4
MAX_CATEGORIES = 8  # an integer hyperparameter with more distinct values is drawn as continuous
MAX_FLOAT_CATEGORIES = 4  # the same for floats (a searched float rarely repeats a value)
IMPORTANCE_BINS = 4  # quantile bins for continuous hyperparameters in the variance decomposition
LEARNING_CURVES_TOP_K = 5


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white")
    return path


def _message_png(path: str | os.PathLike, title: str, message: str) -> Path:
    """A figure that only says why the real one could not be drawn."""
    fig = _figure(6, 2.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    return _save(fig, path)


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def finished_trials(trials: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """The FINISHED trials that have a value for `metric`."""
    if trials.empty or metric not in trials:
        return trials.iloc[0:0]
    return trials[(trials["status"] == "FINISHED") & trials[metric].notna()]


def pareto_front(times: Sequence[float], scores: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats on both (lower time, higher score)."""
    times, scores = np.asarray(times, float), np.asarray(scores, float)
    order = np.lexsort((-scores, times))  # fastest first; at equal time, best score first
    on_front = np.zeros(len(times), dtype=bool)
    best_so_far = -np.inf
    for index in order:
        if scores[index] > best_so_far:
            on_front[index] = True
            best_so_far = scores[index]
    return on_front


def _group_labels(trials: pd.DataFrame, group_by: Sequence[str]) -> pd.Series:
    return trials[list(group_by)].astype(str).agg("/".join, axis=1)


def accuracy_vs_time_png(
    trials: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "val_accuracy",
    group_by: Sequence[str] = ("model", "activation"),
) -> Path:
    """Scatter of `metric` against training time, coloured by group, Pareto front and best marked.

    The x axis is logarithmic when the slowest trial took over 20 times the fastest.
    """
    done = finished_trials(trials, metric)
    done = done[done["train_time_s"].notna() & (done["train_time_s"] > 0)]
    title = f"{_label(metric).split(' (')[0].capitalize()} vs training time"
    if done.empty:
        return _message_png(path, title, "no finished trial with a training time")
    times, scores = done["train_time_s"].to_numpy(float), done[metric].to_numpy(float)
    groups = _group_labels(done, group_by)
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    colours = _colours(sorted(groups.unique()))
    for group, colour in colours.items():
        mask = (groups == group).to_numpy()
        ax.scatter(times[mask], scores[mask], color=colour, label=group, s=36, alpha=0.85)
    front = pareto_front(times, scores)
    order = np.argsort(times[front])
    ax.step(times[front][order], scores[front][order], where="post", color="black",
            linewidth=1, linestyle="--", label="Pareto front (faster and more accurate)")
    best = int(np.argmax(scores))
    best_name = f"{groups.iloc[best]} trial {done['trial_id'].iloc[best]}"
    _mark_best(ax, times[best], scores[best], best_name)
    if times.max() / times.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(_label("train_time_s") + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(_label(metric))
    ax.set_title(f"{title} ({len(done)} finished trials)")
    ax.legend(fontsize=8, title=" / ".join(group_by), loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _mark_best(ax, seconds: float, score: float, name: str) -> None:
    """A gold star on the best trial, with its name, score and training time."""
    ax.scatter([seconds], [score], marker="*", s=260, color="gold", edgecolor="black", zorder=5)
    ax.annotate(f"best: {name}\n{score:.4f}, {seconds:.1f} s", (seconds, score), xytext=(10, -28),
                textcoords="offset points", fontsize=9)


def _colours(groups: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    return {group: palette(index % palette.N) for index, group in enumerate(groups)}


#: Recorded per trial but not hyperparameters: the trial's seed and the run's sizes.
NOT_HYPERPARAMETERS = {"seed", "epochs", "batch_size", "train_size", "val_size", "test_size"}


def varying_columns(trials: pd.DataFrame, candidates: Sequence[str] | None = None) -> list[str]:
    """The swept or searched columns: `model`, `activation` and hyperparameters with >1 value
    (the per-trial seed and the data sizes are recorded, not searched: left out)."""
    if candidates is None:
        candidates = ["model", "activation", *hyperparameter_columns(trials)]
    return [c for c in candidates if c in trials and c not in NOT_HYPERPARAMETERS
            and trials[c].nunique(dropna=True) > 1]


def _is_continuous(values: pd.Series) -> bool:
    """Numbers with many distinct values (sampled floats like `learning_rate`) get a real x axis."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    limit = MAX_FLOAT_CATEGORIES if pd.api.types.is_float_dtype(values) else MAX_CATEGORIES
    return values.nunique(dropna=True) > limit


def _isolation_axis(ax, done: pd.DataFrame, column: str, metric: str) -> None:
    """One subplot: every trial as a dot, the best trial of each value as a red star."""
    values, scores = done[column], done[metric].to_numpy(float)
    if _is_continuous(values):
        x = values.to_numpy(float, na_value=np.nan)
        ax.scatter(x, scores, color="grey", s=18, alpha=0.7)
        best = int(np.nanargmax(scores))
        ax.scatter([x[best]], [scores[best]], marker="*", color="red", s=160, zorder=3)
        positive = x[np.isfinite(x) & (x > 0)]
        if len(positive) and positive.min() > 0 and positive.max() / positive.min() >= 100:
            ax.set_xscale("log")
    else:
        labels = values.astype(object).where(values.notna(), "(absent)").astype(str)
        categories = sorted(labels.unique(), key=_natural_key)
        position = labels.map({c: i for i, c in enumerate(categories)}).to_numpy(float)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(position))
        ax.scatter(position + jitter, scores, color="grey", s=18, alpha=0.7)
        best = [scores[(labels == c).to_numpy()].max() for c in categories]
        ax.plot(range(len(categories)), best, color="red", marker="*", markersize=12, linewidth=1)
        ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
    ax.set_xlabel(column)
    ax.set_ylabel(_label(metric).split(" (")[0])
    ax.grid(alpha=0.3)


def _natural_key(text: str):
    """Sorts numbers numerically, text alphabetically, numbers first."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def isolation_png(
    trials: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "val_accuracy",
    columns: Sequence[str] | None = None,
) -> Path:
    """Isolation plots: `metric` per value of each swept or searched hyperparameter.

    Args:
        columns: the hyperparameters to plot; default: every column with more than one value.
    """
    done = finished_trials(trials, metric)
    columns = varying_columns(done, columns)
    title = f"Isolation plots: {_label(metric)} per hyperparameter value"
    if not columns:
        return _message_png(
            path, title, "no finished trials, or no hyperparameter took more than one value"
        )
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = _figure(4.3 * ncols, 3.3 * nrows + 0.6)
    for index, column in enumerate(columns):
        _isolation_axis(fig.add_subplot(nrows, ncols, index + 1), done, column, metric)
    fig.suptitle(
        f"{title}\n(grey: each of {len(done)} finished trials; red star: best trial per value)"
    )
    return _save(fig, path)


def learning_curves_png(histories: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Per-epoch accuracy and loss of a few trials (solid: validation, dashed: training).

    Args:
        histories: legend label -> frame indexed by epoch with columns among
            `accuracy`, `val_accuracy`, `loss`, `val_loss` (see `leaderboard.load_histories`).
    """
    from matplotlib.ticker import MaxNLocator

    title = "Learning curves"
    histories = {label: h for label, h in histories.items() if not h.empty}
    if not histories:
        return _message_png(path, title, "no per-epoch metric history recorded")
    fig = _figure(12, 4.8)
    axes = fig.subplots(1, 2)
    colours = _colours(list(histories))
    for label, history in histories.items():
        for ax, key in zip(axes, ("accuracy", "loss")):
            for column, style, split in (
                (f"val_{key}", "-", "validation"), (key, "--", "training")
            ):
                if column in history and history[column].notna().any():
                    ax.plot(history.index, history[column], style, marker="o", markersize=3,
                            color=colours[label], label=f"{label} ({split})")
    axes[0].set_ylabel("accuracy (fraction correct)")
    axes[1].set_ylabel("loss (cross-entropy, nats)")
    last_epoch = max(int(h.index.max()) for h in histories.values())
    for ax, name in zip(axes, ("Accuracy", "Loss")):
        ax.set_xlim(-0.5, max(last_epoch, 1) + 0.5)  # a one-epoch run still gets integer ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (0 = first)")
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title} of the top {len(histories)} trials by validation accuracy "
                 "(solid: validation split, dashed: training split)")
    return _save(fig, path)


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
    fig = _figure(1.0 + 0.55 * n_classes + 1.5, 1.0 + 0.55 * n_classes)
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
    return _save(fig, path)


def _image_grid(images: np.ndarray, titles: Sequence[str], path, suptitle: str) -> Path:
    """Images (n, H, W[, C]) with values in 0..1 in a near-square grid, one title each."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    fig = _figure(1.7 * columns, 1.8 * rows + 0.5)
    for index, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, columns, index + 1)
        image = np.asarray(image, dtype=float)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(suptitle)
    return _save(fig, path)


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
        return _message_png(
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


def _importance_levels(values: pd.Series) -> pd.Series:
    """Discrete levels for the variance decomposition: quantile bins for continuous values."""
    if _is_continuous(values):
        binned = pd.qcut(values.astype(float), IMPORTANCE_BINS, duplicates="drop")
        return binned.astype(str).where(values.notna(), "(absent)")
    return values.astype(object).where(values.notna(), "(absent)").astype(str)


def hyperparameter_importance(
    trials: pd.DataFrame, metric: str = "val_accuracy", columns: Sequence[str] | None = None
) -> pd.Series:
    """Share of the variance of `metric` explained by each hyperparameter's marginal means.

    A first-order (main-effect) variance decomposition in the spirit of fANOVA: for each
    hyperparameter, the finished trials are grouped by its value (continuous values in quantile
    bins, a missing value as its own level "(absent)"), and the between-group share of the variance
    is computed with the bias correction of epsilon-squared,
    (SS_between - (k - 1) MS_within) / SS_total, clipped to [0, 1], so that a hyperparameter with
    many levels is not credited with noise. Interactions are not separated, and correlated choices
    (e.g. `filters` absent exactly for the MLP) share credit.

    Returns:
        Importance per hyperparameter, largest first; empty with fewer than
        `MIN_TRIALS_FOR_IMPORTANCE` finished trials or no variance.
    """
    done = finished_trials(trials, metric)
    scores = done[metric].to_numpy(float)
    total = float(((scores - scores.mean()) ** 2).sum()) if len(scores) else 0.0
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or total <= 0:
        return pd.Series(dtype="float64")
    importance = {}
    for column in varying_columns(done, columns):
        levels = _importance_levels(done[column]).to_numpy()
        k = len(set(levels))
        if k < 2 or len(scores) - k < 1:
            continue
        between = sum(
            (levels == level).sum() * (scores[levels == level].mean() - scores.mean()) ** 2
            for level in set(levels)
        )
        within_mean_square = (total - between) / (len(scores) - k)
        importance[column] = min(1.0, max(0.0, (between - (k - 1) * within_mean_square) / total))
    return pd.Series(importance, dtype="float64").sort_values(ascending=False)


def importance_png(
    trials: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "val_accuracy",
    columns: Sequence[str] | None = None,
) -> Path:
    """Bar chart of `hyperparameter_importance`; a "not enough trials" figure below 4 trials."""
    title = "Hyperparameter importance"
    done = finished_trials(trials, metric)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return _message_png(path, title, f"not enough trials: {len(done)} finished, "
                            f"at least {MIN_TRIALS_FOR_IMPORTANCE} needed for an estimate")
    importance = hyperparameter_importance(trials, metric, columns)
    if importance.empty:
        return _message_png(path, title, "no hyperparameter took more than one value, "
                            "or the finished trials all scored the same")
    fig = _figure(9, 1.4 + 0.38 * len(importance))
    ax = fig.add_subplot()
    ax.barh(importance.index[::-1], importance.to_numpy()[::-1], color="tab:blue")
    ax.set_xlim(0, max(0.05, float(importance.max()) * 1.1))
    metric_name = _label(metric).split(" (")[0]
    ax.set_xlabel(f"share of {metric_name} variance explained (epsilon², bias-corrected)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(f"{title}: first-order variance decomposition (epsilon²)\n"
                 f"{len(done)} finished trials; main effects only, interactions not separated")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def top_trial_labels(trials: pd.DataFrame, k: int = LEARNING_CURVES_TOP_K) -> dict[str, str]:
    """Run id -> legend label ("#1 cnn/relu trial 03") of the best `k` ranked trials."""
    ranked = trials[trials["rank"].notna()].head(k)
    return {
        row.run_id: f"#{row.rank} {row.model}/{row.activation} trial {row.trial_id}"
        for row in ranked.itertuples()
    }


def sweep_plots(
    trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Draws every sweep-level plot into `out_dir`; a plot that fails is logged and skipped.

    Args:
        trials: the leaderboard frame (`leaderboard.load_trials`).
        histories: legend label -> per-epoch history of the trials to draw learning curves for.

    Returns:
        Plot name -> PNG path, for the plots that were written.
    """
    out_dir = Path(out_dir)
    makers = {
        "accuracy_vs_time": lambda p: accuracy_vs_time_png(trials, p),
        "isolation": lambda p: isolation_png(trials, p),
        "learning_curves": lambda p: learning_curves_png(histories, p),
        "importance": lambda p: importance_png(trials, p),
    }
    written = {}
    for name, make in makers.items():
        try:
            written[name] = make(out_dir / f"{name}.png")
        except Exception as error:  # noqa: BLE001 - one broken plot must not cost the others
            logger.warning("vggsweep: plot %s failed: %s", name, error)
    return written
