"""The leaderboard: MLflow runs of a sweep -> one pandas row per keras-tuner trial.

Reads what the sweep recorded (one parent run per Hydra job tagged `vggsweep.role=job`, one nested
child run per trial tagged `vggsweep.role=trial`) and ranks the trials on validation accuracy; the
test accuracy is shown but never used to rank. Importing this module is instant: MLflow is imported
only inside the functions that read the store, and neither TensorFlow nor keras-tuner is imported.

    python -m vggsweep.leaderboard --experiment mnist --top 10
    python -m vggsweep.leaderboard --experiment mnist --group-by model,activation --out best.md
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

ROLE_TAG = "vggsweep.role"
PARENT_TAG = "mlflow.parentRunId"
LEAD_COLUMNS = ["rank", "model", "activation"]
METRIC_COLUMNS = ["val_accuracy", "test_accuracy", "train_time_s", "param_count", "epochs_run"]
TAIL_COLUMNS = ["status", "failure_reason", "trial_id", "run_id", "parent_run_id", "job"]
# The contract's other final trial metrics, appended after the columns above.
EXTRA_METRIC_COLUMNS = ["test_loss", "test_nll", "test_ece", "best_epoch", "images_per_s"]
# Written on a trial run by `python -m vggsweep.confidence` (retraining with several seeds).
CONFIDENCE_COLUMNS = ["test_accuracy_mean", "test_accuracy_ci95", "train_time_s_mean",
                      "train_time_s_ci95", "confidence_seeds"]
EXTRA_METRIC_COLUMNS += CONFIDENCE_COLUMNS
ALL_METRICS = METRIC_COLUMNS + EXTRA_METRIC_COLUMNS
FIXED_COLUMNS = LEAD_COLUMNS + METRIC_COLUMNS + TAIL_COLUMNS + EXTRA_METRIC_COLUMNS
INTEGER_METRICS = {"param_count", "epochs_run", "best_epoch", "confidence_seeds"}
LOWER_IS_BETTER = {"train_time_s", "param_count", "test_loss", "test_nll", "test_ece"}
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
OPTIMIZER_PARAM_PREFIX = "optimizer_"  # logged by mlflow's Keras callback, not a hyperparameter
_MISSING_TEXT = {"", "None", "none", "nan", "NaN"}
_BOOL_TEXT = {"true": True, "false": False}
_INT_PATTERN = re.compile(r"[+-]?\d+")
_SHORT_ID_COLUMNS = {"run_id", "parent_run_id"}
TABLE_FORMATS = (".csv", ".md", ".html")
TRACKING_URI_HELP = "default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db"


class ResultsError(ValueError):
    """Bad input to the results layer (unknown experiment, metric, sweep...), one line."""


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the product default `sqlite:///<cwd>/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder a local tracking URI points at, None for a remote store."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri[len("file:"):].removeprefix("//"))
    if "://" not in tracking_uri and not tracking_uri.startswith("databricks"):
        return Path(tracking_uri)
    return None


def open_store(tracking_uri: str, experiment: str):
    """Connects to an existing store and finds an existing experiment; creates neither.

    Returns:
        (MlflowClient, experiment_id).

    Raises:
        ResultsError: the store file/folder does not exist or the experiment is unknown.
    """
    store_path = _local_store_path(tracking_uri)
    if store_path is not None and not store_path.exists():
        raise ResultsError(
            f"no MLflow store at {store_path} (tracking URI {tracking_uri}); pass --tracking-uri, "
            "e.g. sqlite:///<launch dir>/mlflow.db, or set MLFLOW_TRACKING_URI"
        )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ResultsError(
            f"unknown experiment {experiment!r} in {tracking_uri}; experiments: "
            + (", ".join(names) or "(none)")
        )
    return client, found.experiment_id


def search_all_runs(client, experiment_id: str, filter_string: str = "") -> list:
    """Every run of an experiment matching `filter_string`, following MLflow's paging."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def parse_param_values(texts: Sequence[str | None]) -> pd.Series:
    """Turns MLflow's string params back into typed values.

    All booleans -> `boolean`; all integers -> `Int64`; all numbers -> float64; else strings.
    Missing values ("", "None" or absent) become NA.
    """
    cleaned = [None if t is None or str(t) in _MISSING_TEXT else str(t) for t in texts]
    present = [t for t in cleaned if t is not None]
    if not present:
        return pd.Series(cleaned, dtype="object")
    if all(t.lower() in _BOOL_TEXT for t in present):
        return pd.Series([_BOOL_TEXT[t.lower()] if t else pd.NA for t in cleaned], dtype="boolean")
    if all(_INT_PATTERN.fullmatch(t) for t in present):
        return pd.Series([int(t) if t else pd.NA for t in cleaned], dtype="Int64")
    try:
        return pd.Series([float(t) if t else math.nan for t in cleaned], dtype="float64")
    except ValueError:
        return pd.Series(cleaned, dtype="str")


def _sweep_matches(recorded: str | None, sweep: str) -> bool:
    """True when `recorded` (an absolute sweep dir) is `sweep` or ends with it."""
    if not recorded:
        return False
    recorded, wanted = os.path.normpath(recorded), os.path.normpath(sweep)
    if recorded == wanted:
        return True
    if os.path.exists(wanted) and os.path.realpath(recorded) == os.path.realpath(wanted):
        return True
    return not os.path.isabs(wanted) and recorded.endswith(os.sep + wanted)


def _kept_parent_ids(parents: list, parent_run_ids, sweep: str | None) -> set[str] | None:
    """The ids of the job runs the filters keep; None when no job filter is set."""
    if parent_run_ids is None and sweep is None:
        return None
    kept = set(parent_run_ids) if parent_run_ids is not None else {p.info.run_id for p in parents}
    if sweep is not None:
        in_sweep = {
            p.info.run_id for p in parents
            if _sweep_matches(p.data.tags.get("vggsweep.sweep_dir"), sweep)
        }
        if not in_sweep:
            recorded = sorted({p.data.tags.get("vggsweep.sweep_dir", "?") for p in parents})
            raise ResultsError(
                f"no job of this experiment ran in sweep {sweep!r}; recorded sweeps: "
                + (", ".join(recorded) or "(none)")
            )
        kept &= in_sweep
    return kept


def _hyperparameters(params: Mapping[str, str], include_optimizer_params: bool) -> dict:
    """A trial's hyperparameters by name, renamed where a name collides with a fixed column."""
    hyper = {}
    for name, value in params.items():
        if name == "activation" or (
            name.startswith(OPTIMIZER_PARAM_PREFIX) and not include_optimizer_params
        ):
            continue
        hyper[f"param_{name}" if name in FIXED_COLUMNS else name] = value
    return hyper


def _trial_record(run, runs_by_id: Mapping[str, Any], include_optimizer_params: bool) -> dict:
    """One trial run as a flat dict of raw values (params still strings under `hyper`)."""
    tags, metrics = run.data.tags, run.data.metrics
    parent_id = tags.get(PARENT_TAG)
    parent = runs_by_id.get(parent_id)
    record = {
        "model": tags.get("model"),
        "activation": run.data.params.get("activation") or tags.get("activation"),
        "status": run.info.status,
        "failure_reason": tags.get("vggsweep.failure_reason"),
        "trial_id": tags.get("vggsweep.trial_id"),
        "run_id": run.info.run_id,
        "parent_run_id": parent_id,
        "job": parent.data.tags.get("vggsweep.overrides") if parent else None,
        "job_key": tags.get("vggsweep.job_key"),
        "start_time": run.info.start_time or 0,
        "hyper": _hyperparameters(run.data.params, include_optimizer_params),
    }
    record.update({name: metrics.get(name, math.nan) for name in ALL_METRICS})
    return record


def _mark_superseded(records: list[dict]) -> None:
    """Explains interrupted (KILLED) trials, naming the later run that re-ran the same trial."""
    for record in records:
        if record["status"] != "KILLED":
            continue
        reruns = [
            other for other in records
            if other["job_key"] == record["job_key"] and other["trial_id"] == record["trial_id"]
            and other["start_time"] > record["start_time"] and other["trial_id"] is not None
        ]
        reason = record["failure_reason"] or "interrupted"
        if reruns:
            latest = max(reruns, key=lambda other: other["start_time"])
            reason += f"; re-run as {latest['run_id'][:8]}"
        record["failure_reason"] = reason


def _records_to_frame(records: list[dict]) -> pd.DataFrame:
    """Builds the typed leaderboard frame, columns in the documented order."""
    hyper_names = sorted({name for record in records for name in record["hyper"]})
    columns: dict[str, pd.Series] = {}
    for name in LEAD_COLUMNS[1:]:
        columns[name] = pd.Series([r[name] for r in records], dtype="str")
    for name in hyper_names:
        columns[name] = parse_param_values([r["hyper"].get(name) for r in records])
    for name in ALL_METRICS:
        values = pd.Series([r[name] for r in records], dtype="float64")
        columns[name] = values.round().astype("Int64") if name in INTEGER_METRICS else values
    for name in TAIL_COLUMNS:
        columns[name] = pd.Series([r[name] for r in records], dtype="str")
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    frame.insert(0, "rank", pd.Series([pd.NA] * len(records), dtype="Int64"))
    ordered = LEAD_COLUMNS + hyper_names + METRIC_COLUMNS + TAIL_COLUMNS + EXTRA_METRIC_COLUMNS
    return frame[ordered]


def _check_choice(value: str | None, known: Iterable[str], what: str) -> None:
    """Raises ResultsError when `value` is set and not among `known`."""
    known = sorted(set(known))
    if value is not None and value not in known:
        recorded = ", ".join(known) or "(none)"
        raise ResultsError(f"unknown {what} {value!r}; {what}s recorded: {recorded}")


def load_trials(
    tracking_uri: str,
    experiment: str,
    *,
    parent_run_ids: Iterable[str] | None = None,
    sweep: str | None = None,
    model: str | None = None,
    status: str | None = None,
    include_optimizer_params: bool = False,
) -> pd.DataFrame:
    """One row per keras-tuner trial run of `experiment`, ranked on validation accuracy.

    Args:
        tracking_uri: MLflow tracking URI of an existing store.
        experiment: experiment name.
        parent_run_ids: keep trials of these job (parent) runs only.
        sweep: keep trials of jobs whose `vggsweep.sweep_dir` is this path or ends with it.
        model: keep trials of this model option (e.g. `cnn`).
        status: keep runs with this status (finished, failed, killed; any case).
        include_optimizer_params: keep the `optimizer_*` params of mlflow's Keras callback.

    Raises:
        ResultsError: unknown store, experiment, sweep, model or status.
    """
    if status is not None and status.upper() not in RUN_STATUSES:
        valid = ", ".join(s.lower() for s in RUN_STATUSES)
        raise ResultsError(f"unknown status {status!r}; valid: {valid}")
    client, experiment_id = open_store(tracking_uri, experiment)
    runs = search_all_runs(client, experiment_id)
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == "job"]
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]
    kept_parent_ids = _kept_parent_ids(parents, parent_run_ids, sweep)
    if kept_parent_ids is not None:
        trials = [t for t in trials if t.data.tags.get(PARENT_TAG) in kept_parent_ids]
    _check_choice(model, (t.data.tags.get("model") for t in trials), "model")
    runs_by_id = {r.info.run_id: r for r in runs}
    records = [_trial_record(t, runs_by_id, include_optimizer_params) for t in trials]
    _mark_superseded(records)
    records = [
        r for r in records
        if (model is None or r["model"] == model)
        and (status is None or r["status"] == status.upper())
    ]
    return rank_trials(_records_to_frame(records))


def rank_trials(trials: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Sorts trials best first on `metric` and numbers them; unfinished trials go last, unranked.

    Lower is better for times, losses, calibration error and parameter counts; ties go to the
    faster trial.
    """
    if metric not in trials.columns:
        raise ResultsError(f"unknown metric {metric!r}; valid: {', '.join(ALL_METRICS)}")
    rankable = (trials["status"] == "FINISHED") & trials[metric].notna()
    ranked = trials[rankable].sort_values(
        [metric, "train_time_s", "run_id"],
        ascending=[metric in LOWER_IS_BETTER, True, True],
        kind="stable",
    )
    unranked = trials[~rankable].sort_values(
        ["status", "model", "activation", "trial_id", "run_id"]
    )
    ordered = pd.concat([ranked, unranked], ignore_index=True)
    ranks = list(range(1, len(ranked) + 1)) + [pd.NA] * len(unranked)
    ordered["rank"] = pd.array(ranks, dtype="Int64")
    return ordered


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a leaderboard frame (every column not fixed by the layout)."""
    return [c for c in trials.columns if c not in FIXED_COLUMNS]


def group_best(
    trials: pd.DataFrame,
    by: Sequence[str] = ("model", "activation"),
    metric: str = "val_accuracy",
) -> pd.DataFrame:
    """The best trial of each group, with trial counts and the metric's spread in the group.

    This is the Tuning Playbook's isolation table: with `by=["model", "activation"]`, one row per
    scientific combination, the nuisance hyperparameters tuned away. Groups without a finished
    trial are kept (metric empty), so that a combination that always failed stays visible.
    """
    by = list(by)
    missing = [c for c in by if c not in trials.columns]
    if missing:
        valid = ", ".join(trials.columns)
        raise ResultsError(f"unknown column(s) {missing} to group by; valid: {valid}")
    ranked = rank_trials(trials, metric)
    spread = [f"{metric}_min", f"{metric}_max", f"{metric}_std"]
    rows = []
    for _, group in ranked.groupby(by, dropna=False, sort=False):
        done = group.loc[group["rank"].notna(), metric].astype("float64")
        best = group.iloc[0].to_dict()  # ranked order: the group's best trial comes first
        best.update(zip(spread, (done.min(), done.max(), done.std())))
        best.update(n_trials=len(group), n_finished=len(done))
        rows.append(best)
    summary = [*by, "n_trials", "n_finished", metric, *spread]
    rest = [c for c in trials.columns if c not in summary]
    table = pd.DataFrame(rows, columns=summary + rest).astype(
        {c: ranked[c].dtype for c in trials.columns}
    )
    table = table.sort_values(["rank"], na_position="last", kind="stable", ignore_index=True)
    return table.astype({"n_trials": "int64", "n_finished": "int64"})


def load_histories(client, run_ids: Iterable[str], keys: Sequence[str] = HISTORY_KEYS) -> dict:
    """Per-epoch metric histories of runs, one DataFrame (index `epoch`, a column per key) each.

    MLflow's Keras callback logs one value per epoch at step = epoch index. A run's final
    `val_accuracy` (the kept epoch's) may be logged again afterwards; at a step already present the
    first value logged wins, and steps without a training `loss` are dropped when `loss` exists.
    """
    histories = {}
    for run_id in run_ids:
        series = {}
        for key in keys:
            points = sorted(
                client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)
            )
            by_step: dict[int, float] = {}
            for point in points:
                by_step.setdefault(point.step, point.value)
            series[key] = pd.Series(by_step, dtype="float64")
        frame = pd.DataFrame(series).sort_index()
        if "loss" in frame and frame["loss"].notna().any():
            frame = frame[frame["loss"].notna()]
        frame.index.name = "epoch"
        histories[run_id] = frame
    return histories


def _format_value(column: str, value: Any, max_text: int | None = None) -> str:
    """One cell as text: NA empty, floats to 4 decimals (tiny ones in scientific notation)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"
    text = str(value)
    if column in _SHORT_ID_COLUMNS:
        return text[:8]
    if max_text is not None and len(text) > max_text:
        return text[: max_text - 1] + "…"
    return text


def formatted_frame(trials: pd.DataFrame, max_text: int | None = None) -> pd.DataFrame:
    """The table as display strings (what the console, Markdown and HTML outputs show)."""
    return pd.DataFrame(
        {c: [_format_value(c, v, max_text) for v in trials[c].tolist()] for c in trials.columns},
        index=trials.index,
        dtype="object",
    )


def _right_aligned(trials: pd.DataFrame) -> set[str]:
    """Numeric (not boolean) columns, which read best right-aligned."""
    return {
        c for c in trials.columns
        if pd.api.types.is_numeric_dtype(trials[c]) and not pd.api.types.is_bool_dtype(trials[c])
    }


def format_console(trials: pd.DataFrame, max_text: int = 40) -> str:
    """A fixed-width text table: floats to 4 decimals, run ids shortened to 8 characters."""
    cells = formatted_frame(trials, max_text)
    numeric = _right_aligned(trials)
    widths = {c: max([len(c), *(len(v) for v in cells[c])]) for c in cells.columns}

    def line(values: Mapping[str, str]) -> str:
        return "  ".join(
            values[c].rjust(widths[c]) if c in numeric else values[c].ljust(widths[c])
            for c in cells.columns
        ).rstrip()

    rows = [line({c: c for c in cells.columns})]
    rows.append("  ".join("-" * widths[c] for c in cells.columns))
    rows.extend(line(row) for row in cells.to_dict("records"))
    return "\n".join(rows)


def format_markdown(trials: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no dependency on `tabulate`)."""
    cells = formatted_frame(trials)
    numeric = _right_aligned(trials)

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(c) for c in cells.columns) + " |"
    rule = "|" + "|".join("---:" if c in numeric else "---" for c in cells.columns) + "|"
    body = [
        "| " + " | ".join(escape(v) for v in row) + " |" for row in cells.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def table_html(trials: pd.DataFrame, table_class: str = "leaderboard") -> str:
    """An HTML `<table>` of the formatted values (escaped)."""
    return formatted_frame(trials).to_html(index=False, escape=True, classes=table_class, border=0)


def check_table_format(path: str | os.PathLike) -> str:
    """The table format (lower-case extension) of `path`; ResultsError when not writable."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ResultsError(
            f"cannot write {str(path)!r}: unknown table format {suffix or '(no extension)'}; "
            f"valid: {', '.join(TABLE_FORMATS)}"
        )
    return suffix


def write_table(trials: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Writes the table in the format its extension names: `.csv`, `.md` or `.html`.

    CSV keeps full precision; Markdown and HTML show the formatted values.
    """
    path = Path(path)
    suffix = check_table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        trials.to_csv(path, index=False)
    elif suffix == ".md":
        path.write_text(format_markdown(trials), encoding="utf-8")
    else:
        page = f"<!doctype html>\n<meta charset=\"utf-8\">\n{table_html(trials)}\n"
        path.write_text(page, encoding="utf-8")
    return path


def write_sweep_outputs(
    sweep_dir: str | os.PathLike,
    tracking_uri: str,
    experiment: str,
    parent_run_ids: Iterable[str] | None = None,
) -> dict[str, Path]:
    """The end-of-sweep outputs: `leaderboard.csv`, the sweep plots and `report.html`.

    The CSV is written first; a failing plot, report or artifact upload is logged as a warning and
    skipped. The sweep-level plots and the CSV are logged as artifacts (`sweep_plots/`) on every
    job run of the sweep.

    Args:
        sweep_dir: the Hydra sweep (or run) directory; created if missing.
        tracking_uri: MLflow tracking URI of the sweep.
        experiment: experiment name.
        parent_run_ids: the sweep's job runs; None for every trial of the experiment.

    Returns:
        Output name -> path, for the outputs that were written.

    Raises:
        ResultsError: unknown store or experiment (nothing could be read).
    """
    sweep_dir = Path(sweep_dir)
    parent_run_ids = None if parent_run_ids is None else list(parent_run_ids)
    trials = load_trials(tracking_uri, experiment, parent_run_ids=parent_run_ids)
    outputs = {"leaderboard": write_table(trials, sweep_dir / "leaderboard.csv")}
    client, _ = open_store(tracking_uri, experiment)
    try:
        from vggsweep import report

        outputs.update(
            report.write_plots_and_report(trials, client, sweep_dir, experiment, tracking_uri)
        )
    except Exception as error:  # noqa: BLE001 - the CSV is written; the rest is best effort
        logger.warning("vggsweep: sweep plots/report failed: %s", error)
    job_run_ids = parent_run_ids if parent_run_ids is not None else sorted(
        set(trials["parent_run_id"].dropna())
    )
    artifacts = [p for name, p in outputs.items() if p.suffix == ".png" or name == "leaderboard"]
    _log_sweep_artifacts(client, job_run_ids, artifacts)
    return outputs


def _log_sweep_artifacts(client, run_ids: Iterable[str], paths: Sequence[Path]) -> None:
    """Logs `paths` under `sweep_plots/` on each run; failures become warnings."""
    for run_id in run_ids:
        for path in paths:
            try:
                client.log_artifact(run_id, str(path), "sweep_plots")
            except Exception as error:  # noqa: BLE001 - artifacts are a convenience copy
                logger.warning("vggsweep: could not log %s on run %s: %s", path.name, run_id, error)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one `error: ...` line and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def run_cli(main_body, argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    """Parses `argv` and runs `main_body(args)`; bad input -> one stderr line, exit status 2."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help (0) or a usage error (2), already printed
        return int(exit_request.code or 0)
    from mlflow.exceptions import MlflowException

    try:
        return main_body(args)
    except (ResultsError, MlflowException) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m vggsweep.leaderboard",
        description="Rank the trials of a recorded sweep on validation accuracy "
        "(test accuracy is shown, never used to rank).",
    )
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument("--sweep", help="only jobs of this sweep dir (path or its last components)")
    parser.add_argument("--model", help="only trials of this model option, e.g. cnn")
    parser.add_argument("--status", help="only runs with this status: finished, failed, killed")
    parser.add_argument("--top", type=_positive_int, help="show the best N rows")
    parser.add_argument(
        "--by", default="val_accuracy", help=f"rank on this metric: {', '.join(ALL_METRICS)}"
    )
    parser.add_argument("--group-by", help="best trial per group, e.g. model,activation")
    parser.add_argument("--out", help="also write the table to FILE (.csv, .md or .html)")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _console_view(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Keeps the console readable: no secondary metrics (unless measured, e.g. confidence), no
    hyperparameter that is the same in every row, no job and parent columns. The file output
    keeps every column."""
    drop = [c for c in EXTRA_METRIC_COLUMNS if c != metric and c in table
            and (c not in CONFIDENCE_COLUMNS or table[c].isna().all())]
    if len(table) > 1:
        drop += [c for c in hyperparameter_columns(table)
                 if not c.startswith("n_") and not c.endswith(("_min", "_max", "_std"))
                 and table[c].astype("string").nunique(dropna=False) <= 1]
    drop += [c for c in ("parent_run_id", "job") if c in table]
    reasons = table["failure_reason"].astype("string").fillna("") if "failure_reason" in table \
        else None
    if reasons is not None and reasons.str.strip().isin(["", "None", "nan", "<NA>"]).all():
        drop.append("failure_reason")
    return table.drop(columns=sorted(set(drop) - {"model", "activation"}))


def _leaderboard_main(args: argparse.Namespace) -> int:
    if args.by not in ALL_METRICS:
        raise ResultsError(f"unknown metric {args.by!r} for --by; valid: {', '.join(ALL_METRICS)}")
    if args.out:
        check_table_format(args.out)
    trials = load_trials(
        args.tracking_uri or default_tracking_uri(), args.experiment,
        sweep=args.sweep, model=args.model, status=args.status,
    )
    if args.group_by:
        columns = [c.strip() for c in args.group_by.split(",") if c.strip()]
        table = group_best(trials, columns, args.by)
    else:
        table = rank_trials(trials, args.by)
    if args.top:
        table = table.head(args.top)
    if table.empty:
        print("no trials match", file=sys.stderr)
    else:
        print(format_console(_console_view(table, args.by)))
    if args.out:
        write_table(table, args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return run_cli(_leaderboard_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
