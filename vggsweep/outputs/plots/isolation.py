"""Isolation plots (the Tuning Playbook's): the metric per value of each swept or searched
hyperparameter, every trial grey, the best per value red.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import vggsweep.outputs.plots.common as common


def _isolation_axis(ax, done: pd.DataFrame, column: str, metric: str) -> None:
    """One subplot: every trial as a dot, the best trial of each value as a red star."""
    values, scores = done[column], done[metric].to_numpy(float)
    if common.is_continuous(values):
        x = values.to_numpy(float, na_value=np.nan)
        ax.scatter(x, scores, color="grey", s=18, alpha=0.7)
        best = int(np.nanargmax(scores))
        ax.scatter([x[best]], [scores[best]], marker="*", color="red", s=160, zorder=3)
        positive = x[np.isfinite(x) & (x > 0)]
        if len(positive) and positive.min() > 0 and positive.max() / positive.min() >= 100:
            ax.set_xscale("log")
    else:
        labels = values.astype(object).where(values.notna(), "(absent)").astype(str)
        categories = sorted(labels.unique(), key=common.natural_key)
        position = labels.map({c: i for i, c in enumerate(categories)}).to_numpy(float)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(position))
        ax.scatter(position + jitter, scores, color="grey", s=18, alpha=0.7)
        best = [scores[(labels == c).to_numpy()].max() for c in categories]
        ax.plot(range(len(categories)), best, color="red", marker="*", markersize=12, linewidth=1)
        ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
    ax.set_xlabel(column)
    ax.set_ylabel(common.label(metric).split(" (")[0])
    ax.grid(alpha=0.3)


def isolation_note(trials: pd.DataFrame, metric: str = "val_accuracy",
                   columns: Sequence[str] | None = None) -> str | None:
    """Why the isolation plots cannot say anything yet (one sentence), or None."""
    done = common.finished_trials(trials, metric)
    if len(done) < 2 or not common.varying_columns(done, columns):
        return ("Isolation plots need finished trials that differ in a hyperparameter; "
                f"{common.count(len(done), 'trial')} finished so far"
                + (", all with the same values." if len(done) > 1 else "."))
    return None


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
    done = common.finished_trials(trials, metric)
    title = f"Isolation plots: {common.label(metric)} per hyperparameter value"
    note = isolation_note(trials, metric, columns)
    if note:
        return common.message_png(path, title, note)
    columns = common.varying_columns(done, columns)
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = common.figure(4.3 * ncols, 3.3 * nrows + 0.6)
    for index, column in enumerate(columns):
        _isolation_axis(fig.add_subplot(nrows, ncols, index + 1), done, column, metric)
    fig.suptitle(
        f"{title}\n(grey: each of {len(done)} finished trials; red star: best trial per value)"
    )
    return common.save(fig, path)
