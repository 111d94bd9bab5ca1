"""Results come from the store: MLflow runs -> one typed pandas row per keras-tuner trial.

This is the one place that turns recorded runs into the trial table and metric histories, and the
one definition of "best": rank on the metric (validation accuracy unless asked otherwise), ties to
the trial that started first, then the run id; only FINISHED trials are ranked (pruned, failed and
interrupted ones follow, unranked). The leaderboard, plots, report, confidence and the end-of-sweep
outputs all read this table. Importing it is instant: MLflow is imported only when reading.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vggsweep.errors import ResultsError
from vggsweep.tracking import agreement, store

LEAD_COLUMNS = ["rank", "trial", "model", "activation", "data"]
METRIC_COLUMNS = ["val_accuracy", "test_accuracy", "train_time_s", "param_count", "epochs_run"]
#: The best trial's margin over each of the next few (`agreement.mark_behind_best`).
COMPARISON_COLUMNS = ["behind_best_images", "behind_best_p"]
TAIL_COLUMNS = ["status", "failure_reason", "trial_id", "run_id", "parent_run_id", "job",
                "data_sha256", "reference", "logged_model"]
# Written on a trial run by `python -m vggsweep.confidence` (retraining with several seeds).
CONFIDENCE_COLUMNS = ["test_accuracy_mean", "test_accuracy_ci95", "train_time_s_mean",
                      "train_time_s_ci95", "confidence_seeds"]
# The contract's other final trial metrics, after the columns above, then when the trial started.
EXTRA_METRIC_COLUMNS = ["test_loss", "test_nll", "test_ece", "best_epoch", "images_per_s",
                        "epochs_saved", "cost_adjusted_accuracy", *CONFIDENCE_COLUMNS]
ALL_METRICS = METRIC_COLUMNS + EXTRA_METRIC_COLUMNS
#: Params recorded on every trial that are not hyperparameters: its seed, the budget, the device's
#: batch scaling and the split sizes.
RECORDED_NOT_SEARCHED = {"seed", "epochs", "batch_size", "batch_scale", "train_size", "val_size",
                         "test_size"}
#: On the Pareto front of validation accuracy against training time / parameter count: no other
#: finished trial is both at least as accurate and cheaper.
PARETO_COLUMNS = ["pareto_time", "pareto_params"]
EXTRA_COLUMNS = [*EXTRA_METRIC_COLUMNS, *PARETO_COLUMNS, "start_time"]
FIXED_COLUMNS = LEAD_COLUMNS + METRIC_COLUMNS + COMPARISON_COLUMNS + TAIL_COLUMNS + EXTRA_COLUMNS
INTEGER_METRICS = {"param_count", "epochs_run", "best_epoch", "confidence_seeds", "epochs_saved"}
LOWER_IS_BETTER = {"train_time_s", "param_count", "test_loss", "test_nll", "test_ece"}
RUN_STATUSES = ("FINISHED", "PRUNED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
#: The validation accuracy of the model a trial kept (its best epoch); older stores logged it as
#: the last `val_accuracy` point.
KEPT_VAL_ACCURACY = "val_accuracy_kept"
OPTIMIZER_PARAM_PREFIX = "optimizer_"  # logged by older versions' Keras callback
_MISSING_TEXT = {"", "None", "none", "nan", "NaN"}
_BOOL_TEXT = {"true": True, "false": False}
_INT_PATTERN = re.compile(r"[+-]?\d+")


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


def sweep_matches(recorded: str | None, sweep: str) -> bool:
    """True when `recorded` (an absolute sweep dir) is `sweep` or ends with it."""
    if not recorded:
        return False
    recorded, wanted = os.path.normpath(recorded), os.path.normpath(sweep)
    if recorded == wanted:
        return True
    if os.path.exists(wanted) and os.path.realpath(recorded) == os.path.realpath(wanted):
        return True
    return not os.path.isabs(wanted) and recorded.endswith(os.sep + wanted)


def job_runs(runs: Iterable, sweep: str | None = None) -> list:
    """The job (parent) runs among `runs`, of one sweep when `sweep` is given."""
    jobs = [r for r in runs if r.data.tags.get(store.ROLE) == "job"]
    if sweep is None:
        return jobs
    return [r for r in jobs if sweep_matches(r.data.tags.get(store.SWEEP_DIR), sweep)]


def _kept_parent_ids(parents: list, parent_run_ids, sweep: str | None) -> set[str] | None:
    """The ids of the job runs the filters keep; None when no job filter is set."""
    if parent_run_ids is None and sweep is None:
        return None
    kept = set(parent_run_ids) if parent_run_ids is not None else {p.info.run_id for p in parents}
    if sweep is not None:
        in_sweep = {p.info.run_id for p in job_runs(parents, sweep)}
        if not in_sweep:
            recorded = sorted({p.data.tags.get(store.SWEEP_DIR, "?") for p in parents})
            raise ResultsError(f"no job of this experiment ran in sweep {sweep!r}; recorded "
                               "sweeps: " + (", ".join(recorded) or "(none)"))
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


def trial_status(run) -> str:
    """The run's MLflow status, or PRUNED for a finished trial the pruner stopped early."""
    if run.info.status == "FINISHED" and run.data.tags.get(store.PRUNED) == "true":
        return "PRUNED"
    return run.info.status


def _trial_record(run, runs_by_id: Mapping[str, Any], include_optimizer_params: bool) -> dict:
    """One trial run as a flat dict of raw values (params still strings under `hyper`)."""
    tags, metrics = run.data.tags, dict(run.data.metrics)
    if KEPT_VAL_ACCURACY in metrics:
        metrics["val_accuracy"] = metrics[KEPT_VAL_ACCURACY]
    parent_id = tags.get(store.PARENT)
    parent = runs_by_id.get(parent_id)
    record = {
        "trial": run.info.run_name or store.trial_run_name(tags.get(store.TRIAL_ID, "?")),
        "model": tags.get("model"),
        "activation": run.data.params.get("activation") or tags.get("activation"),
        "status": trial_status(run),
        "failure_reason": tags.get(store.FAILURE_REASON),
        "trial_id": tags.get(store.TRIAL_ID),
        "run_id": run.info.run_id,
        "parent_run_id": parent_id,
        "job": parent.data.tags.get(store.OVERRIDES) if parent else None,
        "data": tags.get("data") or (parent.data.tags.get("data") if parent else None),
        "data_sha256": parent.data.tags.get("data_sha256") if parent else None,
        "job_key": tags.get(store.JOB_KEY),
        "start_time": run.info.start_time or 0,
        "hyper": _hyperparameters(run.data.params, include_optimizer_params),
        "reference": tags.get(store.REFERENCE) == "true",
        "logged_model": parent.data.tags.get(store.LOGGED_MODEL) if parent else None,
        "agreement": agreement.decode(tags) if run.info.status == "FINISHED" else None,
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
    """Builds the typed trial table, columns in the documented order."""
    hyper_names = sorted({name for record in records for name in record["hyper"]})
    columns: dict[str, pd.Series] = {}
    for name in LEAD_COLUMNS[1:]:
        columns[name] = pd.Series([r[name] for r in records], dtype="str")
    for name in hyper_names:
        columns[name] = parse_param_values([r["hyper"].get(name) for r in records])
    for name in ALL_METRICS:
        values = pd.Series([r[name] for r in records], dtype="float64")
        columns[name] = values.round().astype("Int64") if name in INTEGER_METRICS else values
    for name in COMPARISON_COLUMNS:
        columns[name] = pd.Series([pd.NA] * len(records),
                                  dtype="Int64" if name.endswith("_images") else "Float64")
    for name in TAIL_COLUMNS:
        columns[name] = pd.Series([r[name] for r in records],
                                  dtype="boolean" if name == "reference" else "str")
    for name in PARETO_COLUMNS:
        columns[name] = pd.Series([False] * len(records), dtype="boolean")
    columns["start_time"] = pd.to_datetime(pd.Series([r["start_time"] for r in records],
                                                     dtype="int64"), unit="ms", utc=True)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    frame.insert(0, "rank", pd.Series([pd.NA] * len(records), dtype="Int64"))
    ordered = (LEAD_COLUMNS + hyper_names + METRIC_COLUMNS + COMPARISON_COLUMNS + TAIL_COLUMNS
               + EXTRA_COLUMNS)
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
    job_keys: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per keras-tuner trial run of `experiment`, ranked on validation accuracy.

    Args:
        tracking_uri: MLflow tracking URI of an existing store.
        experiment: experiment name.
        parent_run_ids: keep trials of these job (parent) runs only.
        sweep: keep trials of jobs whose sweep directory is this path or ends with it.
        model: keep trials of this model option (e.g. `cnn`).
        status: keep runs with this status (finished, pruned, failed, killed; any case).
        include_optimizer_params: keep `optimizer_*` params (logged by older versions).
        job_keys: keep trials of these jobs only.

    Raises:
        ResultsError: unknown store, experiment, sweep, model or status.
    """
    if status is not None and status.upper() not in RUN_STATUSES:
        valid = ", ".join(s.lower() for s in RUN_STATUSES)
        raise ResultsError(f"unknown status {status!r}; valid: {valid}")
    client, experiment_id = store.open_existing(tracking_uri, experiment)
    runs = store.search_all_runs(client, [experiment_id])
    trials = [r for r in runs if r.data.tags.get(store.ROLE) == "trial"]
    kept_parent_ids = _kept_parent_ids(job_runs(runs), parent_run_ids, sweep)
    if kept_parent_ids is not None:
        trials = [t for t in trials if t.data.tags.get(store.PARENT) in kept_parent_ids]
    if job_keys is not None:
        keys = set(job_keys)
        trials = [t for t in trials if t.data.tags.get(store.JOB_KEY) in keys]
    _check_choice(model, (t.data.tags.get("model") for t in trials), "model")
    runs_by_id = {r.info.run_id: r for r in runs}
    records = [_trial_record(t, runs_by_id, include_optimizer_params) for t in trials]
    _mark_superseded(records)
    records = [
        r for r in records
        if (model is None or r["model"] == model)
        and (status is None or r["status"] == status.upper())
    ]
    ranked = rank_trials(_records_to_frame(records))
    # A job's logged model is its best trial's (the writer ranks as `rank_trials` does).
    best_of_job = ranked[ranked["rank"].notna()].drop_duplicates("parent_run_id").index
    ranked.loc[~ranked.index.isin(best_of_job), "logged_model"] = None
    return agreement.mark_behind_best(ranked, {r["run_id"]: r["agreement"] for r in records})


def check_metric(metric: str) -> None:
    if metric not in ALL_METRICS:
        raise ResultsError(f"unknown metric {metric!r}; valid: {', '.join(ALL_METRICS)}")


def rank_trials(trials: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Sorts trials best first on `metric` and numbers them: the one definition of "best".

    Lower is better for times, losses, calibration error and parameter counts; ties go to the
    trial that started first, then to the smaller run id. Only FINISHED trials with a value are
    ranked; the others (pruned, failed, interrupted) follow, unranked.
    """
    check_metric(metric)
    rankable = (trials["status"] == "FINISHED") & trials[metric].notna()
    ranked = trials[rankable].sort_values(
        [metric, "start_time", "run_id"], ascending=[metric in LOWER_IS_BETTER, True, True],
        kind="stable",
    )
    unranked = trials[~rankable]
    unranked = unranked.assign(_order=unranked["status"].map(
        {s: i for i, s in enumerate(RUN_STATUSES)}).astype("float64"))
    unranked = unranked.sort_values(
        ["_order", metric, "model", "activation", "trial_id", "run_id"],
        ascending=[True, metric in LOWER_IS_BETTER, True, True, True, True],
    ).drop(columns="_order")
    ordered = pd.concat([ranked, unranked], ignore_index=True)
    ranks = list(range(1, len(ranked) + 1)) + [pd.NA] * len(unranked)
    ordered["rank"] = pd.array(ranks, dtype="Int64")
    return mark_pareto(ordered) if metric == "val_accuracy" else ordered


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats on both (lower cost, higher score)."""
    times, scores = np.asarray(costs, float), np.asarray(scores, float)
    order = np.lexsort((-scores, times))  # fastest first; at equal time, best score first
    on_front = np.zeros(len(times), dtype=bool)
    best_so_far = -np.inf
    for index in order:
        if scores[index] > best_so_far:
            on_front[index] = True
            best_so_far = scores[index]
    return on_front


def mark_pareto(trials: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Sets `pareto_time` and `pareto_params` on the finished trials (False elsewhere)."""
    trials = trials.copy()
    done = (trials["status"] == "FINISHED") & trials[metric].notna()
    for column, cost in zip(PARETO_COLUMNS, ("train_time_s", "param_count")):
        mask = pd.Series(False, index=trials.index, dtype="boolean")
        usable = done & trials[cost].notna()
        if usable.any():
            chosen = trials[usable]
            front = pareto_front(chosen[cost].to_numpy(float), chosen[metric].to_numpy(float))
            mask[chosen.index[front]] = True
        trials[column] = mask
    return trials


def rank_key(value: float, start_time_ms: int, run_id: str, metric: str = "val_accuracy"):
    """The sort key of `rank_trials` for one trial (smaller is better), for code that compares
    trials one at a time (the tuner keeping the best model, a job's best trial)."""
    return (value if metric in LOWER_IS_BETTER else -value, start_time_ms, run_id)


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a trial table (every column not fixed by the layout)."""
    return [c for c in trials.columns if c not in FIXED_COLUMNS]


def load_histories(client, run_ids: Iterable[str], keys: Sequence[str] = HISTORY_KEYS) -> dict:
    """Per-epoch metric histories of runs, one DataFrame (index `epoch`, a column per key) each.

    One value per epoch at step = epoch index. Older stores logged a run's final `val_accuracy`
    again afterwards; at a step already present the first value wins, and steps without a
    training `loss` are dropped when `loss` exists.
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
