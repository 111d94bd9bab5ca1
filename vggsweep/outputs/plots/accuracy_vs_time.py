"""Validation accuracy against training time, with the Pareto front and the best trial.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import vggsweep.outputs.plots.common as common
from vggsweep.tracking.results import pareto_front

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
    done = common.finished_trials(trials, metric)
    done = done[done["train_time_s"].notna() & (done["train_time_s"] > 0)]
    title = f"{common.label(metric).split(' (')[0].capitalize()} vs training time"
    if done.empty:
        return common.message_png(path, title, "no finished trial with a training time")
    times, scores = done["train_time_s"].to_numpy(float), done[metric].to_numpy(float)
    groups = common.group_labels(done, group_by)
    fig = common.figure(8, 5.5)
    ax = fig.add_subplot()
    colours = common.colours(sorted(groups.unique()))
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
    ax.set_xlabel(common.label("train_time_s") + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(common.label(metric))
    ax.set_title(f"{title} ({len(done)} finished trials)")
    ax.legend(fontsize=8, title=" / ".join(group_by), loc="best")
    ax.grid(alpha=0.3)
    return common.save(fig, path)


def _mark_best(ax, seconds: float, score: float, name: str) -> None:
    """A gold star on the best trial, with its name, score and training time."""
    ax.scatter([seconds], [score], marker="*", s=260, color="gold", edgecolor="black", zorder=5)
    ax.annotate(f"best: {name}\n{score:.4f}, {seconds:.1f} s", (seconds, score), xytext=(10, -28),
                textcoords="offset points", fontsize=9)
