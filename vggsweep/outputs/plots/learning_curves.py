"""Per-epoch learning curves of the best trials (solid: validation, dashed: training).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

import vggsweep.outputs.plots.common as common

LEARNING_CURVES_TOP_K = 5

def learning_curves_note(histories: Mapping[str, pd.DataFrame]) -> str | None:
    """Why there are no curves to draw (one sentence), or None."""
    if not any(not h.empty for h in histories.values()):
        return "Learning curves: no finished trial recorded a per-epoch history."
    return None


def learning_curves_png(histories: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Per-epoch accuracy and loss of a few trials (solid: validation, dashed: training).

    Args:
        histories: legend label -> frame indexed by epoch with columns among
            `accuracy`, `val_accuracy`, `loss`, `val_loss` (see `leaderboard.load_histories`).
    """
    from matplotlib.ticker import MaxNLocator

    title = "Learning curves"
    note = learning_curves_note(histories)
    if note:
        return common.message_png(path, title, note)
    histories = {label: h for label, h in histories.items() if not h.empty}
    fig = common.figure(12, 4.8)
    axes = fig.subplots(1, 2)
    colours = common.colours(list(histories))
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
    return common.save(fig, path)


def top_trial_labels(trials: pd.DataFrame, k: int = LEARNING_CURVES_TOP_K) -> dict[str, str]:
    """Run id -> legend label ("#1 cnn-relu/trial-3") of the best `k` ranked trials."""
    ranked = trials[trials["rank"].notna()].head(k)
    return {row.run_id: f"#{row.rank} {row.trial}" for row in ranked.itertuples()}
