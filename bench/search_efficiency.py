"""Search efficiency: how many training epochs hyperband and quasi-random search spend before they
come within 0.2 points of the best validation accuracy of S3's exhaustive 64-point grid.

All three searches run in this one process over the same space (the `grid64` study's), the same
data and seed, through the product's own job runner; the figures are read back from MLflow.
It prints figures and ratios and asserts nothing (a benchmark, not a test).

    .venv/bin/python bench/search_efficiency.py --data-path ../shared/data/mnist \
        --train-samples 2000 --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.002  # 0.2 points of accuracy


def _run(tuner: str, common: list[str], extra: list[str], home: Path) -> tuple[list, float]:
    from vggsweep import config, run

    cfg = config.compose(["study=grid64", f"tuner={tuner}", *common, *extra,
                          f"experiment=bench-{tuner}", f"tracking.uri=sqlite:///{home}/mlflow.db",
                          f"tuner.directory={home}/tuner_state", "verbose=0"])
    started = time.perf_counter()
    run.run_job(cfg)
    return _trials(home, f"bench-{tuner}"), time.perf_counter() - started


def _trials(home: Path, experiment: str) -> list[tuple[float, float]]:
    """(epochs_run, val_accuracy) of each finished trial, in the order they finished."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`vggsweep.role` = 'trial' and "
                              "attributes.status = 'FINISHED'", order_by=["attributes.end_time ASC"],
                              max_results=5000)
    return [(r.data.metrics["epochs_run"], r.data.metrics["val_accuracy"]) for r in runs]


def epochs_to_reach(trials: list, target: float) -> float | None:
    spent = 0.0
    for epochs, accuracy in trials:
        spent += epochs
        if accuracy >= target:
            return spent
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=str(Path(__file__).resolve().parents[2] / "shared"
                                                   / "data" / "mnist"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16, help="quasi-random's trial budget")
    parser.add_argument("--val-fraction", type=float, default=0.5,
                        help="validation share of the pool: 0.5 gives as many validation images "
                        "as training ones, so 0.2 points is a resolvable difference")
    parser.add_argument("--test-samples", type=int, default=2000,
                        help="test images evaluated per trial (selection never uses them)")
    args = parser.parse_args()
    common = [f"data.path={args.data_path}", f"data.train_samples={args.train_samples}",
              f"data.test_samples={args.test_samples}", f"data.val_fraction={args.val_fraction}",
              f"budget.epochs={args.epochs}", "budget.patience=null"]
    home = Path(tempfile.mkdtemp(prefix="vggsweep-bench-"))
    grid, grid_time = _run("grid", common, ["budget.max_trials=64"], home)
    best = max(accuracy for _, accuracy in grid)
    target = best - TOLERANCE
    grid_epochs = epochs_to_reach(grid, target)
    rows = [("grid (64 points)", grid, grid_time)]
    for tuner, extra in (("hyperband", ["tuner.factor=3"]),
                         ("quasi_random", [f"budget.max_trials={args.trials}"])):
        trials, elapsed = _run(tuner, common, extra, home)
        rows.append((tuner, trials, elapsed))
    print(f"\nsearch efficiency on {args.data_path}: {args.train_samples} training images "
          f"(validation fraction {args.val_fraction}), "
          f"{args.epochs} epochs per full trial; grid64 best val_accuracy {best:.4f}, target "
          f"{target:.4f}")
    print(f"{'search':<18}{'trials':>8}{'epochs total':>14}{'epochs to target':>18}"
          f"{'ratio vs grid':>15}{'best val':>10}{'wall s':>9}")
    for name, trials, elapsed in rows:
        reach = epochs_to_reach(trials, target)
        ratio = f"{reach / grid_epochs:.2f}" if reach and grid_epochs else "not reached"
        print(f"{name:<18}{len(trials):>8}{sum(e for e, _ in trials):>14.0f}"
              f"{reach if reach else float('nan'):>18.0f}{ratio:>15}"
              f"{max(a for _, a in trials):>10.4f}{elapsed:>9.0f}")


if __name__ == "__main__":
    main()
