"""One Hydra job: data -> hypermodel -> oracle -> tuner (or its workers) -> tracking.

The config is read here, at the edge; everything below takes plain values or one config subtree.
A job never raises for a failed search: it records the failure in MLflow and returns a
`JobResult`, so the other jobs of a multirun go on; the launching process reads every job's
outcome back from the store (`vggsweep.job.launch`), whichever Hydra launcher ran the job.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path

from vggsweep import config
from vggsweep.config import space
from vggsweep.errors import ConfigError, InfrastructureError, SweepStopped, one_line
from vggsweep.job import plan, runner
from vggsweep.job.runner import JobInfo, JobResult
from vggsweep.runtime import collector, files, interrupts, quiet
from vggsweep.tracking import store


def fixed_params(cfg) -> dict:
    """The job's configuration as flat params (`model.filters`: 32, or its search spec)."""
    flat = {}
    for section, values in plan.identity(cfg).items():
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    return {k: v for k, v in flat.items() if v is not None}


def hydra_info() -> JobInfo:
    """The job's model option, overrides, sweep dir and position, from Hydra (inside a job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return JobInfo()
    hydra_cfg = HydraConfig.get()
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    sweep_dir = str(Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir).resolve())
    # The launcher names the keys every job of a multirun shares; the others were swept.
    fixed = set(hydra_cfg.job.config.override_dirname.exclude_keys or ())
    swept = [o for o in hydra_cfg.overrides.task
             if multirun and o.split("=", 1)[0].lstrip("+~") not in fixed]
    return JobInfo(
        model_name=hydra_cfg.runtime.choices.get("model"),
        overrides=" ".join(hydra_cfg.overrides.task),
        sweep_dir=sweep_dir,
        index=(hydra_cfg.job.num + 1) if multirun else 1,
        total=store.read_manifest(sweep_dir).get("jobs"),
        swept=swept,
    )


def task(cfg) -> JobResult:
    """The Hydra task function: one job; failures are recorded and returned, never raised."""
    quiet.quiet_libraries()
    logging.raiseExceptions = False  # a log file on a full disk: no traceback per log record
    info = hydra_info()
    try:
        # Signal handlers: a no-op in the launching process, which has them already. The
        # collector waits for the imports (Hydra's parallel launchers run jobs in new processes).
        with interrupts.handled(), collector.paused():
            return run_job(cfg, info)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        return JobResult(_name(cfg, info), "failed", one_line(error))
    except InfrastructureError as error:  # the store away past the bound, a full disk
        return _stopped(cfg, info, error)
    except Exception as error:  # noqa: BLE001 - a bug in one job must not stop the others
        interrupts.check()  # an interrupt that a library turned into an error of its own
        traceback.print_exc()
        return JobResult(_name(cfg, info), "failed", f"{type(error).__name__}: {error}")


#: Set by the launching process: a job it runs itself stops the sweep on an infrastructure
#: failure (the next jobs would meet the same store or disk).
LAUNCHER_PID = "VGGSWEEP_LAUNCHER_PID"


def _stopped(cfg, info: JobInfo, error: InfrastructureError) -> JobResult:
    """One line naming the cause; in the launching process, the sweep stops here."""
    line = (f"[job {info.index}/{info.total or '?'} {_name(cfg, info)}] stopped: "
            f"{one_line(error, 1000)}")
    if os.environ.get(LAUNCHER_PID) == str(os.getpid()):
        raise SweepStopped(error, line, info.index)
    print(line, file=sys.stderr, flush=True)
    return JobResult(_name(cfg, info), "failed", one_line(error))


def _name(cfg, info: JobInfo) -> str:
    """The job's label: its model, its activation when fixed (a searched one varies by trial),
    and the other values its sweep varies (`cnn-relu`, `vgg11`, `cnn-relu data=mnist`)."""
    label = str(info.model_name or cfg.model.family)
    if not space.is_spec(cfg.activation):
        label += f"-{cfg.activation}"
    others = [o for o in info.swept if o.split("=", 1)[0].lstrip("+~") not in
              ("model", "activation")]
    return " ".join([label, *others])


def run_job(cfg, info: JobInfo | None = None) -> JobResult:
    """Runs one job's search and records it; returns its result (never raises for a failed
    search; raises ConfigError for bad input before any MLflow run exists)."""
    info = info or JobInfo()
    job_plan = plan.make(cfg)  # before any MLflow run: bad input leaves nothing half-written
    # Saved tuner state is discarded (tuner.fresh) before any MLflow run opens.
    plan.prepare_project(job_plan.project, cfg.tuner.fresh)
    from vggsweep.runtime import accelerator

    accelerator.apply(cfg.accelerator)  # imports Keras quietly, before anything else does
    splits = accelerator.on_device(job_plan.splits, cfg.accelerator)
    client = store.client(job_plan.uri)
    name = store.job_run_name(client, store.prepare(job_plan.uri, cfg.experiment),
                              _name(cfg, info), job_plan.key)
    job = runner.Job(cfg=cfg, info=info, name=name, key=job_plan.key,
                     uri=job_plan.uri, project=job_plan.project, splits=splits,
                     image_size=job_plan.image_size)
    with files.job_lock(job.project, job.name):
        started = time.perf_counter()
        tracker = job.tracker()
        with tracker.parent_run(run_name=job.name, params=fixed_params(cfg)):
            if cfg.tuner.fresh:
                tracker.supersede_all("superseded: tuner.fresh=true started this job over")
            tracker.log_config(config.container(cfg))
            return runner.run(job, tracker, started)
