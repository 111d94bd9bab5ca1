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


def _timed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    done = common.finished_trials(trials, metric)
    return done[done["train_time_s"].notna() & (done["train_time_s"] > 0)]


def accuracy_vs_time_note(trials: pd.DataFrame, metric: str = "val_accuracy") -> str | None:
    """Why the plot cannot say anything yet (one sentence), or None."""
    done = _timed(trials, metric)
    if len(done) < 2:
        return (f"Accuracy against training time needs two finished trials; "
                f"{common.count(len(done), 'trial')} finished so far.")
    return None


def accuracy_vs_time_png(
    trials: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "val_accuracy",
    group_by: Sequence[str] = ("model", "activation"),
) -> Path:
    """Scatter of `metric` against training time, coloured by group, Pareto front and best marked.

    The x axis is logarithmic when the slowest trial took over 20 times the fastest. A front of
    one trial (the most accurate is also the fastest) is said in the title, not drawn.
    """
    done = _timed(trials, metric)
    title = f"{common.label(metric).split(' (')[0].capitalize()} vs training time"
    note = accuracy_vs_time_note(trials, metric)
    if note:
        return common.message_png(path, title, note)
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
    if front.sum() > 1:
        ax.step(times[front][order], scores[front][order], where="post", color="black",
                linewidth=1, linestyle="--", label="Pareto front (faster and more accurate)")
    best = int(np.argmax(scores))
    name_column = "trial" if "trial" in done else "trial_id"
    _mark_best(ax, times[best], scores[best], str(done[name_column].iloc[best]))
    if times.max() / times.min() > 20:
        ax.set_xscale("log")
    scale = ", log scale" if ax.get_xscale() == "log" else ""
    ax.set_xlabel(common.label("train_time_s") + scale)
    ax.set_ylabel(common.label(metric))
    trade_off = "" if front.sum() > 1 else "; the most accurate is also the fastest"
    ax.set_title(f"{title} ({len(done)} finished trials{trade_off})")
    ax.legend(fontsize=8, title=" / ".join(group_by), loc="best")
    ax.grid(alpha=0.3)
    return common.save(fig, path)


def _mark_best(ax, seconds: float, score: float, name: str) -> None:
    """A gold star on the best trial, with its name, score and training time."""
    ax.scatter([seconds], [score], marker="*", s=260, color="gold", edgecolor="black", zorder=5)
    ax.annotate(f"best: {name}\n{score:.4f}, {seconds:.1f} s", (seconds, score), xytext=(10, -28),
                textcoords="offset points", fontsize=9)
