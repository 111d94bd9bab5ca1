"""Search efficiency: how many training epochs each shipped search spends before one of its trials
comes within a tolerance of the best validation accuracy of S3's exhaustive 64-point grid, and
what its selected model scores on test; median and spread over repeats (seeds).

Every search runs over the `grid64` study's space (S3's CNN grid) on the same data, through the
product's own job runner, in this one process; the figures are read back from MLflow. The
validation split is large (default 5,000 images), so that the tolerance is resolvable; the grid
is run again for every repeat (its own seed), and each repeat's target comes from its own grid.
Every search starts, as the study does, from S3's own model (a warm start). A benchmark: it
prints figures and asserts nothing. About an hour per repeat on a 2-core CPU (sooner with
`--side-by-side`); the repeats recorded in `bench/search_efficiency_results.jsonl` (the
README's table: `--table-only --markdown`) are not run again:

    .venv/bin/python bench/search_efficiency.py --data-path ../shared/data/mnist --repeats 5 \
        --results bench/search_efficiency_results.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The searches compared with the grid: name -> (tuner overrides).
SEARCHES = {
    "quasi_random + median pruner": ["tuner=quasi_random", "budget.max_trials=16",
                                     "tuner.pruner=median", "tuner.pruner_warmup_epochs=1",
                                     "tuner.pruner_min_trials=3"],
    "quasi_random + ASHA": ["tuner=quasi_random", "budget.max_trials=16", "tuner.pruner=asha",
                            "tuner.factor=3", "tuner.pruner_warmup_epochs=1",
                            "tuner.pruner_min_trials=1"],
    "bayesian + median pruner": ["tuner=bayesian", "budget.max_trials=16",
                                 "tuner.num_initial_points=6", "tuner.pruner=median",
                                 "tuner.pruner_warmup_epochs=1", "tuner.pruner_min_trials=3"],
    "hyperband (2 iterations)": ["tuner=hyperband", "tuner.factor=3",
                                 "tuner.hyperband_iterations=2"],
}


def run_search(name: str, overrides: list[str], common: list[str], home: Path,
               repeat: int) -> tuple[list[dict], float]:
    """Runs one search; returns its finished trials in finishing order, and its wall time."""
    from vggsweep import config
    from vggsweep.job import task

    experiment = f"bench-{repeat}-{name.split()[0]}-{abs(hash(name)) % 10_000}"
    cfg = config.compose(["study=grid64", *common, *overrides, f"seed={repeat}",
                          f"experiment={experiment}", f"tracking.uri=sqlite:///{home}/mlflow.db",
                          f"tuner.directory={home}/tuner_state", "tuner.fresh=true", "verbose=0",
                          "tracking.log_model=false"])
    started = time.perf_counter()
    task.run_job(cfg)
    return trials(home, experiment), time.perf_counter() - started


def trials(home: Path, experiment: str) -> list[dict]:
    """Every finished (or pruned) trial, in the order they finished."""
    from vggsweep.tracking import results, store

    client, experiment_id = store.open_existing(f"sqlite:///{home}/mlflow.db", experiment)
    runs = client.search_runs([experiment_id], "tags.`vggsweep.role` = 'trial' and "
                              "attributes.status = 'FINISHED'",
                              order_by=["attributes.end_time ASC"], max_results=5000)
    return [{"epochs": r.data.metrics["epochs_run"],
             "val": r.data.metrics.get(results.KEPT_VAL_ACCURACY, r.data.metrics["val_accuracy"]),
             "test": r.data.metrics.get("test_accuracy"),
             "pruned": results.trial_status(r) == "PRUNED"} for r in runs]


def epochs_to_reach(found: list[dict], target: float) -> float | None:
    spent = 0.0
    for trial in found:
        spent += trial["epochs"]
        if not trial["pruned"] and trial["val"] >= target:
            return spent
    return None


def selected(found: list[dict]) -> dict:
    """The trial a user would pick: the best validation accuracy among finished trials."""
    return max((t for t in found if not t["pruned"]), key=lambda t: t["val"])


def spread(values: list[float], digits: int = 1) -> str:
    """Median [min-max]; a search that never reached the target counts as infinitely slow."""
    if not values:
        return "n/a"
    def shown(v):
        return ("never" if math.isinf(v) else f"{v:.{digits}f}")
    return f"{shown(statistics.median(values))} [{shown(min(values))}-{shown(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--val-samples", type=int, default=5000)
    parser.add_argument("--test-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=0.002,
                        help="how close to the grid's best counts as reaching it (0.002: 0.2 "
                        "points, 10 validation images of 5,000)")
    parser.add_argument("--results", type=Path, default=None,
                        help="a JSON-lines file: each finished search is appended to it, and the "
                        "repeats already in it are not run again (a cut-short run continues)")
    parser.add_argument("--only", type=int, default=None, metavar="REPEAT",
                        help="run only this repeat (0-based; its seed), e.g. to run several "
                        "repeats side by side in separate processes appending to one --results")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the grid in a second process while this one runs the other "
                        "searches (the same figures, sooner on 2 cores; wall times inflated)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table in Markdown, as the README shows it")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table from --results without running anything")
    args = parser.parse_args()
    if args.only is not None and not 0 <= args.only < args.repeats:
        parser.error(f"--only {args.only}: a repeat from 0 to {args.repeats - 1} (--repeats)")
    if args.table_only and not (args.results and args.results.is_file()):
        parser.error("--table-only needs --results FILE, an existing results file")
    done = load(args.results)
    if args.table_only:
        report(table(done), args, sorted(done))
        return
    fraction = args.val_samples / (args.train_samples + args.val_samples)
    common = [f"data.path={Path(args.data_path).resolve()}",
              f"data.train_samples={args.train_samples}", f"data.val_fraction={fraction:.6f}",
              f"data.test_samples={args.test_samples}", f"budget.epochs={args.epochs}",
              "budget.patience=null", "budget.max_trials=64"]
    from vggsweep.runtime import quiet

    quiet.quiet_libraries()  # as the command line does: TensorFlow's retracing notes to warnings
    home = Path(tempfile.mkdtemp(prefix="vggsweep-search-"))
    for repeat in range(args.repeats):
        if repeat in done or args.only not in (None, repeat):
            continue
        runs = run_repeat(common, home, repeat, args.side_by_side)
        grid, _ = runs["grid (64 points)"]
        target = max(t["val"] for t in grid) - args.tolerance
        grid_epochs = sum(t["epochs"] for t in grid)
        for name, (found, wall) in runs.items():
            reach = epochs_to_reach(found, target)
            row = {"reach": reach, "share": None if reach is None else reach / grid_epochs,
                   "spent": sum(t["epochs"] for t in found), "best_val": selected(found)["val"],
                   "test": selected(found)["test"], "wall": wall}
            done.setdefault(repeat, {})[name] = row
            print(f"repeat {repeat + 1}, {name}: {len(found)} trials, {row['spent']:.0f} "
                  f"epochs, reached the target ({target:.4f}) after {reach} epochs, best val "
                  f"{row['best_val']:.4f}, {wall:.0f} s", flush=True)
        if args.results:  # a repeat is recorded whole, or not at all
            with args.results.open("a") as out:
                out.write(json.dumps({"repeat": repeat, "searches": done[repeat]}) + "\n")
    report(table(done), args, sorted(done))


def run_repeat(common: list[str], home: Path, repeat: int, side_by_side: bool) -> dict:
    """Every search of one repeat: name -> (its trials, its wall time), the grid first. Side by
    side, the grid runs in a second process (its own store) while this one runs the others: the
    figures are the same (each trial is seeded by the repeat), only the wall times are not."""
    grid = ("grid (64 points)", ["tuner=grid"])
    if not side_by_side:
        return {name: run_search(name, overrides, common, home, repeat)
                for name, overrides in [grid, *SEARCHES.items()]}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        grid_home = home / "grid"
        grid_home.mkdir(exist_ok=True)
        pending = pool.submit(_quiet_run_search, *grid, common, grid_home, repeat)
        others = {name: run_search(name, overrides, common, home, repeat)
                  for name, overrides in SEARCHES.items()}
        return {grid[0]: pending.result(), **others}


def _quiet_run_search(*args):
    from vggsweep.runtime import quiet

    quiet.quiet_libraries()
    return run_search(*args)


def load(path: Path | None) -> dict[int, dict]:
    """The repeats already recorded in a results file: repeat -> search name -> figures."""
    if path is None or not path.exists():
        return {}
    lines = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {entry["repeat"]: entry["searches"] for entry in lines}


def table(done: dict[int, dict]) -> dict[str, list[dict]]:
    """Search name -> its figures, one per repeat."""
    rows = {name: [] for name in ["grid (64 points)", *SEARCHES]}
    for repeat in sorted(done):
        for name, row in done[repeat].items():
            rows.setdefault(name, []).append(row)
    return rows


#: The table's columns: (aligned header, its width, Markdown header).
COLUMNS = [("search", 30, "search"), ("epochs spent", 18, "epochs spent"),
           ("epochs to target", 20, "epochs to the grid's best"),
           ("share of grid", 22, "share of the grid's epochs"), ("reached", 9, "reached"),
           ("best val", 26, "best validation accuracy"),
           ("test (selected)", 26, "test accuracy of the selected model")]


def report(rows: dict, args, seeds: list[int]) -> None:
    """The table: median [min-max] of each search's figures over the recorded repeats."""
    print(f"\nS3's 64-point grid space, {args.train_samples} training / {args.val_samples} "
          f"validation / {args.test_samples} test MNIST images, {args.epochs} epochs per full "
          f"trial, {len(seeds)} repeat(s) (seeds {', '.join(map(str, seeds))}); tolerance "
          f"{args.tolerance}: median [min-max] over repeats")
    lines = []
    for name, found in rows.items():
        reached = [math.inf if r["reach"] is None else r["reach"] for r in found]
        shares = [math.inf if r["share"] is None else r["share"] for r in found]
        lines.append([name, spread([r["spent"] for r in found], 0), spread(reached, 0),
                      spread(shares, 2), f"{sum(not math.isinf(r) for r in reached)}/{len(found)}",
                      spread([r["best_val"] for r in found], 4),
                      spread([r["test"] for r in found], 4)])
    if args.markdown:  # the README's table
        print("| " + " | ".join(markdown for *_, markdown in COLUMNS) + " |")
        print("|---" + "|---:" * (len(COLUMNS) - 1) + "|")
        for cells in lines:
            print("| " + " | ".join(cell.replace("-", "\u2013") if i else cell
                                    for i, cell in enumerate(cells)) + " |")
        return
    for cells in [[header for header, *_ in COLUMNS], *lines]:
        print("".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
                      for i, (cell, (_, w, _)) in enumerate(zip(cells, COLUMNS))))

if __name__ == "__main__":
    main()


# The goal: some search reaches the grid's best (within the tolerance) in at most a fifth of the
# grid's epochs, median over the repeats: read the "share of grid" column against 0.20.
