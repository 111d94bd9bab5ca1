"""Benchmark: what recording one epoch costs the training, queued (the outbox) or written at once.

A trial's Keras callback records each epoch's metrics. Written at once (`log_batch`, as before the
outbox), the training waits for the store every epoch; queued, it waits for an append to the
outbox file. Prints the time per epoch of each, on a SQLite store and, with --server URL, on a
tracking server, and how long the queue takes to be written. A benchmark, not a test: nothing is
asserted.

    python bench/outbox.py                          # SQLite in a temporary folder
    python bench/outbox.py --server http://127.0.0.1:5000 --epochs 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggsweep.tracking.writer import JobTracker

LOGS = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75}


def measure(uri: str, folder: Path, epochs: int) -> dict:
    queued = JobTracker(uri, "bench-outbox", "queued", {}, outbox=folder / "outbox" / "job.jsonl")
    direct = JobTracker(uri, "bench-outbox", "direct", {})  # no outbox: each write at once
    figures = {}
    for name, tracker in (("written at once", direct), ("queued (outbox)", queued)):
        with tracker.parent_run(name):
            with tracker.child_run("trial", "trial-0", {}, {}) as run:
                costs = []
                for epoch in range(epochs):
                    started = time.perf_counter()
                    tracker.log_epoch(run, LOGS, epoch)
                    costs.append(time.perf_counter() - started)
                started = time.perf_counter()
                tracker.sync()
                figures[name] = (statistics.median(costs), max(costs),
                                 time.perf_counter() - started)
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a tracking server's URL (default: SQLite)")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.server or f"sqlite:///{tmp}/mlflow.db"
        figures = measure(uri, Path(tmp), args.epochs)
    print(f"store {uri}, {args.epochs} epochs of {len(LOGS)} metrics")
    print(f"{'':18}{'per epoch (median)':>20}{'slowest':>12}{'then waiting':>14}")
    for name, (median, slowest, drain) in figures.items():
        print(f"{name:18}{median * 1e3:>17.2f} ms{slowest * 1e3:>9.2f} ms{drain * 1e3:>11.1f} ms")


if __name__ == "__main__":
    main()
