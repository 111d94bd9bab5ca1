"""The launching process: check every job, let Hydra's launcher run them, read back the outcome.

Before any job starts, every combination of the swept values is composed and validated, the data
is loaded and checked, the tracking URI is checked and the saved tuner state is read (bad input:
one line, exit 2, nothing created); the store is created once and the sweep directory is fixed.
The launcher is checked then too: one other than the basic launcher needs -m, and SLURM itself
must accept submitit_slurm's options (`vggsweep.job.slurm`). Hydra's launcher (basic, joblib,
submitit) then runs the jobs wherever it runs them; vggsweep's submitit launchers wait for every
job (`vggsweep.job.cluster`), and a launcher that stops is the sweep's outcome, not a traceback.
After the jobs, the sweep's outcome, leaderboard and report are read back from the store, so they
are the same for every launcher. Exit code: 0 every job completed, 1 some failed, 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vggsweep import config
from vggsweep.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    InfrastructureError,
    SweepStopped,
    one_line,
)
from vggsweep.job import cluster, plan, slurm, task
from vggsweep.runtime import collector, files, internals, interrupts, quiet
from vggsweep.tracking import store


@dataclass
class Plan:
    """What a sweep will do, known before any job starts."""

    jobs: int  # distinct jobs (by job key)
    multirun: bool
    sweep_dir: Path
    targets: list[tuple[str, str]] = field(default_factory=list)  # (tracking URI, experiment)
    keys: list[str] = field(default_factory=list)  # the jobs' keys: their runs in the store
    projects: dict[str, Path] = field(default_factory=dict)  # job key -> tuner project
    hydra_overrides: list[str] = field(default_factory=list)


def _overrides(argv: list[str]) -> list[str]:
    return [arg for arg in argv if not arg.startswith("-")]


def job_configs(argv: list[str]) -> tuple[list, object, bool]:
    """Every job's composed config, the first one with Hydra's node, and whether it is a
    multirun (`-m`, or a study that says so)."""
    overrides = _overrides(argv)
    multirun = "-m" in argv or "--multirun" in argv
    combos = config.expand_sweep(overrides)
    first = config.compose(combos[0], return_hydra_config=True)
    study_params = first.hydra.sweeper.get("params") or {}
    if first.hydra.mode is not None and str(first.hydra.mode).endswith("MULTIRUN"):
        multirun = True
    if not multirun and len(combos) > 1:
        raise ConfigError(f"{len(combos)} combinations given without -m; add -m (multirun) to "
                          "sweep them")
    if multirun and study_params:
        cli_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        extra = [f"{k}={v}" for k, v in study_params.items() if k not in cli_keys]
        combos = config.expand_sweep(extra + overrides)
    return [config.compose(combo) for combo in combos], first, multirun


def prevalidate(argv: list[str]) -> Plan:
    """Checks every job of the sweep before any starts; raises ConfigError (one line)."""
    jobs, first, multirun = job_configs(argv)
    keys, targets, projects = set(), [], {}
    for cfg in jobs:
        job_plan = plan.make(cfg)  # the same plan the job makes where it runs
        keys.add(job_plan.key)
        projects[job_plan.key] = job_plan.project
        if (job_plan.uri, cfg.experiment) not in targets:
            targets.append((job_plan.uri, cfg.experiment))
    # before the sweep folder is claimed
    slurm.check(first.hydra, multirun, len(jobs), max(cfg.tuner.workers for cfg in jobs))
    explicit = any(o.split("=", 1)[0] in ("hydra.sweep.dir", "hydra.run.dir")
                   for o in _overrides(argv))
    return Plan(len(keys), multirun, _sweep_dir(first, multirun, explicit), targets,
                sorted(keys), projects)


def _sweep_dir(first, multirun: bool, explicit: bool) -> Path:
    """The sweep (or run) directory, resolved once (`${now:...}` would move if resolved later)
    and, unless the user named it, claimed: a sweep started in the same second by another
    process gets its own (`-1`, `-2`, ...), so that every sweep's runs can be told apart."""
    resolved = first.hydra.sweep.dir if multirun else first.hydra.run.dir
    wanted = (store.launch_dir() / str(resolved)).resolve()
    if explicit:
        return wanted
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ["", *(f"-{n}" for n in range(1, 1000))]:
        candidate = wanted.with_name(wanted.name + suffix)
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"{wanted}: a thousand sweeps started this second; name hydra.sweep.dir")


def hydra_overrides(plan: Plan, argv: list[str]) -> list[str]:
    """What the launching process tells Hydra: the sweep directory it claimed, and that a job's
    folder is named after the values swept (the fixed overrides are the same for every job)."""
    key = "hydra.sweep.dir" if plan.multirun else "hydra.run.dir"
    overrides = [f"{key}={_quoted(plan.sweep_dir)}"]
    fixed = sorted({o.split("=", 1)[0].lstrip("+~") for o in _overrides(argv)
                    if "=" in o and not o.split("=", 1)[0].startswith("hydra")
                    and len(config.expand_sweep([o])) == 1})
    if plan.multirun and fixed:
        listed = ",".join(f"'{k}'" for k in fixed)
        overrides.append(f"hydra.job.config.override_dirname.exclude_keys=[{listed}]")
    return overrides


def _quoted(path: Path) -> str:
    text = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def write_manifest(plan: Plan, argv: list[str]) -> None:
    """The sweep's manifest in its directory: its job count (progress lines) and where its runs
    are recorded (rebuilding its outputs later)."""
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    store.write_manifest(plan.sweep_dir, {
        "jobs": plan.jobs, "job_keys": plan.keys, "targets": plan.targets, "argv": argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def help_text() -> str:
    """`--help`: the options, read from the config folders and the registries (no Hydra
    composition of every group, which takes a second)."""
    from vggsweep import data, models
    from vggsweep.search import tuners

    groups = "\n".join(f"  {group + ':':<16}{', '.join(config.group_options(group))}"
                       for group in config.GROUPS)
    from omegaconf import OmegaConf

    composed = OmegaConf.to_yaml(config.compose([]))
    return f"""vggsweep: run, track and compare hyperparameter sweeps of Keras image classifiers.

usage: python -m vggsweep [-m] [group=option ...] [key=value ...]
  -m                 multirun: one job per combination of the swept values (model=vgg16,cnn)
  --cfg job          print the composed config of these overrides; --hydra-help: Hydra's help

config groups (group=option):
{groups}
  {'hydra/launcher:':<16}basic, joblib, submitit_local, submitit_slurm

registries: model families {', '.join(models.FAMILIES)}; data sources {', '.join(data.DATASETS)};
  tuners {', '.join(tuners.TUNERS)}; pruners (tuner.pruner) {', '.join(tuners.PRUNERS)}
a value is fixed (model.filters=64) or searched ('model.filters={{choice:[16,32,64]}}',
  'model.dropout={{min:0.0,max:0.5,step:0.1}}', 'optimizer.learning_rate={{min:1e-4,max:1e-2,
  sampling:log}}'); activation=relu fixes the activation, unset it is searched
commands: python -m vggsweep.leaderboard | report | confidence | summary | worker | server | ui
  (each with --help); make help lists the make targets

the default config (without overrides):
{composed}"""


def main() -> None:
    argv = sys.argv[1:]
    quiet.quiet_libraries()
    if argv and argv[0] in ("--help", "-h") and len(argv) == 1:
        print(help_text())
        finish(EXIT_OK)
    if config.is_inspect_only(argv):
        sys.exit(_run_hydra(argv))
    collector.pause()  # until the first training (`collector.settle`); see there
    try:
        plan = prevalidate(argv)
        from vggsweep.tracking import ui

        for uri, experiment in plan.targets:
            ui.prepare(uri, experiment)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    interrupted, stopped, launcher_failed = False, None, False
    try:
        write_manifest(plan, argv)
        os.environ[task.LAUNCHER_PID] = str(os.getpid())  # its own jobs stop the sweep
        with interrupts.handled():
            _run_jobs(plan, argv)
    except cluster.StillRunning as still:  # the leaderboard and report wait for the jobs
        _still_running(plan, still)
        finish(EXIT_INTERRUPTED)  # exits here: the `finally` below does not run
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: open MLflow runs were ended KILLED; rerun the same command to "
              "resume", file=sys.stderr)
    except (SweepStopped, InfrastructureError) as error:  # the store away, a full disk
        stopped = error
        print(getattr(error, "line", f"error: {one_line(error, 1000)}"), file=sys.stderr,
              flush=True)
    except Exception as error:  # noqa: BLE001 - a launcher that stopped: the store tells the rest
        launcher_failed = True
        print(f"error: the launcher stopped: {one_line(error)}", file=sys.stderr)
    finally:
        _close_abandoned(plan)
        _write_outputs(plan, stopped=stopped is not None)
    if isinstance(stopped, SweepStopped):  # the store may not answer: the summary from here
        print(f"the sweep stopped at job {stopped.index}/{plan.jobs}: "
              f"{plan.jobs - stopped.index + 1} job(s) did not finish; rerun the same command "
              "to resume it", file=sys.stderr, flush=True)
    if stopped is not None:
        finish(EXIT_FAILED)
    code = EXIT_INTERRUPTED if interrupted else outcome(plan)
    finish(EXIT_FAILED if launcher_failed and code == EXIT_OK else code)


def _run_jobs(plan: Plan, argv: list[str]) -> None:
    """Hydra runs the jobs, with the overrides as the checks composed them (a spec given on the
    command line replaces the one it overrides), so that each job is the job that was checked.
    A launcher's exception reaches the caller (not Hydra's traceback and exit 1)."""
    flags = [arg for arg in argv if arg.startswith("-")]
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting
    try:
        _run_hydra([*flags, *config.replace_spec_overrides(_overrides(argv)),
                    *hydra_overrides(plan, argv)])
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def _still_running(plan: Plan, still: cluster.StillRunning) -> None:
    """Interrupted while SLURM jobs run: which, how to follow them, how to write the outputs."""
    print("interrupted: " + "\n".join(still.lines), file=sys.stderr)
    for uri, experiment in plan.targets:
        print(f"once they end, the leaderboard and report: python -m vggsweep.report "
              f"--sweep-dir {plan.sweep_dir} --experiment {experiment} --tracking-uri {uri}",
              file=sys.stderr)


def finish(code: int) -> None:
    """Exits once everything is written and flushed, without the seconds TensorFlow's and
    MLflow's interpreter-exit hooks take (every run is already ended, every file closed)."""
    import logging

    _stop_joblib_workers()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_joblib_workers() -> None:
    """Ends the joblib launcher's idle worker processes and removes its temporary folder, which
    joblib's own exit hook would do (`os._exit` skips it): the workers inherited stdout, so a
    `| tee` or a test reading the output would otherwise wait out their 300 s idle timeout."""
    pools = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(pools, "_executor", None)
    if executor is not None:
        getattr(executor, "terminate", executor.shutdown)(kill_workers=True)
        internals.run_multiprocessing_exit_hooks()  # its semaphores, as at exit


def _run_hydra(argv: list[str]) -> int:
    import hydra

    config.register_configs()
    sys.argv = [sys.argv[0], *argv]
    entry = hydra.main(config_path=str(config.CONF_DIR), config_name="config",
                       version_base="1.3")(task.task)
    entry()
    return EXIT_OK


def _job_runs(plan: Plan) -> list:
    from vggsweep.tracking import results

    found = []
    for uri, experiment in plan.targets:
        client, experiment_id = store.open_existing(uri, experiment)
        found += [run_ for run_ in results.job_runs(store.search_all_runs(client, [experiment_id]))
                  if run_.data.tags.get(store.JOB_KEY) in plan.keys]
    return found


def _close_abandoned(plan: Plan) -> None:
    """The runs a job left RUNNING when SLURM (or the executor) ended its process outright end
    KILLED with SLURM's reason (a rerun would do it; the leaderboard should not wait for one)."""
    ended = {end.overrides: end for end in cluster.ended()}
    if not ended:
        return
    from vggsweep.tracking import results
    from vggsweep.tracking.writer import JobTracker

    for uri, experiment in plan.targets:
        try:
            client, experiment_id = store.open_existing(uri, experiment)
            for run_ in results.job_runs(store.search_all_runs(client, [experiment_id])):
                tags = run_.data.tags
                end = ended.get(tags.get(store.OVERRIDES, ""))
                if (end is None or run_.info.status != "RUNNING"
                        or tags.get(store.JOB_KEY) not in plan.keys
                        or files.job_running(plan.projects.get(tags.get(store.JOB_KEY)))):
                    continue
                JobTracker(uri, experiment, tags[store.JOB_KEY], {}).close_abandoned(
                    run_.info.run_id, end.reason)
        except Exception as error:  # noqa: BLE001 - a rerun closes them too: say so, go on
            print(f"warning: could not close the runs of the jobs SLURM ended: "
                  f"{one_line(error)}", file=sys.stderr)


def outcome(plan: Plan) -> int:
    """The exit code the store gives for the sweep: every job run FINISHED, or why not."""
    try:
        jobs = _job_runs(plan)
    except Exception as error:  # noqa: BLE001 - the store is unreadable: say so, exit 1
        print(f"error: could not read the sweep's runs back: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    elsewhere = [j for j in jobs if j.info.status == "RUNNING"
                 and files.job_running(plan.projects.get(j.data.tags.get(store.JOB_KEY)))]
    for job in elsewhere:
        print(f"job {job.info.run_name}: another process is running it again now",
              file=sys.stderr)
    failed = [j for j in jobs if j.info.status != "FINISHED" and j not in elsewhere]
    # what the launcher saw (SLURM cancelled, timed out, failed a job), by the job's overrides
    launched = {end.overrides: end for end in cluster.ended()}
    for job in failed:
        reason = job.data.tags.get(store.FAILURE_REASON, job.info.status.lower())
        end = launched.get(job.data.tags.get(store.OVERRIDES, ""))
        if end:  # SLURM's side, unless the store already says it (_close_abandoned)
            reason += f" ({end.describe() if end.reason not in reason else 'log ' + end.log})"
        print(f"job {job.info.run_name} ({job.data.tags.get(store.OVERRIDES, '')}) failed: "
              f"{reason}", file=sys.stderr)
    recorded = {job.data.tags.get(store.OVERRIDES, "") for job in jobs}
    unrecorded = [end for end in launched.values() if end.overrides not in recorded]
    for end in unrecorded:
        print(f"job {end.index} ({end.overrides}) failed before it recorded a run: "
              f"{end.describe()}", file=sys.stderr)
    missing = plan.jobs - len(jobs)
    if missing > len(unrecorded):
        print(f"{missing - len(unrecorded)} job(s) recorded no run (see their logs in "
              f"{plan.sweep_dir})", file=sys.stderr)
    bad = len(failed) + max(missing, 0)
    if bad:
        print(f"{bad}/{plan.jobs} jobs failed", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK


def _write_outputs(plan: Plan, stopped: bool = False) -> None:
    """Writes the leaderboard, plots and report of the sweep, from the store (after a sweep
    stopped by the infrastructure, silently skipped when the store or the disk still fail)."""
    from vggsweep.outputs import sweep
    from vggsweep.tracking import ui

    for uri, experiment in plan.targets:
        folder = plan.sweep_dir if len(plan.targets) == 1 else plan.sweep_dir / experiment
        try:
            written = sweep.write_sweep_outputs(folder, uri, experiment, job_keys=plan.keys)
        except Exception as error:  # noqa: BLE001 - the sweep's results are in MLflow anyway
            if not (stopped and isinstance(error, InfrastructureError)):
                print(f"warning: could not write the sweep outputs in {folder}: "
                      f"{one_line(error)}", file=sys.stderr)
            continue
        print(sweep.best_line(written["leaderboard"]), flush=True)
        print(f"leaderboard: {written['leaderboard']}", flush=True)
        if "report" in written:
            print(f"report: {written['report']}", flush=True)
        print(f"MLflow UI: {ui.hint(uri, experiment)}", flush=True)


