"""What every plot shares: figures without pyplot, labels, colours, and which columns vary.

Figures use matplotlib's object-oriented API (`matplotlib.figure.Figure`, saved by the Agg canvas)
rather than `pyplot`: no global backend switch, no display needed, no figure left open. Where the
data cannot support a figure, `message_png` writes one saying why, so every plot function always
returns a readable PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vggsweep.runtime.files import atomic_path
from vggsweep.tracking.results import RECORDED_NOT_SEARCHED, hyperparameter_columns

METRIC_LABELS = {
    "val_accuracy": "validation accuracy (fraction correct)",
    "test_accuracy": "test accuracy (fraction correct)",
    "train_time_s": "training time per trial (s)",
    "param_count": "parameters (count)",
}
MAX_CATEGORIES = 8  # an integer hyperparameter with more distinct values is drawn as continuous
MAX_FLOAT_CATEGORIES = 4  # the same for floats (a searched float rarely repeats a value)


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:  # written beside, then renamed: never a truncated file
        fig.savefig(tmp, format="png", facecolor="white")
    return path


def message_png(path: str | os.PathLike, title: str, message: str) -> Path:
    """A figure that only says why the real one could not be drawn."""
    fig = figure(6, 2.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    return save(fig, path)


def count(number: int, noun: str) -> str:
    """`1 trial`, `3 trials`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def finished_trials(trials: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """The FINISHED trials that have a value for `metric`."""
    if trials.empty or metric not in trials:
        return trials.iloc[0:0]
    return trials[(trials["status"] == "FINISHED") & trials[metric].notna()]


def group_labels(trials: pd.DataFrame, group_by: Sequence[str]) -> pd.Series:
    return trials[list(group_by)].astype(str).agg("/".join, axis=1)


def colours(groups: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    return {group: palette(index % palette.N) for index, group in enumerate(groups)}


#: Recorded per trial but not hyperparameters: the trial's seed and the run's sizes.
NOT_HYPERPARAMETERS = RECORDED_NOT_SEARCHED


def varying_columns(trials: pd.DataFrame, candidates: Sequence[str] | None = None) -> list[str]:
    """The swept or searched columns: `model`, `activation` and hyperparameters with >1 value
    (the per-trial seed and the data sizes are recorded, not searched: left out)."""
    if candidates is None:
        candidates = ["model", "activation", *hyperparameter_columns(trials)]
    return [c for c in candidates if c in trials and c not in NOT_HYPERPARAMETERS
            and trials[c].nunique(dropna=True) > 1]


def is_continuous(values: pd.Series) -> bool:
    """Numbers with many distinct values (sampled floats like `learning_rate`) get a real x axis."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    limit = MAX_FLOAT_CATEGORIES if pd.api.types.is_float_dtype(values) else MAX_CATEGORIES
    return values.nunique(dropna=True) > limit


def natural_key(text: str):
    """Sorts numbers numerically, text alphabetically, numbers first."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
