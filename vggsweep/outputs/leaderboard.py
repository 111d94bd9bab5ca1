"""The leaderboard: rank, group and format the trial table (`vggsweep.tracking.results`).

Ranks on validation accuracy; the test accuracy is shown but never used to rank. Importing this
module is instant: neither MLflow nor TensorFlow nor keras-tuner is imported until a store is read.

    python -m vggsweep.leaderboard --experiment mnist --top 10
    python -m vggsweep.leaderboard --experiment mnist --group-by model,activation --out best.md
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vggsweep.errors import ResultsError
from vggsweep.runtime.files import atomic_path, atomic_write
from vggsweep.tracking import results
from vggsweep.tracking.results import CONFIDENCE_COLUMNS, rank_trials

TABLE_FORMATS = (".csv", ".md", ".html")
_SHORT_ID_COLUMNS = {"run_id", "parent_run_id"}


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
    if suffix == ".csv":  # written beside, then renamed: never a truncated file
        with atomic_path(path) as tmp:
            trials.to_csv(tmp, index=False)
    elif suffix == ".md":
        atomic_write(path, format_markdown(trials))
    else:
        atomic_write(path, f"<!doctype html>\n<meta charset=\"utf-8\">\n{table_html(trials)}\n")
    return path


#: Shown first, when they vary: what a sweep compares.
SCIENTIFIC_COLUMNS = ("data", "model", "activation")
#: The costs shown after the searched hyperparameters.
COST_COLUMNS = ("train_time_s", "param_count", "epochs_run")
#: Kept in the files, left out of what is shown (ids, where the runs are, the Pareto marks that
#: the report shows as their own tables).
HIDDEN_COLUMNS = {"parent_run_id", "job", "start_time", "data_sha256", "trial_id",
                  "logged_model", *results.PARETO_COLUMNS}


def _varies(values: pd.Series) -> bool:
    return values.astype("string").nunique(dropna=False) > 1


def _is_summary(column: str) -> bool:
    """A column `group_best` adds (trial counts, the metric's spread in the group)."""
    return column.startswith("n_") or column.endswith(("_min", "_max", "_std"))


def display_view(table: pd.DataFrame, metric: str = "val_accuracy", *,
                 extras: bool = True) -> tuple[pd.DataFrame, dict]:
    """What a reader needs first: rank and trial, the swept values that vary, the metrics
    (validation, test, the margin to the best), the searched hyperparameters that vary, the costs,
    then status. Returns the table to show and, apart, `{column: value}` of the hyperparameters
    that are the same in every row (`constants_line`). `extras`: also the secondary metrics that
    were measured (test NLL, calibration, ...); the confidence columns are always shown when
    measured. The files keep every column."""
    hyper = [c for c in results.hyperparameter_columns(table) if not _is_summary(c)]
    candidates = [c for c in SCIENTIFIC_COLUMNS if c in table] + hyper
    constant = [c for c in candidates if not _varies(table[c])]
    constants = {c: table[c].iloc[0] for c in constant
                 if len(table) and not pd.isna(table[c].iloc[0])}
    varying = [c for c in candidates if c not in constant]
    measured = [c for c in results.EXTRA_METRIC_COLUMNS if c in table and c != metric
                and table[c].notna().any() and (extras or c in CONFIDENCE_COLUMNS)]
    order = [
        "rank", "trial",
        *[c for c in varying if c in SCIENTIFIC_COLUMNS],
        *dict.fromkeys([metric, "val_accuracy", "test_accuracy"]),
        *[c for c in results.COMPARISON_COLUMNS if c in table and table[c].notna().any()],
        *[c for c in table if _is_summary(c)],
        *[c for c in varying if c not in SCIENTIFIC_COLUMNS
          and c not in results.RECORDED_NOT_SEARCHED],
        *COST_COLUMNS, *measured,
        *[c for c in varying if c in results.RECORDED_NOT_SEARCHED],
        *(["reference"] if "reference" in table and table["reference"].fillna(False).any()
          else []),
        "status",
        *(["failure_reason"] if _has_reasons(table) else []), "run_id",
    ]
    shown = [c for c in dict.fromkeys(order) if c in table and c not in HIDDEN_COLUMNS]
    return table[shown], constants


def _has_reasons(table: pd.DataFrame) -> bool:
    if "failure_reason" not in table:
        return False
    reasons = table["failure_reason"].astype("string").fillna("").str.strip()
    return not reasons.isin(["", "None", "nan", "<NA>"]).all()


def constants_line(constants: dict) -> str:
    """`Same in every row: data=digits, model=cnn, batch_size=32, ...` ("" when none)."""
    if not constants:
        return ""
    def shown(name, value) -> str:  # as configured: 0.9, not 0.9000
        return f"{value:g}" if isinstance(value, float) else _format_value(name, value)

    return "Same in every row: " + ", ".join(f"{name}={shown(name, value)}"
                                            for name, value in constants.items())


def console_view(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The console's table (`display_view` without the secondary metrics); the hyperparameters
    that are the same in every row are `constants_line`'s."""
    return display_view(table, metric, extras=False)[0]
