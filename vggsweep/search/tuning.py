"""The keras-tuner side of a job: the tuner that trains one trial and records it.

Responsibilities follow keras-tuner's split: the trial space (`vggsweep.search.trialspace`)
declares the hyperparameters; the oracles (`vggsweep.search.oracles`) pick values;
`SweepTuner.run_trial` trains the point with `training.train_one` (the one training path) and
records it through the job's tracker, epoch by epoch through a Keras callback (`TrialCallback`).
The same tuner runs alone in a job's process or as one of its workers.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from vggsweep.errors import (
    InfrastructureError,
    ModelConfigError,
    NonFiniteLoss,
    TrackingUnavailable,
    one_line,
)
from vggsweep.models import training
from vggsweep.runtime import accelerator, files, interrupts
from vggsweep.runtime.files import atomic_write_json, project_lock
from vggsweep.search import internals
from vggsweep.search.oracles import is_reference
from vggsweep.search.trialspace import TrialSpace
from vggsweep.tracking import agreement, faults, store

CHECKPOINT = "checkpoint.weights.h5"
#: The kept model (the job's best trial's) lives in <project>/kept/trial_<id>.keras, beside its
#: test predictions (for the pictures); its path is a tag of that trial's run.
KEPT_DIR = "kept"
IDLE_WAIT_S = 0.5


class StopSearch(kt.errors.FatalError):
    """Carries an infrastructure error out of keras-tuner's search loop, which turns any other
    error of a trial into a failed (or retried) trial; `SweepTuner.search` raises the cause."""

    def __init__(self, cause: InfrastructureError):
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class JobContext:
    """What a trial needs from its job (the same in every worker of the job)."""

    tracker: object  # vggsweep.tracking.writer.JobTracker
    progress: object  # vggsweep.job.progress.Progress
    seed: int
    budget: object  # the budget config subtree
    verbose: int
    keep: str  # best | all
    image_size: int
    prune: bool = False  # report every epoch to the oracle, which may stop the trial
    cost: str | None = None  # the second objective (train_time_s | param_count), if any
    cost_weight: float = 0.02  # accuracy traded per 10x cost
    trial_params: dict = field(default_factory=dict)
    trial_tags: dict = field(default_factory=dict)
    compile_options: dict = field(default_factory=dict)
    accelerator: object = None  # the accelerator config subtree (batch scaling)
    reference_first: bool = False  # trial 0 is the reference (the first enqueued point)

    def cost_adjusted(self, val_accuracy: float, cost: float) -> float:
        """The search's objective with `tuner.cost`: accuracy minus weight x log10(cost)."""
        return val_accuracy - self.cost_weight * math.log10(max(cost, 1e-9))


class TrialCallback(keras.callbacks.Callback):
    """Per epoch of a trial: its curves into MLflow (one batch), its validation accuracy to the
    oracle, whose pruner may stop the trial (`stopped_by` then says why)."""

    def __init__(self, job: JobContext, oracle, trial, run, *, record: bool, epochs: int,
                 params: int = 0):
        super().__init__()
        self.job, self.oracle, self.trial, self.run = job, oracle, trial, run
        self.record, self.epochs, self.params = record, epochs, params
        self.started = time.perf_counter()
        self.stopped_by: str | None = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.check()  # an interrupt a library swallowed stops the trial here
        logs = dict(logs or {})
        if self.record:
            self.job.tracker.log_epoch(self.run, logs, epoch)  # queued: training goes on
        self.job.tracker.check()  # the store away past the bound, or a full disk: stop here
        if not self.job.prune or "val_accuracy" not in logs:
            return
        value = float(logs["val_accuracy"])
        reported = {"val_accuracy": value}
        if self.job.cost:  # the objective too: the time cost projected to the end
            cost = self.params if self.job.cost == "param_count" else (
                (time.perf_counter() - self.started) / (epoch + 1) * self.epochs)
            reported["cost_adjusted_accuracy"] = self.job.cost_adjusted(value, cost)
        answer = self.oracle.update_trial(self.trial.trial_id, reported, step=epoch)
        last = epoch + 1 >= self.epochs  # stopping after the last epoch would save nothing
        if answer.status == internals.STOPPED and not last:
            self.stopped_by = f"pruned after epoch {epoch + 1}"
            self.model.stop_training = True


class SweepTuner(internals.TunerHooks, kt.Tuner):
    """Runs each trial as an MLflow child run; keeps only the best model on disk by default."""

    def __init__(self, oracle, trial_space: TrialSpace, *, job: JobContext, project_dir: Path,
                 executions_per_trial: int = 1):
        self.job = job
        self.trial_space = trial_space
        self._ran_since_asking = True
        super().__init__(oracle, hypermodel=None, directory=str(project_dir.parent),
                         project_name=project_dir.name, overwrite=False,
                         executions_per_trial=executions_per_trial)

    def declare_space(self):
        # keras-tuner would build the model once here with default values (slow for a VGG, and
        # wrong when the default point cannot be built); our space is declared, not discovered.
        hp = self.oracle.get_space()
        self.trial_space.declare(hp)
        self.oracle.update_space(hp)

    def save(self):
        if not internals.is_worker(self):
            self.oracle.save()
        atomic_write_json(internals.tuner_file(self), self.get_state())

    def pre_create_trial(self):
        # A worker asks the chief again at once when its oracle answered IDLE (Hyperband waits
        # for a round to finish): wait a little between such answers.
        if internals.is_worker(self) and not self._ran_since_asking:
            time.sleep(IDLE_WAIT_S)
        self._ran_since_asking = False

    def on_trial_begin(self, trial):
        interrupts.check()  # one swallowed before the trial (in the imports) stops it here
        self._ran_since_asking = True
        hps = trial.hyperparameters
        searched = {hp.name for hp in hps.space if not internals.is_fixed(hp)}
        values = self.trial_space.typed_values(dict(hps.values))
        self.job.progress.trial_begin(trial.trial_id,
                                      {k: v for k, v in values.items() if k in searched})

    def search(self, *fit_args, **fit_kwargs):
        """keras-tuner's search; an infrastructure failure ends it with its own error (the
        trial under way stays ongoing in the oracle's saved state: the rerun trains it)."""
        try:
            return super().search(*fit_args, **fit_kwargs)
        except StopSearch as stop:
            raise stop.cause from None

    def run_trial(self, trial, splits, **_):
        values = self.trial_space.typed_values(dict(trial.hyperparameters.values))
        model_kwargs, optimizer_kwargs = self.trial_space.point(values)
        params = {**values, **{k: v for k, v in model_kwargs.items() if k not in values},
                  "seed": self.job.seed + int(trial.trial_id), **self.job.trial_params}
        tags = {**self.job.trial_tags, "activation": model_kwargs["activation"]}
        if is_reference(trial.trial_id, self.job.reference_first):
            tags[store.REFERENCE] = "true"
        try:
            with self.job.tracker.trial_run(trial.trial_id, params, tags) as run:
                try:
                    return self._train_and_record(trial, run, values, splits, model_kwargs,
                                                  optimizer_kwargs)
                except Exception as error:
                    # An interrupt that TensorFlow caught and turned into an error of its own
                    # ("None values not supported"): the trial was interrupted, not failed.
                    interrupts.check()
                    raise self._classified(error) from error
        except InfrastructureError as error:
            raise StopSearch(error) from error

    def _classified(self, error: Exception) -> Exception:
        """What a trial's error means: the infrastructure's (the store away, a full disk: the
        run ends KILLED with the cause, the search stops, the trial runs again on rerun), or the
        trial's own (it diverged, cannot be built, its training raised: FAILED, the search
        goes on)."""
        if isinstance(error, InfrastructureError):
            return error
        if files.is_disk_full(error):
            return files.disk_full_error(getattr(error, "filename", None) or self.project_dir)
        if faults.classify(error) == faults.AWAY:
            return TrackingUnavailable(f"the tracking store did not answer: {one_line(error)}")
        if isinstance(error, kt.errors.FailedTrialError):
            return error
        message = str(error) if isinstance(error, (NonFiniteLoss, ModelConfigError)) else (
            f"{type(error).__name__}: {one_line(error)}")
        return kt.errors.FailedTrialError(message)

    def _train_and_record(self, trial, run, values, splits, model_kwargs, optimizer_kwargs):
        budget = self.job.budget
        epochs = int(values.get("tuner/epochs", budget.epochs))
        promoted_from = values.get("tuner/trial_id")
        params = self.trial_space.param_count(values) if self.job.cost == "param_count" else 0
        batch_size, optimizer_kwargs = accelerator.scaled(budget.batch_size, optimizer_kwargs,
                                                          self.job.accelerator)
        executions = []
        for execution in range(self.executions_per_trial):
            callback = TrialCallback(self.job, self.oracle, trial, run, record=execution == 0,
                                     epochs=epochs, params=params)
            executions.append(training.train_one(
                self.trial_space.family, model_kwargs, optimizer_kwargs, splits,
                image_size=self.job.image_size, epochs=epochs, batch_size=batch_size,
                seed=self.job.seed + int(trial.trial_id) + 1000 * execution,
                patience=budget.patience, initial_epoch=int(values.get("tuner/initial_epoch", 0)),
                weights=self._checkpoint(promoted_from) if promoted_from else None,
                callbacks=[callback], evaluate_test=False, verbose=self.job.verbose,
                compile_options=self.job.compile_options))
        best = max(executions, key=lambda trained: trained.val_accuracy)  # ties: the first
        mean_val = sum(t.val_accuracy for t in executions) / len(executions)
        test, predictions = training.evaluate(best.model, splits.x_test, splits.y_test, "test")
        fit = best.fit
        measures = {
            "val_accuracy_kept": mean_val, **test, "train_time_s": fit.train_time_s,
            "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
            "param_count": best.model.count_params(), "images_per_s": fit.images_per_s,
        }
        result = {"val_accuracy": mean_val}
        if self.job.cost:
            result["cost_adjusted_accuracy"] = self.job.cost_adjusted(mean_val,
                                                                      measures[self.job.cost])
            measures["cost_adjusted_accuracy"] = result["cost_adjusted_accuracy"]
        if fit.stopped_by:
            measures["epochs_saved"] = max(epochs - int(values.get("tuner/initial_epoch", 0))
                                           - fit.epochs_run, 0)
        agreement_tags = {}
        if fit.stopped_by is None:  # finished trials are compared image by image (the margin)
            _, val_predicted = training.evaluate(best.model, splits.x_val, splits.y_val, "val")
            y_val = np.asarray(splits.y_val)
            agreement_tags = agreement.encode(val_predicted == y_val, y_val)
        self.job.tracker.finish_trial(run, measures, pruned=fit.stopped_by, tags=agreement_tags)
        if fit.stopped_by is None:
            self._keep(trial.trial_id, run, best.model, mean_val, predictions)
        elif self.job.keep == "all":
            self._save_weights(best.model, trial.trial_id)
        self.job.progress.trial_end(trial.trial_id, mean_val, test["test_accuracy"],
                                    fit.train_time_s, note=fit.stopped_by)
        return result

    def _checkpoint(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), CHECKPOINT)

    def _save_weights(self, model, trial_id: str) -> None:
        with files.atomic_path(self._checkpoint(trial_id), needed=4 * model.count_params()) as tmp:
            model.save_weights(tmp)

    def _keep(self, trial_id: str, run, model, score: float, predictions) -> None:
        """Keeps the model on disk if the store ranks this trial first in its job (the one
        ranking: `results.rank_key`), records where on the trial's run, and deletes the model
        it replaces; and every trial's weights for Hyperband, which resumes promoted trials."""
        if self.job.keep == "all":
            self._save_weights(model, trial_id)
        folder = Path(self.project_dir) / KEPT_DIR
        with project_lock(Path(self.project_dir)):  # workers keep their models one at a time
            if not self.job.tracker.ranks_first(run, score):
                return
            path = folder / f"trial_{trial_id}.keras"
            with files.atomic_path(path, needed=4 * model.count_params()) as tmp:
                model.save(tmp)
            with files.atomic_path(predictions_path(path)) as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.asarray(predictions, dtype=np.int16))
            self.job.tracker.record_kept_model(run, path)
            for other in folder.glob("trial_*"):
                if not other.name.startswith(f"trial_{trial_id}."):
                    other.unlink(missing_ok=True)

    def prune_checkpoints(self) -> None:
        """Deletes per-trial weights once the search is over: only the best model stays."""
        for path in Path(self.project_dir).glob(f"trial_*/{CHECKPOINT}"):
            path.unlink(missing_ok=True)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if trial.status != internals.COMPLETED:
            reason = (trial.message or "").strip().splitlines()
            self.job.progress.trial_failed(trial.trial_id, reason[-1] if reason else "unknown")


def predictions_path(model_path: Path) -> Path:
    """Where the kept model's test predictions are (beside it)."""
    return Path(model_path).with_suffix(".test_predictions.npy")
