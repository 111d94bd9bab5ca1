"""PNG figures of a sweep and of one trained model; a trial table in, a PNG path out.

`SWEEP_PLOTS` is the one registry of the sweep-level plots: the end-of-sweep outputs draw each of
them and the report shows them in this order with their captions. To add a plot, write a module
beside these with a `*_png(trials, histories, path)` function and register it here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from vggsweep.errors import DiskFull
from vggsweep.outputs.plots.accuracy_vs_time import accuracy_vs_time_note, accuracy_vs_time_png
from vggsweep.outputs.plots.common import finished_trials, message_png, varying_columns
from vggsweep.outputs.plots.importance import (
    hyperparameter_importance,
    importance_note,
    importance_png,
)
from vggsweep.outputs.plots.isolation import isolation_note, isolation_png
from vggsweep.outputs.plots.learning_curves import (
    learning_curves_note,
    learning_curves_png,
    top_trial_labels,
)
from vggsweep.outputs.plots.model import (
    confusion_counts,
    confusion_matrix_png,
    misclassified_png,
    samples_png,
)
from vggsweep.outputs.plots.parallel_coordinates import (
    parallel_coordinates_note,
    parallel_coordinates_png,
)
from vggsweep.tracking.results import pareto_front

logger = logging.getLogger(__name__)

__all__ = [
    "SWEEP_PLOTS", "Plot", "accuracy_vs_time_png", "confusion_counts", "confusion_matrix_png",
    "finished_trials", "hyperparameter_importance", "importance_png", "isolation_png",
    "learning_curves_png", "message_png", "misclassified_png", "parallel_coordinates_png",
    "pareto_front", "plot_notes", "samples_png", "sweep_plots", "top_trial_labels",
    "varying_columns",
]


class Plot(NamedTuple):
    """A sweep-level plot: how to draw it from (trials, histories, path), its caption, and why
    it cannot say anything yet (one sentence from (trials, histories), None when it can)."""

    draw: Callable[[pd.DataFrame, Mapping[str, pd.DataFrame], Path], Path]
    caption: str
    note: Callable[[pd.DataFrame, Mapping[str, pd.DataFrame]], str | None] = (
        lambda _trials, _histories: None)


SWEEP_PLOTS: dict[str, Plot] = {
    "accuracy_vs_time": Plot(
        lambda trials, _histories, path: accuracy_vs_time_png(trials, path),
        "Validation accuracy against training time per trial; the dashed line is the Pareto "
        "front (no other trial is both faster and more accurate), the star the best trial.",
        lambda trials, _histories: accuracy_vs_time_note(trials)),
    "isolation": Plot(
        lambda trials, _histories, path: isolation_png(trials, path),
        "Isolation plots: for each hyperparameter that took more than one value, every finished "
        "trial (grey) and the best trial per value (red).",
        lambda trials, _histories: isolation_note(trials)),
    "learning_curves": Plot(
        lambda _trials, histories, path: learning_curves_png(histories, path),
        "Per-epoch accuracy and loss of the best trials (solid: validation, dashed: training).",
        lambda _trials, histories: learning_curves_note(histories)),
    "parallel_coordinates": Plot(
        lambda trials, _histories, path: parallel_coordinates_png(trials, path),
        "Parallel coordinates: every finished trial a line across its hyperparameters to its "
        "validation accuracy (colour), the best in red; where good lines bunch, the space is good.",
        lambda trials, _histories: parallel_coordinates_note(trials)),
    "importance": Plot(
        lambda trials, _histories, path: importance_png(trials, path),
        "Hyperparameter importance: share of the validation-accuracy variance explained by each "
        "hyperparameter's marginal means (bias-corrected, main effects only).",
        lambda trials, _histories: importance_note(trials)),
}


def plot_notes(trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Plot name -> the sentence that replaces it, for the plots that cannot say anything yet
    (too few trials, nothing above noise); a note that fails is logged and the plot drawn."""
    notes = {}
    for name, plot in SWEEP_PLOTS.items():
        try:
            note = plot.note(trials, histories)
        except Exception as error:  # noqa: BLE001 - then the plot itself says what it can
            logger.warning("vggsweep: plot %s: %s", name, error)
            continue
        if note:
            notes[name] = note
    return notes


def sweep_plots(
    trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike,
    skip: Iterable[str] = (),
) -> dict[str, Path]:
    """Draws every registered sweep plot into `out_dir`, but those in `skip` (`plot_notes`: a
    sentence replaces them; an older figure of theirs is removed); a plot that fails is logged
    and skipped.

    Args:
        trials: the trial table (`results.load_trials`).
        histories: legend label -> per-epoch history of the trials to draw learning curves for.

    Returns:
        Plot name -> PNG path, for the plots that were written.
    """
    out_dir = Path(out_dir)
    skip = set(skip)
    written = {}
    for name, plot in SWEEP_PLOTS.items():
        path = out_dir / f"{name}.png"
        if name in skip:
            path.unlink(missing_ok=True)
            continue
        try:
            written[name] = plot.draw(trials, histories, path)
        except DiskFull:  # the others cannot be written either: one line, from the caller
            raise
        except Exception as error:  # noqa: BLE001 - one broken plot must not cost the others
            logger.warning("vggsweep: plot %s failed: %s", name, error)
    return written
