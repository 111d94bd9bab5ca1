"""Overhead: the same model, data and epochs through `python -m vggsweep` and through a plain Keras
script (bench/plain_keras.py), as whole processes, interleaved, several rounds.

S3's CNN at one fixed point (nothing searched: one trial), Adam 1e-3, batch 64, 3 epochs on
9,000 MNIST training images with 1,000 validation images carved from the training data, tested on
the complete 10,000-image test set. Two baselines: the plain script as a user writes it (NumPy
arrays to `fit`), and the same script fed the way vggsweep feeds TensorFlow (one repeated tf.data
pipeline; `--no-repeated` leaves it out), which isolates what the framework itself costs. Prints
the times per round, the ratios (median over rounds), the per-trial ratio (vggsweep's trial:
build, fit, test evaluation and its recording, against plain Keras' fit + one evaluation on
validation and one on test), and where vggsweep's wall time goes (timers around its stages).
A benchmark: nothing is asserted; machines are noisy, so compare ratios measured side by side in
one run.

    .venv/bin/python bench/overhead.py --data-path ../shared/data/mnist --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
S3_POINT = ["model=cnn", "activation=relu", "model.conv_blocks=2", "model.filters=32",
            "model.kernel_size=3", "model.pool_size=2", "model.dense_layers=1",
            "model.dense_units=512", "model.dropout=0.0", "model.batch_norm=false",
            "optimizer.learning_rate=1e-3", "optimizer.schedule=constant"]


def vggsweep_args(args) -> list[str]:
    return [*S3_POINT, f"data.path={args.data_path}", f"data.train_samples={args.train_samples}",
            "budget.max_trials=1", f"budget.epochs={args.epochs}", "budget.patience=null",
            "tuner.fresh=true", "experiment=overhead", "verbose=1"]


def timed(command: list[str], home: Path) -> tuple[float, float, str]:
    """Runs a whole process; returns (wall s, CPU s of the process and its children, stdout)."""
    env = {**os.environ, "VGGSWEEP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def vggsweep_trial_s(stdout: str) -> float:
    """The trial's wall time from its start to its end, as vggsweep's stage timer printed it."""
    for line in stdout.splitlines():
        if line.startswith("OVERHEAD "):
            return json.loads(line[len("OVERHEAD "):])["trial"]
    raise SystemExit("no stage timings in the vggsweep run's output")


CONTENDERS = ("plain", "vggsweep", "repeated")


def pairs(args) -> list[dict]:
    """Rounds of whole processes, interleaved (the order rotates from round to round)."""
    home = Path(tempfile.mkdtemp(prefix="vggsweep-overhead-"))
    plain = [sys.executable, str(ROOT / "bench" / "plain_keras.py"), "--data-path",
             args.data_path, "--train-samples", str(args.train_samples), "--epochs",
             str(args.epochs)]
    commands = {"plain": plain, "repeated": [*plain, "--input", "repeated"],
                "vggsweep": [sys.executable, __file__, "--stages", "--", *vggsweep_args(args)]}
    names = [name for name in CONTENDERS if name != "repeated" or args.repeated]
    # One warm-up run creates the store (a user's sweeps run against an existing one) and fills
    # the page cache for both.
    timed([sys.executable, "-m", "vggsweep", *vggsweep_args(args)], home)
    rows = []
    for index in range(args.pairs):
        row = {}
        for which in names[index % len(names):] + names[:index % len(names)]:
            wall, cpu, out = timed(commands[which], home)
            row.update({f"{which}_wall": wall, f"{which}_cpu": cpu})
            if which == "vggsweep":
                row.update(vggsweep_trial=vggsweep_trial_s(out), stages=_stages(out))
            else:
                row[f"{which}_trial"] = json.loads(out.strip().splitlines()[-1])["trial_s"]
        rows.append(row)
        times = ", ".join(f"{name} {row[name + '_wall']:.1f} s (trial {row[name + '_trial']:.1f} s)"
                          for name in names)
        print(f"round {index + 1}: {times}: vggsweep/plain whole "
              f"x{row['vggsweep_wall'] / row['plain_wall']:.3f}, trial "
              f"x{row['vggsweep_trial'] / row['plain_trial']:.3f}", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    return rows


def _stages(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("OVERHEAD "):
            return json.loads(line[len("OVERHEAD "):])
    return {}


LABELS = {"plain": "plain Keras (NumPy arrays to fit)",
          "repeated": "plain Keras (vggsweep's tf.data input)"}


def report(rows: list[dict]) -> None:
    def median(key):
        return (statistics.median(r[key] for r in rows))
    baselines = [name for name in ("plain", "repeated") if f"{name}_wall" in rows[0]]
    print(f"\nmedians of {len(rows)} interleaved rounds (2 CPU cores, TensorFlow backend); "
          "ratio = median of the rounds' vggsweep / baseline:")
    for what, label in (("wall", "whole process"), ("cpu", "CPU time"), ("trial", "per trial")):
        print(f"  {label:<14}  vggsweep {median('vggsweep_' + what):6.1f} s")
        for name in baselines:
            print(f"      vs {LABELS[name]:<40} {median(f'{name}_{what}'):6.1f} s   ratio "
                  f"{median_ratio(rows, what, name):.3f}")
    stages = [r["stages"] for r in rows if r.get("stages")]
    if stages:
        print("  where vggsweep's wall time goes (median; the trial includes the fit):")
        for name in stages[0]:
            print(f"    {name:<34}{statistics.median(s.get(name, 0.0) for s in stages):7.2f} s")


def median_ratio(rows: list[dict], what: str, baseline: str = "plain") -> float:
    return statistics.median(r[f"vggsweep_{what}"] / r[f"{baseline}_{what}"] for r in rows)


def run_stages(argv: list[str]) -> None:
    """Runs `python -m vggsweep ARGV` in this process with timers around its stages, then prints
    `OVERHEAD {json}`: seconds per stage, measured as they happened (stages nest: the trial holds
    its fit)."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    times: dict[str, float] = {}

    def wrap(module, name: str, label: str):
        original = getattr(module, name)

        def timed_call(*a, **k):
            begin = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - begin
        setattr(module, name, timed_call)

    from vggsweep.runtime import collector

    collector.pause()  # as `python -m vggsweep` does first (launch.main), before the imports
    import vggsweep.job.launch as launch

    times["start-up (imports)"] = time.perf_counter() - started
    begin = time.perf_counter()
    from vggsweep.job import runner
    from vggsweep.models import training
    from vggsweep.outputs import sweep
    from vggsweep.runtime import accelerator
    from vggsweep.search import tuning
    from vggsweep.tracking import store

    accelerator.keras_module()
    times["import Keras, TensorFlow, keras-tuner"] = time.perf_counter() - begin

    wrap(launch, "prevalidate", "check every job, load the data")
    wrap(store, "prepare", "create/open the store")
    wrap(launch, "_run_hydra", "Hydra and the job (all below)")
    wrap(runner.Job, "tracker", "open the tracker")
    wrap(runner.Job, "tuner", "build the tuner (keras-tuner)")
    wrap(tuning.SweepTuner, "run_trial", "trial")
    wrap(training, "fit", "  fit (model.fit)")
    wrap(training, "evaluate", "  test evaluation")
    wrap(tuning.SweepTuner, "_keep", "  keep the best model on disk")
    wrap(runner, "log_best_model", "log the best model and its pictures")
    wrap(sweep, "write_sweep_outputs", "leaderboard, plots, report")
    finish = launch.finish

    def report_then_finish(code: int) -> None:
        times["total"] = time.perf_counter() - started
        print("OVERHEAD " + json.dumps(times), flush=True)
        finish(code)

    launch.finish = report_then_finish
    sys.argv = ["vggsweep", *argv]
    launch.main()


def main() -> None:
    if "--stages" in sys.argv:
        run_stages(sys.argv[sys.argv.index("--") + 1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--train-samples", type=int, default=9000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3, help="rounds (each runs every contender)")
    parser.add_argument("--no-repeated", dest="repeated", action="store_false",
                        help="leave out the plain script fed like vggsweep (tf.data, repeated)")
    args = parser.parse_args()
    if not Path(args.data_path).is_dir():
        raise SystemExit(f"skipped: no MNIST at {args.data_path}")
    args.data_path = str(Path(args.data_path).resolve())
    report(pairs(args))


if __name__ == "__main__":
    main()
