"""Scaling: the same 8-trial search with 1, 2 and 4 workers (`tuner.workers`) and with Hydra's
joblib launcher (2 jobs of 4 trials, 2 at a time), measured side by side in one run.

Prints each configuration's wall time (the whole command), trials per hour and the speed-up over
1 worker. Each configuration starts from a fresh tuner project (`tuner.fresh=true`) in its own
experiment of one shared store. A benchmark: nothing is asserted. On a 2-core CPU expect little
(one training process already uses both cores); on a machine with many cores or a GPU, workers
fill it.

    .venv/bin/python bench/scale.py --data-path ../shared/data/mnist --train-samples 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 8


def run(home: Path, args: list[str]) -> float:
    env = {**os.environ, "VGGSWEEP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vggsweep", *args], cwd=home, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()
    data = ([f"data.path={Path(args.data_path).resolve()}"] if Path(args.data_path).is_dir()
            else ["data=digits"])
    common = [f"model={args.model}", "activation=relu", "tuner=quasi_random", *data,
              f"data.train_samples={args.train_samples}", f"budget.epochs={args.epochs}",
              "budget.patience=null", "tracking.log_model=false", "tuner.fresh=true",
              "verbose=0"]
    home = Path(tempfile.mkdtemp(prefix="vggsweep-scale-"))
    rows = []
    for workers in args.workers:
        wall = run(home, [*common, f"budget.max_trials={TRIALS}", f"tuner.workers={workers}",
                          f"experiment=scale-w{workers}"])
        rows.append((f"{workers} worker{'s' if workers > 1 else ''}", wall))
        print(f"{rows[-1][0]}: {wall:.1f} s", flush=True)
    wall = run(home, ["-m", *common, f"budget.max_trials={TRIALS // 2}", "seed=0,1",
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=scale-jl"])
    rows.append(("joblib, 2 jobs x 4 trials, n_jobs=2", wall))
    base = rows[0][1]
    cores = os.cpu_count()
    print(f"\n{TRIALS} trials of {args.model} ({args.epochs} epochs, {args.train_samples} training "
          f"images), {cores} CPU cores, {os.environ.get('KERAS_BACKEND', 'tensorflow')} backend")
    print(f"{'configuration':<38}{'wall s':>9}{'trials/hour':>13}{'speed-up':>10}")
    for name, wall in rows:
        print(f"{name:<38}{wall:>9.1f}{TRIALS / wall * 3600:>13.0f}{base / wall:>10.2f}")


if __name__ == "__main__":
    main()
