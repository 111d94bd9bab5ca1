"""The static, self-contained `report.html` of a sweep (images embedded, opens from disk).

The page answers first (best trial, selected on validation accuracy, test accuracy reported once),
then shows the isolation table (best per model x activation), the plots, the leaderboard and the
failed trials with their reasons. It renders a trial table and drawn plots; reading the store and
drawing are `vggsweep.outputs.sweep`' job.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from vggsweep.runtime.files import atomic_write
from vggsweep.outputs import leaderboard
from vggsweep.tracking import results, store
from vggsweep.outputs.plots import SWEEP_PLOTS

REPORT_NAME = "report.html"
LEADERBOARD_ROWS = 50
GROUP_COLUMNS = [
    "model", "activation", "n_trials", "n_finished", "val_accuracy", "val_accuracy_min",
    "val_accuracy_max", "val_accuracy_std", "test_accuracy", "train_time_s", "trial_id", "run_id",
]
FAILED_COLUMNS = ["model", "activation", "trial_id", "status", "failure_reason", "run_id", "job"]
PARETO_COLUMNS = ["model", "activation", "val_accuracy", "test_accuracy", "train_time_s",
                  "param_count", "trial_id", "run_id"]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; font-size: 0.9em; }
.headline { font-size: 1.15em; background: #f3f7ff; border-left: 4px solid #3465a4;
            padding: 0.8em 1em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #eee; position: sticky; top: 0; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.9em; }
"""


def _escape(value) -> str:
    return html.escape(str(value))


def _format_number(value, digits: int = 4) -> str:
    return "n/a" if pd.isna(value) else f"{float(value):.{digits}f}"


def _best_hyperparameters(trials: pd.DataFrame, best: pd.Series) -> str:
    names = results.hyperparameter_columns(trials)
    shown = [f"{name}={best[name]}" for name in names if not pd.isna(best[name])]
    return ", ".join(shown)


def headline_html(trials: pd.DataFrame) -> str:
    """The answer first: the best trial and how it was selected, then the trial counts."""
    counts = trials["status"].value_counts()
    pruned = f"{counts.get('PRUNED', 0)} pruned, " if counts.get("PRUNED", 0) else ""
    tally = (
        f"{len(trials)} trials: {counts.get('FINISHED', 0)} finished, {pruned}"
        f"{counts.get('FAILED', 0)} failed, {counts.get('KILLED', 0)} interrupted."
    )
    ranked = trials[trials["rank"].notna()]
    if ranked.empty:
        return f'<p class="headline">No trial finished. {_escape(tally)}</p>'
    best = ranked.iloc[0]
    return (
        '<p class="headline">'
        f"Best trial: <b>{_escape(best['model'])} / {_escape(best['activation'])}</b> "
        f"on <b>{_escape(best.get('data', ''))}</b> "
        f"(run {_escape(store.trial_run_name(best['trial_id']))}, "
        f"id <code>{_escape(str(best['run_id'])[:8])}</code>, "
        f"job <code>{_escape(best['job'])}</code>): validation accuracy "
        f"<b>{_format_number(best['val_accuracy'])}</b>, test accuracy "
        f"<b>{_format_number(best['test_accuracy'])}</b>, training time "
        f"{_format_number(best['train_time_s'], 1)} s.<br>"
        f"Hyperparameters: {_escape(_best_hyperparameters(trials, best))}.<br>"
        "Trials are ranked on validation accuracy only; test accuracy is measured once per trial "
        f"and never used for selection. {_escape(tally)}</p>"
    )


def data_html(trials: pd.DataFrame) -> str:
    """Which data every figure was measured on: names and content hashes."""
    if trials.empty or "data" not in trials:
        return ""
    pairs = trials[["data", "data_sha256"]].drop_duplicates().astype(str).to_numpy().tolist()
    shown = ", ".join(f"<b>{_escape(name)}</b> (sha256 <code>{_escape(sha)}</code>)"
                      for name, sha in pairs)
    return f'<p class="meta">Data: {shown}</p>'


def pareto_section(trials: pd.DataFrame) -> str:
    """The trials no other trial beats on both accuracy and cost: the choices worth making."""
    parts = []
    for column, cost in (("pareto_time", "training time"), ("pareto_params", "parameter count")):
        if column in trials:
            front = trials[trials[column].fillna(False).astype(bool)]
            front = front.sort_values("val_accuracy", ascending=False)
            parts.append(_table_section(
                f"Pareto set: validation accuracy against {cost} ({len(front)} trials)",
                front[[c for c in PARETO_COLUMNS if c in front]], "No finished trial.",
                column))
    return "\n".join(parts)


def _image_html(name: str, path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    caption = SWEEP_PLOTS[name].caption if name in SWEEP_PLOTS else name
    return (
        f'<figure id="plot-{_escape(name)}"><img src="data:image/png;base64,{encoded}" '
        f'alt="{_escape(caption)}"><figcaption>{_escape(caption)}</figcaption></figure>'
    )


def _table_section(title: str, table: pd.DataFrame, empty_text: str, table_class: str) -> str:
    body = (
        f'<div class="scroll">{leaderboard.table_html(table, table_class)}</div>'
        if not table.empty else f"<p>{_escape(empty_text)}</p>"
    )
    return f"<h2>{_escape(title)}</h2>\n{body}"


def render_report(
    trials: pd.DataFrame,
    plot_paths: Mapping[str, Path],
    path: str | os.PathLike,
    *,
    experiment: str,
    tracking_uri: str,
    sweep_dir: str | os.PathLike,
) -> Path:
    """Writes the report page for a leaderboard frame and already drawn plots; returns its path."""
    several = "data" in trials and trials["data"].nunique() > 1
    by = ["data", "model", "activation"] if several else ["model", "activation"]
    groups = leaderboard.group_best(trials, by) if not trials.empty else trials
    group_columns = (["data"] if several else []) + GROUP_COLUMNS
    failed = trials[trials["status"] != "FINISHED"]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Sweep report: {_escape(experiment)}</h1>",
        f'<p class="meta">Sweep directory <code>{_escape(sweep_dir)}</code> · tracking URI '
        f"<code>{_escape(tracking_uri)}</code> · generated {generated}</p>",
        data_html(trials),
        headline_html(trials),
        _table_section("Best trial per model × activation (isolation table)",
                       groups[[c for c in group_columns if c in groups]], "No trials.", "groups"),
        pareto_section(trials),
        "<h2>Plots</h2>",
        *(_image_html(name, plot) for name, plot in plot_paths.items()),
        _table_section(
            f"Leaderboard (top {min(LEADERBOARD_ROWS, len(trials))} of {len(trials)} trials, "
            "ranked on validation accuracy)",
            trials.head(LEADERBOARD_ROWS), "No trials.", "leaderboard",
        ),
        _table_section("Pruned, failed and interrupted trials", failed[FAILED_COLUMNS],
                       "None: every trial finished.", "failed"),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep report: {_escape(experiment)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections) + "\n</body></html>\n"
    )
    return atomic_write(path, page)  # written beside, then renamed: never a truncated file
