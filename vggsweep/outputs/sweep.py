"""The end-of-sweep outputs, rebuilt from the store for a sweep identified by its directory.

`leaderboard.csv`, the sweep plots (`plots/`) and `report.html` are written into the sweep
directory from what MLflow recorded for the jobs of that sweep, so they are the same whether the
jobs ran in this process, in a joblib pool, on SLURM or on other machines. The CSV comes first; a
failing plot, report or artifact upload is a warning, never the end of the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from vggsweep.errors import InfrastructureError, ResultsError
from vggsweep.outputs import leaderboard, page, plots
from vggsweep.tracking import results, store

logger = logging.getLogger(__name__)

LEADERBOARD_NAME = "leaderboard.csv"


def top_histories(client, trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Learning-curve histories of the best trials keyed by legend label; {} when unreadable."""
    labels = plots.top_trial_labels(trials)
    try:
        histories = results.load_histories(client, list(labels))
    except Exception as error:  # noqa: BLE001 - the curves are optional; the rest still renders
        logger.warning("vggsweep: could not read metric histories: %s", error)
        return {}
    return {labels[run_id]: history for run_id, history in histories.items()}


def write_plots_and_report(trials: pd.DataFrame, client, sweep_dir: str | os.PathLike,
                           experiment: str, tracking_uri: str) -> dict[str, Path]:
    """Draws the sweep plots into `<sweep_dir>/plots/` and writes `<sweep_dir>/report.html`.

    Returns:
        Output name -> path ("report" and one entry per plot), for what was written.
    """
    sweep_dir = Path(sweep_dir)
    histories = top_histories(client, trials)
    notes = plots.plot_notes(trials, histories)  # a sentence instead of a plot with nothing to say
    written = dict(plots.sweep_plots(trials, histories, sweep_dir / "plots", skip=notes))
    try:
        written["report"] = page.render_report(
            trials, dict(written), sweep_dir / page.REPORT_NAME,
            experiment=experiment, tracking_uri=tracking_uri, sweep_dir=sweep_dir,
            plot_notes=notes,
        )
    except InfrastructureError:  # a full disk: said once, by the caller
        raise
    except Exception as error:  # noqa: BLE001 - the CSV and plots are already on disk
        logger.warning("vggsweep: report.html failed: %s", error)
    return written


def write_sweep_outputs(
    sweep_dir: str | os.PathLike,
    tracking_uri: str,
    experiment: str,
    parent_run_ids: Iterable[str] | None = None,
    *,
    sweep: str | None = None,
    job_keys: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Writes `leaderboard.csv`, the sweep plots and `report.html` into `sweep_dir`.

    The sweep-level plots and the CSV are also logged as artifacts (`sweep_plots/`) on every job
    run of the sweep.

    Args:
        sweep_dir: where the outputs go (created if missing).
        tracking_uri: MLflow tracking URI of the sweep.
        experiment: experiment name.
        parent_run_ids: the sweep's job runs; None for every job (after `sweep`).
        sweep: only jobs whose recorded sweep directory is this path or ends with it.
        job_keys: only these jobs (a sweep's manifest lists them; a job run by several sweeps
            is recorded under the last one's directory).

    Returns:
        Output name -> path, for the outputs that were written.

    Raises:
        ResultsError: unknown store, experiment or sweep (nothing could be read).
    """
    sweep_dir = Path(sweep_dir)
    parent_run_ids = None if parent_run_ids is None else list(parent_run_ids)
    trials = results.load_trials(tracking_uri, experiment, parent_run_ids=parent_run_ids,
                                 sweep=sweep, job_keys=job_keys)
    outputs = {"leaderboard": leaderboard.write_table(trials, sweep_dir / LEADERBOARD_NAME)}
    client, _ = store.open_existing(tracking_uri, experiment)
    try:
        outputs.update(write_plots_and_report(trials, client, sweep_dir, experiment,
                                              tracking_uri))
    except InfrastructureError:  # a full disk, the store away: said once, by the caller
        raise
    except Exception as error:  # noqa: BLE001 - the CSV is written; the rest is best effort
        logger.warning("vggsweep: sweep plots/report failed: %s", error)
    job_run_ids = parent_run_ids if parent_run_ids is not None else sorted(
        set(trials["parent_run_id"].dropna()))
    artifacts = [p for name, p in outputs.items() if p.suffix == ".png" or name == "leaderboard"]
    _log_sweep_artifacts(client, job_run_ids, artifacts)
    return outputs


def best_line(leaderboard_csv: Path) -> str:
    """The sweep's answer, read back from its leaderboard: the best trial, how it was chosen,
    its margin over the runner-up, and its logged model (one line each)."""
    trials = pd.read_csv(leaderboard_csv)
    ranked = trials[trials["rank"].notna()] if "rank" in trials else trials.iloc[0:0]
    if ranked.empty:
        return f"best: no trial finished ({len(trials)} recorded)"
    best = ranked.iloc[0]
    pruned = int((trials["status"] == "PRUNED").sum()) if "status" in trials else 0
    lines = [(f"best: {best['trial']} ({best['model']}/{best['activation']} on "
              f"{best.get('data', '?')}): val_accuracy {best['val_accuracy']:.4f} (selected on "
              f"it), test_accuracy {best['test_accuracy']:.4f}; {len(ranked)} of {len(trials)} "
              f"trials ranked" + (f" ({pruned} pruned)" if pruned else ""))]
    if len(ranked) > 1:
        lines.append("margin: " + page.margin_text(ranked.iloc[1], "the runner-up"))
    if isinstance(best.get("logged_model"), str):
        lines.append(f"best model: {best['logged_model']} (README: Serving the best model)")
    return "\n".join(lines)


def write_report(sweep_dir: str | os.PathLike, tracking_uri: str, experiment: str) -> Path:
    """Rebuilds the outputs of the sweep recorded in `sweep_dir`; returns the report's path.

    Raises:
        ResultsError: unknown store, experiment or sweep; or the report could not be written.
    """
    if not Path(sweep_dir).is_dir():
        raise ResultsError(f"--sweep-dir {str(sweep_dir)!r} is not a directory; pass the Hydra "
                           "sweep dir, e.g. multirun/<date>/<time>")
    keys = store.read_manifest(sweep_dir).get("job_keys")
    written = write_sweep_outputs(sweep_dir, tracking_uri, experiment,
                                  sweep=None if keys else str(sweep_dir), job_keys=keys)
    if "report" not in written:
        target = Path(sweep_dir) / page.REPORT_NAME
        raise ResultsError(f"could not write {target} (see the warning above)")
    return written["report"]


def _log_sweep_artifacts(client, run_ids: Iterable[str], paths: Sequence[Path]) -> None:
    """Logs `paths` under `sweep_plots/` on each run; failures become warnings."""
    for run_id in run_ids:
        for path in paths:
            try:
                client.log_artifact(run_id, str(path), "sweep_plots")
            except InfrastructureError:  # a full disk, the store away: said once, by the caller
                raise
            except Exception as error:  # noqa: BLE001 - artifacts are a convenience copy
                logger.warning("vggsweep: could not log %s on run %s: %s", path.name, run_id, error)
