"""A job's search, the same in the job's process and in each of its workers.

`Job` holds what every process of a job shares (its config, data, identity, project); `run` is
the job's side: the search itself (in this process, or served to `tuner.workers` worker processes
by `vggsweep.search.distributed`), then the job's summary and best model in MLflow.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from vggsweep import config
from vggsweep.config import space
from vggsweep.job import progress
from vggsweep.runtime import accelerator
from vggsweep.tracking import store

#: The job description a job's workers read, in its tuner project.
JOB_FILE = "job.json"
#: The tracking records each process of the job has not written yet (`tracking.outbox`).
OUTBOX_DIR = "outbox"


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


@dataclass
class JobInfo:
    """Where a job stands in its sweep (from Hydra and the sweep's manifest)."""

    model_name: str | None = None
    overrides: str = ""
    sweep_dir: str | None = None
    index: int = 1
    total: int | None = None
    swept: list = field(default_factory=list)  # this job's overrides of the swept keys


@dataclass
class Job:
    """What every process of one job shares."""

    cfg: object
    info: JobInfo
    name: str
    key: str
    uri: str
    project: Path
    splits: object  # vggsweep.data.Splits
    image_size: int
    parent_run_id: str | None = None

    def tags(self) -> dict:
        cfg, splits = self.cfg, self.splits
        return {
            "model": self.info.model_name or cfg.model.family, "family": cfg.model.family,
            "activation": "searched" if space.is_spec(cfg.activation) else str(cfg.activation),
            "data": splits.name, "data_sha256": splits.sha256, "data_source": splits.source,
            "data_shape": "x".join(map(str, splits.image_shape)),
            "tuner": str(cfg.tuner.name), "seed": cfg.seed, "keras_backend": accelerator.backend(),
            "device": accelerator.describe(cfg.accelerator), "git_commit": _git_commit(),
            store.OVERRIDES: self.info.overrides, store.SWEEP_DIR: self.info.sweep_dir or "",
            store.JOB_NAME: self.name,
        }

    def tracker(self, worker: str | None = None):
        """The job's MLflow writer (a worker's runs are tagged with its name)."""
        from vggsweep.tracking.writer import JobTracker

        tags = {**self.tags(), **({store.WORKER: worker} if worker else {})}
        tracker = JobTracker(self.uri, self.cfg.experiment, self.key, tags,
                             outbox=self.project / OUTBOX_DIR / f"{worker or 'job'}.jsonl",
                             outage_s=self.cfg.tracking.outage_s,
                             label=self.progress(worker).prefix, adopt=worker is None)
        if self.parent_run_id:
            tracker.attach(self.parent_run_id)
        return tracker

    def progress(self, worker: str | None = None) -> progress.Progress:
        from vggsweep.search import tuners

        counts = tuners.TUNERS[str(self.cfg.tuner.name)].counts_trials
        return progress.Progress(self.info.index, self.info.total, self.name,
                                 self.cfg.budget.max_trials if counts else None,
                                 verbose=self.cfg.verbose, worker=worker)

    def context(self, tracker, report, worker: str | None = None):
        from vggsweep.search import tuning

        cfg, splits = self.cfg, self.splits
        return tuning.JobContext(
            tracker=tracker, progress=report, seed=cfg.seed, budget=cfg.budget,
            verbose=cfg.verbose, keep=str(cfg.tuner.keep), image_size=self.image_size,
            prune=str(cfg.tuner.pruner) != "off",
            cost=str(cfg.tuner.cost) if cfg.tuner.cost else None,
            cost_weight=cfg.tuner.cost_weight,
            trial_params={"epochs": cfg.budget.epochs, "batch_size": cfg.budget.batch_size,
                          "batch_scale": accelerator.batch_scale(cfg.accelerator),
                          "optimizer": cfg.optimizer.name, **splits.sizes()},
            trial_tags={"model": self.info.model_name or cfg.model.family,
                        "family": cfg.model.family, "data": splits.name,
                        store.JOB_NAME: self.name, **({store.WORKER: worker} if worker else {})},
            compile_options=accelerator.compile_options(cfg.accelerator),
            accelerator=cfg.accelerator,
            reference_first=bool(space.plain(cfg.tuner.enqueue)),
        )

    def tuner(self, tracker, report, worker: str | None = None):
        """The job's keras-tuner tuner over its project (a worker's, when the env says so)."""
        from vggsweep.search import oracles, trialspace, tuners, tuning

        cfg = self.cfg
        trial_space, enqueue = trialspace.of_job(
            cfg, input_shape=self.splits.image_shape, num_classes=self.splits.num_classes,
            image_size=self.image_size)
        deadline = (time.monotonic() + cfg.budget.time_limit_s if cfg.budget.time_limit_s
                    else None)
        oracle = oracles.make_oracle(cfg.tuner, cfg.budget, cfg.seed,
                                     pruner=tuners.make_pruner(cfg.tuner), enqueue=enqueue,
                                     deadline=deadline)
        with contextlib.redirect_stdout(io.StringIO()):  # keras-tuner's "Reloading Tuner from"
            return tuning.SweepTuner(oracle, trial_space,
                                     job=self.context(tracker, report, worker),
                                     project_dir=self.project,
                                     executions_per_trial=cfg.budget.executions_per_trial)

    def save(self, parent_run_id: str) -> Path:
        """Writes what a worker needs to join this job (`job.json` in the project)."""
        from vggsweep.runtime.files import atomic_write_json

        path = self.project / JOB_FILE
        atomic_write_json(str(path), {
            "config": config.container(self.cfg), "name": self.name, "key": self.key,
            "tracking_uri": self.uri, "parent_run_id": parent_run_id,
            "info": self.info.__dict__, "image_size": self.image_size,
        })
        return path

    @classmethod
    def load(cls, project: Path, tracking_uri: str | None = None) -> Job:
        """The job a worker joins, from the `job.json` its job process wrote."""
        from vggsweep import data

        saved = json.loads((project / JOB_FILE).read_text())
        cfg = OmegaConf.create(saved["config"])
        splits = accelerator.on_device(data.load(cfg.data), cfg.accelerator)
        return cls(cfg=cfg, info=JobInfo(**saved["info"]), name=saved["name"], key=saved["key"],
                   uri=tracking_uri or saved["tracking_uri"], project=project,
                   splits=splits, image_size=saved["image_size"],
                   parent_run_id=saved["parent_run_id"])


def _git_commit() -> str:
    from vggsweep.tracking.writer import git_commit

    return git_commit()


def run(job: Job, tracker, started: float) -> JobResult:
    """The job's search and its summary in MLflow (inside the open parent run)."""
    cfg = job.cfg
    report = job.progress()
    report.note(f"data {job.splits.name} ({job.splits.source}, sha256 {job.splits.sha256}): "
                f"{job.splits.sizes()}; tracking {job.uri}; job key {job.key}")
    tuner = job.tuner(tracker, report)
    if cfg.tuner.workers > 1:
        from vggsweep.search import distributed

        distributed.serve(job, tuner, report, tracker.parent_id)
    else:
        tuner.search(job.splits, verbose=0)  # keras-tuner's own display off: Progress prints
    tuner.prune_checkpoints()
    return summarize(job, tracker, report, started)


def summarize(job: Job, tracker, report, started: float) -> JobResult:
    """Counts, best trial, its margins and best model of the job, recorded on its parent run."""
    counts = tracker.trial_counts()
    completed, failed = counts["FINISHED"], counts["FAILED"]
    best = tracker.best_trial()
    best_pair = None if best is None else _val_and_test(best)
    reference = next(iter(tracker.children(f"tags.`{store.REFERENCE}` = 'true'")), None)
    summary = {"trials_completed": completed, "trials_failed": failed,
               "trials_pruned": counts["PRUNED"], "epochs_saved": counts["epochs_saved"],
               "job_time_s": time.perf_counter() - started}
    best_text = ""
    if best_pair:
        summary.update(best_val_accuracy=best_pair[0], best_test_accuracy=best_pair[1])
        margins = job_margins(tracker, best)
        for role, (_, margin) in margins.items():
            summary.update(margin.metrics(f"margin_{role}"))
        best_text = (f"best {best.info.run_name}: val_accuracy {best_pair[0]:.4f}, its "
                     f"test_accuracy {best_pair[1]:.4f}")
        if "runner_up" in margins:
            other, margin = margins["runner_up"]
            best_text += "; " + margin.describe(other)
    if reference is not None and reference.info.status == "FINISHED":
        summary.update(zip(("reference_val_accuracy", "reference_test_accuracy"),
                           _val_and_test(reference)))
    line = _reference_line(reference, best)
    if line:
        best_text = f"{best_text}; {line}" if best_text else line
    tracker.finish_job(summary)
    report.job_end(completed - counts["PRUNED"], counts["PRUNED"], failed, best_text)
    if completed == 0:
        reason = f"0/{completed + failed} trials completed"
        first = tracker.first_failure()
        reason += f"; first failure: {first}" if first else ""
        tracker.fail_parent(reason)
        report.note(f"FAILED: {reason}")
        return JobResult(job.name, "failed", reason, tracker.parent_id, completed, failed)
    kept = Path(best.data.tags.get(store.KEPT_MODEL, "")) if best is not None else None
    if job.cfg.tracking.log_model and kept is not None and kept.is_file() and \
            not tracker.logged_model_of(best):  # a rerun of a finished job: logged already
        log_best_model(tracker, kept, job.splits, best)
    return JobResult(job.name, "completed", "", tracker.parent_id, completed, failed,
                     *best_pair)


def job_margins(tracker, best) -> dict:
    """The job's best trial against its runner-up and its reference trial (the space's default
    point), on the same validation images: role -> (the other's run name, `agreement.Margin`)."""
    from vggsweep.tracking import agreement, results

    runs = [r for r in tracker.children("attributes.status = 'FINISHED'")
            if results.trial_status(r) == "FINISHED" and r.info.run_id != best.info.run_id]
    ranked = sorted((r for r in runs if _kept_accuracy(r) is not None),
                    key=lambda r: results.rank_key(_kept_accuracy(r), r.info.start_time,
                                                   r.info.run_id))
    others = {"runner_up": ranked[0] if ranked else None,
              "reference": next((r for r in runs
                                 if r.data.tags.get(store.REFERENCE) == "true"), None)}
    mine = agreement.decode(best.data.tags)
    found = {}
    for role, other in others.items():
        margin = agreement.compare(mine, agreement.decode(other.data.tags)) if other else None
        if margin is not None:
            found[role] = (other.info.run_name, margin)
    return found


def _kept_accuracy(run) -> float | None:
    metrics = run.data.metrics
    return metrics.get("val_accuracy_kept", metrics.get("val_accuracy"))


def _val_and_test(run) -> tuple[float, float]:
    metrics = run.data.metrics
    return (metrics.get("val_accuracy_kept", metrics.get("val_accuracy")),
            metrics.get("test_accuracy", float("nan")))


def _reference_line(reference, best) -> str | None:
    """How the best trial compares with the reference trial, for the job line."""
    if reference is None:
        return None
    number = int(reference.data.tags.get(store.TRIAL_ID, 0)) + 1
    if reference.info.status != "FINISHED":
        return f"reference trial {number} {reference.info.status.lower()}"
    val, test = _val_and_test(reference)
    if best is None or best.info.run_id == reference.info.run_id:
        return f"reference trial {number} is the best: no trial beat it on validation"
    best_val, best_test = _val_and_test(best)
    return (f"reference trial {number}: val_accuracy {val:.4f}, test_accuracy {test:.4f}; "
            f"the best beats it by {best_val - val:+.4f} on validation, "
            f"{best_test - test:+.4f} on test")


def log_best_model(tracker, path: Path, splits, best_run) -> None:
    """Logs the best model as the job's MLflow logged model (reloaded with safe_mode=True), and
    its pictures on the test split."""
    import numpy as np

    from vggsweep.models import training
    from vggsweep.outputs import plots
    from vggsweep.runtime import accelerator
    from vggsweep.search import tuning

    model = accelerator.keras_module().saving.load_model(path, safe_mode=True)
    step = int(best_run.data.metrics.get("best_epoch", 1)) - 1 if best_run else 0
    metrics = {k: v for k, v in best_run.data.metrics.items()
               if k.startswith("test_") or k in ("val_accuracy_kept", "param_count")}
    tracker.log_model(model, splits.x_test[:2], step=max(step, 0), metrics=metrics,
                      trial_run=best_run)
    saved = tuning.predictions_path(path)  # the kept trial measured them
    predicted = np.load(saved) if saved.is_file() else None
    if predicted is None or len(predicted) != len(splits.y_test):
        _, predicted = training.evaluate(model, splits.x_test, splits.y_test, "test")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [
            plots.confusion_matrix_png(splits.y_test, predicted, f"{tmp}/confusion_matrix.png"),
            plots.misclassified_png(splits.x_test, splits.y_test, predicted,
                                    f"{tmp}/misclassified.png"),
            plots.samples_png(splits.x_train, splits.y_train, f"{tmp}/training_samples.png"),
        ]
        for output in outputs:
            tracker.log_artifact(output, "plots")
