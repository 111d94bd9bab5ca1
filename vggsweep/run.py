"""One Hydra job: data -> hypermodel -> tuner -> tracking -> result.

The config is read here, at the edge; everything below takes plain values or one config subtree.
A job never raises for a failed search: it returns a `JobResult`, so the other jobs of a multirun
go on, and the entry point turns failures into the exit code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from vggsweep import config as config_module
from vggsweep import space
from vggsweep.config import ConfigError, launch_dir

#: Budget keys that may change between reruns of one job without re-keying it (raise max_trials
#: to extend a finished search; a time limit only decides when to stop).
RESUMABLE_KEYS = (("budget", "max_trials"), ("budget", "time_limit_s"), ("tuner", "fresh"),
                  ("tracking", "log_model"), ("verbose",))


class Abort(BaseException):
    """Bad input discovered inside a job: stops the whole sweep with one line (like a config
    error found before the sweep), rather than failing every job the same way."""


@dataclass
class JobResult:
    name: str
    status: str  # completed | failed | killed
    message: str = ""
    parent_run_id: str | None = None
    completed: int = 0
    failed: int = 0
    best_val_accuracy: float | None = None
    best_test_accuracy: float | None = None
    sweep_dir: str | None = None
    overrides: str = ""
    tracking_uri: str | None = None
    experiment: str | None = None


@dataclass
class JobContext:
    """What a trial needs from its job."""

    tracker: object
    progress: object
    seed: int
    budget: object
    tuner_cfg: object
    verbose: int
    keep: str
    trial_params: dict = field(default_factory=dict)
    trial_tags: dict = field(default_factory=dict)


#: Results of the jobs run in this process, read by the entry point at the end of the sweep.
RESULTS: list[JobResult] = []
#: The parent run of the job running now (for the record of an interrupted job).
ACTIVE_PARENT: dict = {}


def job_key(cfg, tracking_uri: str) -> str:
    """A stable identity for a job: a hash of its effective config, minus resumable keys."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    for path in RESUMABLE_KEYS:
        node = container
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    container["tracking_uri"] = tracking_uri
    text = json.dumps(container, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def activation_tag(cfg) -> str:
    activation = cfg.activation
    return "searched" if space.is_spec(activation) else str(activation)


def hydra_context() -> dict:
    """Model option name, overrides, sweep dir and job index from Hydra, when inside a job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    multirun = str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    return {
        "model_name": hydra_cfg.runtime.choices.get("model"),
        "overrides": " ".join(hydra_cfg.overrides.task),
        "sweep_dir": str(Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir).resolve()),
        "job_index": (hydra_cfg.job.num + 1) if multirun else 1,
    }


def task(cfg) -> JobResult:
    """The Hydra task function (see __main__)."""
    import traceback

    from vggsweep.tracking import resolve_uri

    context = hydra_context()
    try:
        result = run_job(cfg, **context)
    except ConfigError as error:
        raise Abort(str(error)) from None
    except KeyboardInterrupt:
        # The leaderboard written on the way out still lists what this job finished.
        RESULTS.append(JobResult(
            str(context.get("model_name") or cfg.model.family), "killed", "interrupted",
            ACTIVE_PARENT.get("id"), sweep_dir=context.get("sweep_dir"),
            overrides=context.get("overrides", ""), tracking_uri=resolve_uri(cfg.tracking.uri),
            experiment=cfg.experiment))
        raise
    except Exception as error:  # noqa: BLE001 - a bug in one job must not stop the others
        traceback.print_exc()
        result = JobResult(str(context.get("model_name") or cfg.model.family), "failed",
                           f"{type(error).__name__}: {error}")
    result.sweep_dir = context.get("sweep_dir")
    result.overrides = context.get("overrides", "")
    result.tracking_uri = resolve_uri(cfg.tracking.uri)
    result.experiment = cfg.experiment
    RESULTS.append(result)
    return result


def run_job(cfg, *, model_name: str | None = None, overrides: str = "",
            sweep_dir: str | None = None, job_index: int = 1) -> JobResult:
    """Runs one job's search and records it; returns its result (never raises for a failed
    search; raises ConfigError for bad input before any MLflow run exists)."""
    import logging

    from vggsweep import data, progress, tracking

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes between splits
    config_module.validate(cfg)
    splits = data.load(cfg.data)  # before any MLflow run: bad data leaves nothing half-written
    model_name = model_name or cfg.model.family
    name = f"{model_name}-{activation_tag(cfg)}"
    uri = tracking.resolve_uri(cfg.tracking.uri)
    key = job_key(cfg, uri)
    tags = {
        "model": model_name, "family": cfg.model.family, "activation": activation_tag(cfg),
        "data": cfg.data.name, "tuner": cfg.tuner.name, "seed": cfg.seed,
        tracking.OVERRIDES: overrides, tracking.SWEEP_DIR: sweep_dir or "",
        "git_commit": tracking.git_commit(), "keras_backend": os.environ.get(
            "KERAS_BACKEND", "tensorflow"),
        "data_source": splits.source,
    }
    tracker = tracking.JobTracker(uri, cfg.experiment, key, tags)
    report = progress.Progress(job_index, progress.total_jobs(), name,
                               None if cfg.tuner.name == "hyperband" else cfg.budget.max_trials,
                               verbose=cfg.verbose)
    report.note(f"data {splits.source}: {splits.sizes()}; tracking {uri}; job key {key}")
    from vggsweep import tuning

    # Saved tuner state is checked (and discarded when fresh) before any MLflow run opens.
    tuning.prepare_project(_project_dir(cfg, key), cfg.tuner.fresh)
    with tracker.parent_run(run_name=name):
        ACTIVE_PARENT["id"] = tracker.parent_id
        if cfg.tuner.fresh:
            tracker.supersede_all("superseded: tuner.fresh=true started this job over")
        tracker.mlflow.log_dict(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
        result = _search(cfg, splits, tracker, report, key, name)
    return result


def _search(cfg, splits, tracker, report, key: str, name: str) -> JobResult:
    from vggsweep import training, tuning

    context = JobContext(
        tracker=tracker, progress=report, seed=cfg.seed, budget=cfg.budget, tuner_cfg=cfg.tuner,
        verbose=cfg.verbose, keep=cfg.tuner.keep,
        trial_params={"epochs": cfg.budget.epochs, "batch_size": cfg.budget.batch_size,
                      "optimizer": cfg.optimizer.name, **splits.sizes()},
        trial_tags={k: tracker.tags[k] for k in ("model", "family", "activation")},
    )
    started = time.perf_counter()
    hypermodel = tuning.SweepHyperModel(cfg, splits.x_train.shape[1:], splits.num_classes,
                                        training.steps_per_epoch(splits, cfg.budget.batch_size))
    tuner = tuning.make_tuner(context, hypermodel, _project_dir(cfg, key), fresh=False)
    tuner.search(splits, verbose=0)  # keras-tuner's own display off: Progress prints lines
    tuner.prune_checkpoints()
    counts = tracker.trial_counts()
    completed, failed = counts["FINISHED"], counts["FAILED"]
    best = _best_trial(tracker)
    metrics = {"trials_completed": completed, "trials_failed": failed,
               "job_time_s": time.perf_counter() - started}
    if best:
        metrics.update(best_val_accuracy=best[0], best_test_accuracy=best[1])
    tracker.client.log_batch(tracker.parent_id, metrics=_metric_list(metrics))
    report.job_end(completed, failed, *(best or (None, None)))
    if completed == 0:
        reason = f"0/{completed + failed} trials completed" + _first_failure(tracker)
        tracker.fail_parent(reason)
        report.note(f"FAILED: {reason}")
        return JobResult(name, "failed", reason, tracker.parent_id, completed, failed)
    if cfg.tracking.log_model and tuner.best_model_path():
        _log_best_model(tracker, tuner.best_model_path(), splits)
    return JobResult(name, "completed", "", tracker.parent_id, completed, failed, *best)


def _project_dir(cfg, key: str) -> Path:
    root = Path(cfg.tuner.directory) if cfg.tuner.directory else launch_dir() / "tuner_state"
    return root.expanduser().resolve() / f"{cfg.experiment}-{key}"


def _best_trial(tracker) -> tuple[float, float] | None:
    runs = tracker.children("attributes.status = 'FINISHED'")
    scored = [r for r in runs if "val_accuracy" in r.data.metrics]
    if not scored:
        return None
    best = max(scored, key=lambda r: r.data.metrics["val_accuracy"])
    return best.data.metrics["val_accuracy"], best.data.metrics.get("test_accuracy", float("nan"))


def _first_failure(tracker) -> str:
    from vggsweep.tracking import FAILURE_REASON

    for run in tracker.children("attributes.status = 'FAILED'"):
        reason = run.data.tags.get(FAILURE_REASON)
        if reason:
            return f"; first failure: {reason}"
    return ""


def _metric_list(metrics: dict) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in metrics.items()]


def _log_best_model(tracker, path: Path, splits) -> None:
    """Logs the best model (loaded back with safe_mode=True) and its test-set pictures."""
    import tempfile

    import keras

    model = keras.saving.load_model(path, safe_mode=True)
    tracker.client.log_artifact(tracker.parent_id, str(path), "best_model")
    try:
        from vggsweep import plots
    except ImportError:
        return
    from vggsweep import training

    _, predicted = training.evaluate(model, splits.x_test, splits.y_test, "test")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [
            plots.confusion_matrix_png(splits.y_test, predicted, f"{tmp}/confusion_matrix.png"),
            plots.misclassified_png(splits.x_test, splits.y_test, predicted,
                                    f"{tmp}/misclassified.png"),
            plots.samples_png(splits.x_train, splits.y_train, f"{tmp}/training_samples.png"),
        ]
        for output in outputs:
            if output:
                tracker.client.log_artifact(tracker.parent_id, str(output), "plots")
