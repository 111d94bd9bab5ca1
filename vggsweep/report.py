"""A static, self-contained `report.html` for a sweep (images embedded, opens from disk).

    python -m vggsweep.report --sweep-dir multirun/2025-01-01/12-00-00 --experiment mnist

The page answers first (best trial, selected on validation accuracy, test accuracy reported once),
then shows the isolation table (best per model x activation), the plots, the leaderboard and the
failed trials with their reasons.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from vggsweep import leaderboard
from vggsweep.leaderboard import ResultsError

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
LEADERBOARD_ROWS = 50
PLOT_CAPTIONS = {
    "accuracy_vs_time": "Validation accuracy against training time per trial; the dashed line is "
    "the Pareto front (no other trial is both faster and more accurate), the star the best trial.",
    "isolation": "Isolation plots: for each hyperparameter that took more than one value, every "
    "finished trial (grey) and the best trial per value (red).",
    "learning_curves": "Per-epoch accuracy and loss of the best trials (solid: validation, "
    "dashed: training).",
    "importance": "Hyperparameter importance: share of the validation-accuracy variance explained "
    "by each hyperparameter's marginal means (bias-corrected, main effects only).",
}
GROUP_COLUMNS = [
    "model", "activation", "n_trials", "n_finished", "val_accuracy", "val_accuracy_min",
    "val_accuracy_max", "val_accuracy_std", "test_accuracy", "train_time_s", "trial_id", "run_id",
]
FAILED_COLUMNS = ["model", "activation", "trial_id", "status", "failure_reason", "run_id", "job"]
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
    names = leaderboard.hyperparameter_columns(trials)
    shown = [f"{name}={best[name]}" for name in names if not pd.isna(best[name])]
    return ", ".join(shown)


def headline_html(trials: pd.DataFrame) -> str:
    """The answer first: the best trial and how it was selected, then the trial counts."""
    counts = trials["status"].value_counts()
    tally = (
        f"{len(trials)} trials: {counts.get('FINISHED', 0)} finished, {counts.get('FAILED', 0)} "
        f"failed, {counts.get('KILLED', 0)} interrupted."
    )
    ranked = trials[trials["rank"].notna()]
    if ranked.empty:
        return f'<p class="headline">No trial finished. {_escape(tally)}</p>'
    best = ranked.iloc[0]
    return (
        '<p class="headline">'
        f"Best trial: <b>{_escape(best['model'])} / {_escape(best['activation'])}</b> "
        f"(trial {_escape(best['trial_id'])}, run <code>{_escape(str(best['run_id'])[:8])}</code>, "
        f"job <code>{_escape(best['job'])}</code>): validation accuracy "
        f"<b>{_format_number(best['val_accuracy'])}</b>, test accuracy "
        f"<b>{_format_number(best['test_accuracy'])}</b>, training time "
        f"{_format_number(best['train_time_s'], 1)} s.<br>"
        f"Hyperparameters: {_escape(_best_hyperparameters(trials, best))}.<br>"
        "Trials are ranked on validation accuracy only; test accuracy is measured once per trial "
        f"and never used for selection. {_escape(tally)}</p>"
    )


def _image_html(name: str, path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    caption = PLOT_CAPTIONS.get(name, name)
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
    groups = leaderboard.group_best(trials) if not trials.empty else trials
    failed = trials[trials["status"] != "FINISHED"]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Sweep report: {_escape(experiment)}</h1>",
        f'<p class="meta">Sweep directory <code>{_escape(sweep_dir)}</code> · tracking URI '
        f"<code>{_escape(tracking_uri)}</code> · generated {generated}</p>",
        headline_html(trials),
        _table_section("Best trial per model × activation (isolation table)",
                       groups[[c for c in GROUP_COLUMNS if c in groups]], "No trials.", "groups"),
        "<h2>Plots</h2>",
        *(_image_html(name, plot) for name, plot in plot_paths.items()),
        _table_section(
            f"Leaderboard (top {min(LEADERBOARD_ROWS, len(trials))} of {len(trials)} trials, "
            "ranked on validation accuracy)",
            trials.head(LEADERBOARD_ROWS), "No trials.", "leaderboard",
        ),
        _table_section("Failed and interrupted trials", failed[FAILED_COLUMNS],
                       "None: every trial finished.", "failed"),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep report: {_escape(experiment)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections) + "\n</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _top_histories(client, trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Learning-curve histories of the best trials keyed by legend label; {} when unreadable."""
    from vggsweep import plots

    labels = plots.top_trial_labels(trials)
    try:
        histories = leaderboard.load_histories(client, list(labels))
    except Exception as error:  # noqa: BLE001 - the curves are optional; the rest still renders
        logger.warning("vggsweep: could not read metric histories: %s", error)
        return {}
    return {labels[run_id]: history for run_id, history in histories.items()}


def write_plots_and_report(
    trials: pd.DataFrame, client, sweep_dir: str | os.PathLike, experiment: str, tracking_uri: str
) -> dict[str, Path]:
    """Draws the sweep plots into `<sweep_dir>/plots/` and writes `<sweep_dir>/report.html`.

    A failing plot or report is logged as a warning and left out of the result.

    Returns:
        Output name -> path ("report" and one entry per plot), for what was written.
    """
    from vggsweep import plots

    sweep_dir = Path(sweep_dir)
    written = dict(plots.sweep_plots(trials, _top_histories(client, trials), sweep_dir / "plots"))
    try:
        written["report"] = render_report(
            trials, dict(written), sweep_dir / REPORT_NAME,
            experiment=experiment, tracking_uri=tracking_uri, sweep_dir=sweep_dir,
        )
    except Exception as error:  # noqa: BLE001 - the CSV and plots are already on disk
        logger.warning("vggsweep: report.html failed: %s", error)
    return written


def build_report(
    sweep_dir: str | os.PathLike,
    tracking_uri: str,
    experiment: str,
    parent_run_ids: Iterable[str] | None = None,
    *,
    sweep: str | None = None,
) -> Path:
    """Reads the sweep from MLflow, draws its plots and writes `<sweep_dir>/report.html`.

    Args:
        sweep_dir: where `report.html` (and `plots/`) go, beside `leaderboard.csv`.
        tracking_uri: MLflow tracking URI.
        experiment: experiment name.
        parent_run_ids: the sweep's job runs; None for every trial (after `sweep`).
        sweep: only jobs whose `vggsweep.sweep_dir` is this path or ends with it.

    Raises:
        ResultsError: unknown store, experiment or sweep; or the report could not be written.
    """
    trials = leaderboard.load_trials(
        tracking_uri, experiment, parent_run_ids=parent_run_ids, sweep=sweep
    )
    client, _ = leaderboard.open_store(tracking_uri, experiment)
    written = write_plots_and_report(trials, client, sweep_dir, experiment, tracking_uri)
    if "report" not in written:
        target = Path(sweep_dir) / REPORT_NAME
        raise ResultsError(f"could not write {target} (see the warning above)")
    return written["report"]


def _parser() -> argparse.ArgumentParser:
    parser = leaderboard.OneLineErrorParser(
        prog="python -m vggsweep.report",
        description="Rebuild report.html of a sweep from what MLflow recorded.",
    )
    parser.add_argument(
        "--sweep-dir", required=True, help="the Hydra sweep directory (report.html goes there)"
    )
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--tracking-uri", help=leaderboard.TRACKING_URI_HELP)
    return parser


def _report_main(args: argparse.Namespace) -> int:
    if not Path(args.sweep_dir).is_dir():
        raise ResultsError(
            f"--sweep-dir {args.sweep_dir!r} is not a directory; "
            "pass the Hydra sweep dir, e.g. multirun/<date>/<time>"
        )
    tracking_uri = args.tracking_uri or leaderboard.default_tracking_uri()
    path = build_report(args.sweep_dir, tracking_uri, args.experiment, sweep=args.sweep_dir)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return leaderboard.run_cli(_report_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
