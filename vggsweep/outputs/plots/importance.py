"""Hyperparameter importance: a bias-corrected share of variance per hyperparameter (main effects).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import vggsweep.outputs.plots.common as common

MIN_TRIALS_FOR_IMPORTANCE = 4
IMPORTANCE_BINS = 4  # quantile bins for continuous hyperparameters in the variance decomposition

def _importance_levels(values: pd.Series) -> pd.Series:
    """Discrete levels for the variance decomposition: quantile bins for continuous values."""
    if common.is_continuous(values):
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
    done = common.finished_trials(trials, metric)
    scores = done[metric].to_numpy(float)
    total = float(((scores - scores.mean()) ** 2).sum()) if len(scores) else 0.0
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or total <= 0:
        return pd.Series(dtype="float64")
    importance = {}
    for column in common.varying_columns(done, columns):
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


def importance_note(trials: pd.DataFrame, metric: str = "val_accuracy",
                    columns: Sequence[str] | None = None) -> str | None:
    """Why the importance plot cannot say anything yet (one sentence), or None."""
    done = common.finished_trials(trials, metric)
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return (f"Hyperparameter importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} finished "
                f"trials; {common.count(len(done), 'trial')} finished so far.")
    importance = hyperparameter_importance(trials, metric, columns)
    if importance.empty:
        return ("Hyperparameter importance: no hyperparameter took more than one value among the "
                "finished trials, or they all scored the same.")
    if not (importance > 0).any():
        return (f"Hyperparameter importance: with {len(done)} finished trials, no hyperparameter "
                "explains more of the differences in validation accuracy than noise would "
                "(every estimate is 0 after the bias correction); more trials will tell.")
    return None


def importance_png(
    trials: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "val_accuracy",
    columns: Sequence[str] | None = None,
) -> Path:
    """Bar chart of `hyperparameter_importance`; a figure with `importance_note`'s sentence
    when there is nothing to show yet."""
    title = "Hyperparameter importance"
    note = importance_note(trials, metric, columns)
    if note:
        return common.message_png(path, title, note)
    done = common.finished_trials(trials, metric)
    importance = hyperparameter_importance(trials, metric, columns)
    fig = common.figure(9, 1.4 + 0.38 * len(importance))
    ax = fig.add_subplot()
    ax.barh(importance.index[::-1], importance.to_numpy()[::-1], color="tab:blue")
    ax.set_xlim(0, max(0.05, float(importance.max()) * 1.1))
    metric_name = common.label(metric).split(" (")[0]
    ax.set_xlabel(f"share of {metric_name} variance explained (epsilon², bias-corrected)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(f"{title}: first-order variance decomposition (epsilon²)\n"
                 f"{len(done)} finished trials; main effects only, interactions not separated")
    ax.grid(axis="x", alpha=0.3)
    return common.save(fig, path)
