"""One Hydra job: data -> hypermodel -> oracle -> tuner (or its workers) -> tracking.

The config is read here, at the edge; everything below takes plain values or one config subtree.
A job never raises for a failed search: it records the failure in MLflow and returns a
`JobResult`, so the other jobs of a multirun go on; the launching process reads every job's
outcome back from the store (`vggsweep.job.launch`), whichever Hydra launcher ran the job.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from vggsweep import config, data
from vggsweep.config import space
from vggsweep.errors import ConfigError, StateError, one_line
from vggsweep.job import runner
from vggsweep.job.runner import JobInfo, JobResult, container
from vggsweep.runtime import collector, files, interrupts, quiet
from vggsweep.tracking import store

#: Keys that may change between reruns of one job without re-keying it (raise max_trials to
#: extend a finished search; the others decide how, not what, is searched).
NON_IDENTITY_KEYS = (("budget", "max_trials"), ("budget", "time_limit_s"), ("tuner", "fresh"),
                     ("tracking", "log_model"), ("verbose",), ("tuner", "workers"),
                     ("tuner", "chief_host"), ("tuner", "chief_port"))


def identity(cfg) -> dict:
    """The job's effective config as plain Python, minus NON_IDENTITY_KEYS."""
    plain = container(cfg)
    for path in NON_IDENTITY_KEYS:
        node = plain
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return plain


def job_key(cfg, tracking_uri: str) -> str:
    """A stable identity for a job: a hash of `identity(cfg)` and where it is recorded."""
    plain = identity(cfg)
    plain["tracking_uri"] = tracking_uri
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def project_dir(cfg, key: str) -> Path:
    """The job's keras-tuner project: <tuner.directory or launch dir/tuner_state>/<exp>-<key>."""
    root = Path(cfg.tuner.directory) if cfg.tuner.directory else store.launch_dir() / "tuner_state"
    return root.expanduser().resolve() / f"{cfg.experiment}-{key}"


def activation_tag(cfg) -> str:
    activation = cfg.activation
    return "searched" if space.is_spec(activation) else str(activation)


def fixed_params(cfg) -> dict:
    """The job's configuration as flat params (`model.filters`: 32, or its search spec)."""
    flat = {}
    for section, values in identity(cfg).items():
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    return {k: v for k, v in flat.items() if v is not None}


def check_state_files(project_dir: Path) -> None:
    """Fails with one line naming the file when saved tuner state is truncated or corrupt."""
    for path in [project_dir / "oracle.json", *sorted(project_dir.glob("*.json")),
                 *sorted(project_dir.glob("trial_*/trial.json"))]:
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text())
        except (ValueError, OSError) as error:
            raise StateError(
                f"tuner state file {path} is corrupt ({type(error).__name__}); rerun with "
                f"tuner.fresh=true to start this job over, or delete {project_dir}"
            ) from None


def prepare_project(project_dir: Path, fresh: bool) -> None:
    """Discards the project when `fresh`; refuses corrupt saved state with one line."""
    if fresh and project_dir.exists():
        shutil.rmtree(project_dir)
    check_state_files(project_dir)


def hydra_info() -> JobInfo:
    """The job's model option, overrides, sweep dir and position, from Hydra (inside a job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return JobInfo()
    hydra_cfg = HydraConfig.get()
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    sweep_dir = str(Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir).resolve())
    return JobInfo(
        model_name=hydra_cfg.runtime.choices.get("model"),
        overrides=" ".join(hydra_cfg.overrides.task),
        sweep_dir=sweep_dir,
        index=(hydra_cfg.job.num + 1) if multirun else 1,
        total=store.read_manifest(sweep_dir).get("jobs"),
    )


def task(cfg) -> JobResult:
    """The Hydra task function: one job; failures are recorded and returned, never raised."""
    quiet.quiet_libraries()
    info = hydra_info()
    try:
        # Signal handlers: a no-op in the launching process, which has them already. The
        # collector waits for the imports (Hydra's parallel launchers run jobs in new processes).
        with interrupts.handled(), collector.paused():
            return run_job(cfg, info)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        return JobResult(_name(cfg, info), "failed", one_line(error))
    except Exception as error:  # noqa: BLE001 - a bug in one job must not stop the others
        traceback.print_exc()
        return JobResult(_name(cfg, info), "failed", f"{type(error).__name__}: {error}")


def _name(cfg, info: JobInfo) -> str:
    return f"{info.model_name or cfg.model.family}-{activation_tag(cfg)}"


def run_job(cfg, info: JobInfo | None = None) -> JobResult:
    """Runs one job's search and records it; returns its result (never raises for a failed
    search; raises ConfigError for bad input before any MLflow run exists)."""
    info = info or JobInfo()
    config.validate(cfg, geometry=False)
    splits = data.load(cfg.data)  # before any MLflow run: bad data leaves nothing half-written
    image_size = config.effective_image_size(cfg.data, splits.image_shape)
    config.check_geometry(cfg, image_size)
    uri = store.resolve_uri(cfg.tracking.uri)
    key = job_key(cfg, uri)
    project = project_dir(cfg, key)
    # Saved tuner state is checked (and discarded when fresh) before any MLflow run opens.
    prepare_project(project, cfg.tuner.fresh)
    from vggsweep.runtime import accelerator

    accelerator.apply(cfg.accelerator)  # imports Keras quietly, before anything else does
    splits = accelerator.on_device(splits, cfg.accelerator)
    job = runner.Job(cfg=cfg, info=info, name=_name(cfg, info), key=key, uri=uri,
                     project=project, splits=splits, image_size=image_size)
    with files.job_lock(project, job.name):
        started = time.perf_counter()
        tracker = job.tracker()
        with tracker.parent_run(run_name=job.name, params=fixed_params(cfg)):
            if cfg.tuner.fresh:
                tracker.supersede_all("superseded: tuner.fresh=true started this job over")
            tracker.log_config(container(cfg))
            return runner.run(job, tracker, started)
