"""Parallel coordinates: every finished trial a line across its hyperparameters to its validation
accuracy, coloured by that accuracy; the best trial in red. Where the good lines bunch, the space
is good; a value every good line avoids can be dropped from the search."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

import vggsweep.outputs.plots.common as common

MAX_AXES = 12


def _axis(values: pd.Series) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] of one column's values, and the axis' tick (position, label) pairs."""
    if common.is_continuous(values) or (pd.api.types.is_numeric_dtype(values)
                                        and not pd.api.types.is_bool_dtype(values)
                                        and values.nunique() > 2):
        numbers = values.astype(float).to_numpy()
        low, high = np.nanmin(numbers), np.nanmax(numbers)
        logarithmic = low > 0 and high / low >= 100
        scale = np.log10 if logarithmic else (lambda x: x)
        span = (scale(high) - scale(low)) or 1.0
        positions = (scale(numbers) - scale(low)) / span
        return np.nan_to_num(positions, nan=-0.05), [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")]
    labels = values.astype(object).where(values.notna(), "(absent)").astype(str)
    categories = sorted(labels.unique(), key=common.natural_key)
    step = 1.0 / max(len(categories) - 1, 1)
    where = {category: index * step for index, category in enumerate(categories)}
    return labels.map(where).to_numpy(float), [(where[c], c) for c in categories]


def parallel_coordinates_note(trials: pd.DataFrame, metric: str = "val_accuracy") -> str | None:
    """Why the plot cannot say anything yet (one sentence), or None."""
    done = common.finished_trials(trials, metric)
    if len(done) < 3 or not common.varying_columns(done):
        return ("Parallel coordinates need at least 3 finished trials that differ in a "
                f"hyperparameter; {common.count(len(done), 'trial')} finished so far.")
    return None


def parallel_coordinates_png(trials: pd.DataFrame, path: str | os.PathLike, *,
                             metric: str = "val_accuracy") -> Path:
    title = "Parallel coordinates"
    note = parallel_coordinates_note(trials, metric)
    if note:
        return common.message_png(path, title, note)
    done = common.finished_trials(trials, metric)
    columns = common.varying_columns(done)[:MAX_AXES]
    axes = [_axis(done[column]) for column in columns] + [_axis(done[metric])]
    names = [*columns, metric]
    positions = np.column_stack([values for values, _ in axes])
    scores = done[metric].to_numpy(float)
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colour = colormaps["viridis"]
    norm = Normalize(vmin=float(scores.min()), vmax=float(scores.max()) or 1.0)
    fig = common.figure(max(7.0, 1.3 * len(names)), 5.2)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for index in np.argsort(scores):  # the best drawn last, on top
        ax.plot(x, positions[index], color=colour(norm(scores[index])), alpha=0.75, linewidth=1.2)
    best = int(np.argmax(scores))
    ax.plot(x, positions[best], color="red", linewidth=2.6, label=f"best ({scores[best]:.4f})")
    for axis_index, (_, ticks) in enumerate(axes):
        ax.axvline(axis_index, color="grey", linewidth=0.8)
        for position, label in ticks[:10]:
            ax.text(axis_index + 0.04, position, label, fontsize=7, va="center")
    ax.set_xticks(x, names, rotation=25, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.1, 1.1)
    ax.legend(loc="upper left", fontsize=8)
    fig.colorbar(ScalarMappable(norm=norm, cmap=colour), ax=ax, label=common.label(metric))
    ax.set_title(f"{title}: {len(done)} finished trials, one line each (red: the best)")
    return common.save(fig, path)
