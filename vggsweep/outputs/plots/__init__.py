"""PNG figures of a sweep and of one trained model; a trial table in, a PNG path out.

`SWEEP_PLOTS` is the one registry of the sweep-level plots: the end-of-sweep outputs draw each of
them and the report shows them in this order with their captions. To add a plot, write a module
beside these with a `*_png(trials, histories, path)` function and register it here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from vggsweep.errors import DiskFull
from vggsweep.outputs.plots.accuracy_vs_time import accuracy_vs_time_png
from vggsweep.tracking.results import pareto_front
from vggsweep.outputs.plots.common import finished_trials, message_png, varying_columns
from vggsweep.outputs.plots.importance import hyperparameter_importance, importance_png
from vggsweep.outputs.plots.isolation import isolation_png
from vggsweep.outputs.plots.learning_curves import learning_curves_png, top_trial_labels
from vggsweep.outputs.plots.parallel_coordinates import parallel_coordinates_png
from vggsweep.outputs.plots.model import (confusion_counts, confusion_matrix_png, misclassified_png,
                                  samples_png)

logger = logging.getLogger(__name__)

__all__ = [
    "SWEEP_PLOTS", "Plot", "accuracy_vs_time_png", "confusion_counts", "confusion_matrix_png",
    "finished_trials", "hyperparameter_importance", "importance_png", "isolation_png",
    "learning_curves_png", "message_png", "misclassified_png", "parallel_coordinates_png",
    "pareto_front", "samples_png", "sweep_plots", "top_trial_labels", "varying_columns",
]


class Plot(NamedTuple):
    """A sweep-level plot: how to draw it from (trials, histories, path), and its caption."""

    draw: Callable[[pd.DataFrame, Mapping[str, pd.DataFrame], Path], Path]
    caption: str


SWEEP_PLOTS: dict[str, Plot] = {
    "accuracy_vs_time": Plot(
        lambda trials, histories, path: accuracy_vs_time_png(trials, path),
        "Validation accuracy against training time per trial; the dashed line is the Pareto "
        "front (no other trial is both faster and more accurate), the star the best trial."),
    "isolation": Plot(
        lambda trials, histories, path: isolation_png(trials, path),
        "Isolation plots: for each hyperparameter that took more than one value, every finished "
        "trial (grey) and the best trial per value (red)."),
    "learning_curves": Plot(
        lambda trials, histories, path: learning_curves_png(histories, path),
        "Per-epoch accuracy and loss of the best trials (solid: validation, dashed: training)."),
    "parallel_coordinates": Plot(
        lambda trials, histories, path: parallel_coordinates_png(trials, path),
        "Parallel coordinates: every finished trial a line across its hyperparameters to its "
        "validation accuracy (colour), the best in red; where good lines bunch, the space is good."),
    "importance": Plot(
        lambda trials, histories, path: importance_png(trials, path),
        "Hyperparameter importance: share of the validation-accuracy variance explained by each "
        "hyperparameter's marginal means (bias-corrected, main effects only)."),
}


def sweep_plots(
    trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Draws every registered sweep plot into `out_dir`; a plot that fails is logged and skipped.

    Args:
        trials: the trial table (`results.load_trials`).
        histories: legend label -> per-epoch history of the trials to draw learning curves for.

    Returns:
        Plot name -> PNG path, for the plots that were written.
    """
    out_dir = Path(out_dir)
    written = {}
    for name, plot in SWEEP_PLOTS.items():
        try:
            written[name] = plot.draw(trials, histories, out_dir / f"{name}.png")
        except DiskFull:  # the others cannot be written either: one line, from the caller
            raise
        except Exception as error:  # noqa: BLE001 - one broken plot must not cost the others
            logger.warning("vggsweep: plot %s failed: %s", name, error)
    return written
