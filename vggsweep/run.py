"""One Hydra job: data -> hypermodel -> oracle -> tuner (or its workers) -> tracking.

The config is read here, at the edge; everything below takes plain values or one config subtree.
A job never raises for a failed search: it records the failure in MLflow and returns a
`JobResult`, so the other jobs of a multirun go on; the launching process reads every job's
outcome back from the store (`vggsweep.launch`), whichever Hydra launcher ran the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from vggsweep import collector, config, data, interrupts, search, space, store
from vggsweep.errors import ConfigError, StateError, one_line
from vggsweep.search import JobInfo, JobResult, container

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


def quiet_libraries() -> None:
    """Per process (Hydra's parallel launchers start new ones): libraries' logs to warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-creation notes
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one per run
    for name in ("mlflow", "alembic", "tensorflow", "absl", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)


def task(cfg) -> JobResult:
    """The Hydra task function: one job; failures are recorded and returned, never raised."""
    quiet_libraries()
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
    from vggsweep import accelerator

    accelerator.apply(cfg.accelerator)  # imports Keras quietly, before anything else does
    splits = accelerator.on_device(splits, cfg.accelerator)
    job = search.Job(cfg=cfg, info=info, name=_name(cfg, info), key=key, uri=uri,
                     project=project, splits=splits, image_size=image_size)
    with job_lock(project, job.name):
        started = time.perf_counter()
        tracker = job.tracker()
        with tracker.parent_run(run_name=job.name, params=fixed_params(cfg)):
            if cfg.tuner.fresh:
                tracker.supersede_all("superseded: tuner.fresh=true started this job over")
            tracker.log_config(container(cfg))
            return search.run(job, tracker, started)


def job_running(project: Path | None) -> bool:
    """Whether a process holds the job's lock now (it is running the job)."""
    import fcntl

    if project is None or not (project / ".job.lock").is_file():
        return False
    with open(project / ".job.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def job_lock(project: Path, name: str):
    """One process at a time runs a job: another one running the same job waits, then resumes
    it (and finds it done). Workers of the job take no lock: they serve its process."""
    import fcntl

    project.mkdir(parents=True, exist_ok=True)
    with open(project / ".job.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[{name}] another process is running this job; waiting for it to end",
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
