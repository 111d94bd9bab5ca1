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

from vggsweep.outputs import leaderboard
from vggsweep.outputs.plots import SWEEP_PLOTS
from vggsweep.runtime.files import atomic_write
from vggsweep.tracking import agreement, results, store

REPORT_NAME = "report.html"
LEADERBOARD_ROWS = 50
GROUP_COLUMNS = [
    "model", "activation", "n_trials", "n_finished", "val_accuracy", "val_accuracy_min",
    "val_accuracy_max", "val_accuracy_std", "test_accuracy", "train_time_s", "trial", "run_id",
]
FAILED_COLUMNS = ["trial", "model", "activation", "status", "failure_reason", "run_id"]
PARETO_COLUMNS = ["trial", "model", "activation", "val_accuracy", "test_accuracy",
                  "train_time_s", "param_count", "run_id"]
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
.note { color: #444; font-style: italic; } .constants { color: #444; font-size: 0.9em; }
"""


def _escape(value) -> str:
    return html.escape(str(value))


def _format_number(value, digits: int = 4) -> str:
    return "n/a" if pd.isna(value) else f"{float(value):.{digits}f}"


def _best_hyperparameters(trials: pd.DataFrame, best: pd.Series) -> str:
    """The best trial's values of the hyperparameters that vary between trials (the others are
    the leaderboard's "same for every trial" line)."""
    _, constants = leaderboard.display_view(trials)
    names = [n for n in results.hyperparameter_columns(trials)
             if n not in results.RECORDED_NOT_SEARCHED and n not in constants]
    shown = [f"{name}={best[name]}" for name in names if not pd.isna(best[name])]
    return ", ".join(shown) or "none varies between trials"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def margin_text(other: pd.Series, who: str) -> str:
    """The best trial's margin over `other` (a leaderboard row), in words."""
    images, p_value = other.get("behind_best_images"), other.get("behind_best_p")
    name = f"{who} {other.get('trial', '')}".strip()
    if pd.isna(images) or pd.isna(p_value):
        return (f"not compared image by image with {name} (validated on other images, or "
                "recorded without its validation predictions)")
    total = other.get("val_size")
    return agreement.describe(int(images), None if pd.isna(total) else int(total),
                              float(p_value), name)


def confidence_command(experiment: str, tracking_uri: str, sweep_dir) -> str:
    """The command that retrains the two best with new seeds (`vggsweep.confidence`)."""
    uri = "" if tracking_uri == store.resolve_uri(None) else f" --tracking-uri {tracking_uri}"
    return (f"python -m vggsweep.confidence --experiment {experiment} --sweep {sweep_dir} "
            f"--top 2 --seeds 5{uri}")


def _is_it_better(trials: pd.DataFrame, best: pd.Series, command: str) -> str:
    """The margins of the best over the runner-up and over its job's reference trial, and how
    to settle a margin within noise."""
    ranked = trials[trials["rank"].notna()]
    parts, noisy = [], False
    if len(ranked) > 1:
        runner_up = ranked.iloc[1]
        parts.append(_escape(margin_text(runner_up, "the runner-up")))
        noisy = not pd.isna(runner_up.get("behind_best_p")) and \
            runner_up["behind_best_p"] >= agreement.ALPHA
    if "reference" in trials and _is_true(best.get("reference")):
        parts.append("the best trial is its job's reference trial (the search space's default "
                     "point)")
    elif "reference" in trials:
        references = trials[trials["reference"].fillna(False).astype(bool)
                            & (trials["parent_run_id"] == best["parent_run_id"])]
        if len(references):
            parts.append(_escape(margin_text(references.iloc[0], "the reference trial")))
    if not parts:
        return ""
    text = "Is it really better? " + "; ".join(parts) + "."
    text = text.replace("within noise", "<b>within noise</b>")
    settle = ("Within noise: to settle it, retrain the two best with new seeds"
              if noisy else "To see the spread over seeds too, retrain the two best")
    return f"{text}<br>{settle}: <code>{_escape(command)}</code>.<br>"


def _served(best: pd.Series) -> str:
    """Where the best trial's model is, as MLflow serves it."""
    uri = best.get("logged_model")
    if not isinstance(uri, str) or not uri:
        return ""
    return (f"Its model: <code>{_escape(uri)}</code> (<code>mlflow.pyfunc.load_model</code> or "
            "<code>mlflow models serve</code>: README, \"Serving the best model\").<br>")


def _is_true(value) -> bool:
    return not pd.isna(value) and bool(value)


def headline_html(trials: pd.DataFrame, command: str = "") -> str:
    """The answer first: the best trial and how it was selected, by how much it wins, then the
    trial counts."""
    counts = trials["status"].value_counts()
    pruned = f"{counts.get('PRUNED', 0)} pruned, " if counts.get("PRUNED", 0) else ""
    tally = (
        f"{_plural(len(trials), 'trial')}: {counts.get('FINISHED', 0)} finished, {pruned}"
        f"{counts.get('FAILED', 0)} failed, {counts.get('KILLED', 0)} interrupted."
    )
    ranked = trials[trials["rank"].notna()]
    if ranked.empty:
        return f'<p class="headline">No trial finished. {_escape(tally)}</p>'
    best = ranked.iloc[0]
    return (
        '<p class="headline">'
        f"Best trial: <b>{_escape(best.get('trial', ''))}</b> "
        f"({_escape(best['model'])} / {_escape(best['activation'])} "
        f"on <b>{_escape(best.get('data', ''))}</b>, "
        f"run id <code>{_escape(str(best['run_id'])[:8])}</code>): validation accuracy "
        f"<b>{_format_number(best['val_accuracy'])}</b>, test accuracy "
        f"<b>{_format_number(best['test_accuracy'])}</b>, training time "
        f"{_format_number(best['train_time_s'], 1)} s.<br>"
        f"Its searched values: {_escape(_best_hyperparameters(trials, best))} (the rest: "
        "the line above the leaderboard).<br>"
        f"{_is_it_better(trials, best, command)}"
        f"{_served(best)}"
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
        if column not in trials:
            continue
        front = trials[trials[column].fillna(False).astype(bool)]
        front = front.sort_values("val_accuracy", ascending=False)
        title = f"Pareto set: validation accuracy against {cost}"
        if len(front) == 1:
            parts.append(f"<h2>{_escape(title)}</h2>\n<p>One trial, "
                         f"{_escape(front.iloc[0].get('trial', ''))}, is both the most accurate "
                         f"and the cheapest in {cost}: no trade-off to choose.</p>")
            continue
        parts.append(_table_section(
            f"{title} ({_plural(len(front), 'trial')})",
            front[[c for c in PARETO_COLUMNS if c in front]], "No finished trial.", column))
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


def plots_html(plot_paths: Mapping[str, Path], plot_notes: Mapping[str, str]) -> str:
    """The plots in the registry's order; a plot that cannot say anything yet is its sentence."""
    parts = ["<h2>Plots</h2>"]
    for name in [*SWEEP_PLOTS, *(n for n in plot_paths if n not in SWEEP_PLOTS)]:
        if name in plot_paths:
            parts.append(_image_html(name, plot_paths[name]))
        elif name in plot_notes:
            parts.append(f'<p class="note" id="note-{_escape(name)}">'
                         f"{_escape(plot_notes[name])}</p>")
    return "\n".join(parts)


def leaderboard_html(trials: pd.DataFrame) -> str:
    """The leaderboard: rank, trial, the metrics and what varies; what is the same for every
    trial in one line above it."""
    shown, constants = leaderboard.display_view(trials)
    shown = shown.head(LEADERBOARD_ROWS)
    line = leaderboard.constants_line(constants).replace("Same in every row",
                                                         "Same for every trial")
    title = (f"Leaderboard (top {min(LEADERBOARD_ROWS, len(trials))} of {len(trials)} trials, "
             "ranked on validation accuracy)")
    table = _table_section(title, shown, "No trials.", "leaderboard")
    if not line:
        return table
    heading, body = table.split("\n", 1)
    return f'{heading}\n<p class="constants">{_escape(line)}</p>\n{body}'


def render_report(
    trials: pd.DataFrame,
    plot_paths: Mapping[str, Path],
    path: str | os.PathLike,
    *,
    experiment: str,
    tracking_uri: str,
    sweep_dir: str | os.PathLike,
    plot_notes: Mapping[str, str] | None = None,
) -> Path:
    """Writes the report page for a leaderboard frame and already drawn plots (and the sentences
    that replace those with nothing to say yet); returns its path."""
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
        headline_html(trials, confidence_command(experiment, tracking_uri, sweep_dir)),
        _table_section("Best trial per model × activation (isolation table)",
                       groups[[c for c in group_columns if c in groups]], "No trials.", "groups"),
        pareto_section(trials),
        plots_html(plot_paths, plot_notes or {}),
        leaderboard_html(trials),
        _table_section("Pruned, failed and interrupted trials",
                       failed[[c for c in FAILED_COLUMNS if c in failed]],
                       "None: every trial finished.", "failed"),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep report: {_escape(experiment)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections) + "\n</body></html>\n"
    )
    return atomic_write(path, page)  # written beside, then renamed: never a truncated file
