"""A sweep on a small filesystem that fills up mid-sweep, then the rerun once space is back.

Run inside a mount namespace over a fresh tmpfs (`tests/test_outages.py` starts it so, with
`unshare`), as `python full_disk_sweep.py HOME MARKER COUNT -- SWEEP ARGS...`: the sweep runs in
HOME (on the tmpfs); when MARKER has appeared COUNT times in its output, a filler file takes every
free byte; once the sweep has ended the filler is deleted and the same command runs again. The
outcome (exit codes, output, the store's runs, every file checked for truncation) is printed as
one JSON line at the end, for the test to read (the tmpfs ends with the namespace).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import outage_fixtures as fixtures


def fill(folder: Path) -> int:
    """Takes every free byte of the filesystem of `folder`; returns how many were taken."""
    written = 0
    with open(folder / "filler", "wb", buffering=0) as handle:  # unbuffered: no late flush
        for block in (1 << 20, 4096, 1):
            while True:
                try:
                    count = handle.write(b"\0" * block)
                except OSError:
                    break
                if not count:
                    break
                written += count
    return written


def broken_files(home: Path) -> list[str]:
    """Files that are empty or do not parse (JSON, CSV) and temporary files left behind."""
    import pandas as pd

    broken = []
    for path in home.rglob("*"):
        if not path.is_file() or path.name == "filler":
            continue
        if path.name.startswith(".tmp-"):
            broken.append(f"{path}: temporary file left")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError:
                broken.append(f"{path}: not JSON")
        elif path.suffix == ".csv":
            try:
                pd.read_csv(path)
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                broken.append(f"{path}: {error}")
        elif path.suffix in (".png", ".html", ".keras", ".h5") and path.stat().st_size == 0:
            broken.append(f"{path}: empty")
    return broken


def store_runs(home: Path, experiment: str) -> list[dict]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000) if found else []
    models = client.search_logged_models([found.experiment_id]) if found else []
    return {"runs": [{"name": r.info.run_name, "status": r.info.status,
                      "role": r.data.tags.get("vggsweep.role"),
                      "trial_id": r.data.tags.get("vggsweep.trial_id"),
                      "reason": r.data.tags.get("vggsweep.failure_reason", "")} for r in runs],
            "logged_models": len(models)}


def main() -> None:
    home, marker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    args = sys.argv[sys.argv.index("--") + 1:]
    experiment = next(a.split("=", 1)[1] for a in args if a.startswith("experiment="))
    seen = {"count": 0, "filled": 0}

    def on_line(line: str, _elapsed: float) -> None:
        if marker in line and not seen["filled"]:
            seen["count"] += 1
            if seen["count"] >= count:
                seen["filled"] = fill(home)

    first = fixtures.sweep(home, args, on_line=on_line)
    broken = broken_files(home)
    (home / "filler").unlink(missing_ok=True)
    outcome = {"first": first.__dict__, "filled": seen["filled"], "broken": broken,
               "after_first": store_runs(home, experiment)}
    second = fixtures.sweep(home, args)
    outcome.update(second=second.__dict__, broken_after=broken_files(home),
                   after_second=store_runs(home, experiment))
    print(json.dumps(outcome), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
