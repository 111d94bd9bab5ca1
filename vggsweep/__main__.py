"""`python -m vggsweep [-m] [overrides]`: validate every job's config, then let Hydra run them.

Before Hydra starts any job, every combination of the swept values is composed and validated (bad
input: one line, exit 2, nothing created) and the MLflow store is created once. After the jobs,
whatever happened, the sweep's leaderboard and report are written, and the exit code says whether
every job completed (0), some failed (1), the input was bad (2) or the sweep was interrupted (130).
"""

from __future__ import annotations

import os
import signal
import sys

from vggsweep import config as config_module
from vggsweep.config import ConfigError


def _overrides(argv: list[str]) -> list[str]:
    return [arg for arg in argv if not arg.startswith("-")]


def prevalidate(argv: list[str]) -> tuple[int, object]:
    """Composes and validates every job of the sweep; returns (job count, first config)."""
    overrides = _overrides(argv)
    multirun = "-m" in argv or "--multirun" in argv
    combos = config_module.expand_sweep(overrides)
    first = config_module.compose(combos[0], return_hydra_config=True)
    study_params = first.hydra.sweeper.get("params") or {}
    if first.hydra.mode is not None and str(first.hydra.mode).endswith("MULTIRUN"):
        multirun = True
    if not multirun and len(combos) > 1:
        raise ConfigError(
            f"{len(combos)} combinations given without -m; add -m (multirun) to sweep them"
        )
    if multirun and study_params:
        cli_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        extra = [f"{k}={v}" for k, v in study_params.items() if k not in cli_keys]
        combos = config_module.expand_sweep(extra + overrides)
    for combo in combos:
        cfg = config_module.compose(combo)
        config_module.validate(cfg)
    return len(combos), first


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    import logging

    argv = sys.argv[1:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    inspect_only = config_module.is_inspect_only(argv)
    if not inspect_only:
        try:
            total, first = prevalidate(argv)
            from vggsweep import tracking

            uri = tracking.resolve_uri(first.tracking.uri)
            tracking.prepare_store(uri, first.experiment)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        os.environ["VGGSWEEP_TOTAL_JOBS"] = str(total)
    signal.signal(signal.SIGTERM, _terminate)
    exit_code = _run_hydra()
    sys.exit(exit_code)


def _run_hydra() -> int:
    import hydra

    from vggsweep import run

    config_module.register_configs()
    entry = hydra.main(config_path=str(config_module.CONF_DIR), config_name="config",
                       version_base="1.3")(run.task)
    interrupted = False
    try:
        entry()
    except run.Abort as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: open MLflow runs were ended KILLED; rerun the same command to "
              "resume", file=sys.stderr)
    finally:
        _write_outputs()
    if interrupted:
        return 130
    failed = [r for r in run.RESULTS if r.status != "completed"]
    for result in failed:
        print(f"job {result.name} ({result.overrides}) failed: {result.message}",
              file=sys.stderr)
    if failed:
        print(f"{len(failed)}/{len(run.RESULTS)} jobs failed", file=sys.stderr)
    return 1 if failed else 0


def _write_outputs() -> None:
    """Writes the leaderboard and report of each sweep this process ran jobs in."""
    from vggsweep import run

    targets: dict[tuple, list[str]] = {}
    for result in run.RESULTS:
        if result.sweep_dir:
            key = (result.sweep_dir, result.tracking_uri, result.experiment)
            targets.setdefault(key, []).extend([result.parent_run_id] if result.parent_run_id
                                               else [])
    for (sweep_dir, uri, experiment), parents in targets.items():
        if not parents:
            continue
        try:
            from vggsweep import leaderboard

            paths = leaderboard.write_sweep_outputs(sweep_dir, uri, experiment, parents)
            print(f"leaderboard: {paths.get('leaderboard', sweep_dir)}", flush=True)
        except Exception as error:  # noqa: BLE001 - the sweep's results are in MLflow anyway
            print(f"warning: could not write the sweep outputs in {sweep_dir}: {error}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
