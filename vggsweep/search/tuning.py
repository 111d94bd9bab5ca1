"""The keras-tuner side of a job: the hypermodel (the space) and the tuner (one trial).

Responsibilities follow keras-tuner's split: `SweepHyperModel` declares the space from config
subtrees and builds a model at one point; the oracles (`vggsweep.search.oracles`) pick values;
`SweepTuner.run_trial` trains the point with `training.train_one` and records it through the
job's tracker. The same tuner runs alone in a job's process or as one of its workers.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.hyperparameters import hp_types

from vggsweep import models
from vggsweep.config import space
from vggsweep.errors import ModelConfigError, NonFiniteLoss
from vggsweep.models import training
from vggsweep.runtime import accelerator
from vggsweep.runtime.files import atomic_write_json, project_lock
from vggsweep.tracking import results

BEST_MODEL = "best_model.keras"
BEST_FILE = "best.json"
BEST_PREDICTIONS = "best_test_predictions.npy"  # the kept model's test predictions (pictures)
CHECKPOINT = "checkpoint.weights.h5"
IDLE_WAIT_S = 0.5


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


class SweepHyperModel(kt.HyperModel):
    """Declares the job's space from its config subtrees and builds a model at one point."""

    def __init__(self, model_cfg, optimizer_cfg, activation, *, input_shape, num_classes: int,
                 image_size: int, epochs: int, steps_per_epoch: int | None = None):
        super().__init__()
        self.model_cfg = space.plain(model_cfg)
        self.optimizer_cfg = space.plain(optimizer_cfg)
        self.activation = space.plain(activation)
        self.family = self.model_cfg["family"]
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.image_size = image_size
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch

    def declare_hyperparameters(self, hp):
        space.declare(hp, {"activation": self.activation})
        space.declare(hp, {k: v for k, v in self.model_cfg.items() if k != "family"})
        space.declare(hp, {k: v for k, v in self.optimizer_cfg.items() if k != "name"})

    def point(self, hp_values: dict | None) -> tuple[dict, dict]:
        """(model builder kwargs, optimizer kwargs) at the trial's values."""
        return space.point(self.model_cfg, self.optimizer_cfg, self.activation, hp_values)

    def typed_values(self, hp_values: dict) -> dict:
        """The trial's values in the config's own types (booleans stay booleans)."""
        model_kwargs, optimizer_kwargs = self.point(hp_values)
        typed = {**model_kwargs, **optimizer_kwargs}
        return {k: typed.get(k, v) for k, v in hp_values.items()}

    def param_count(self, hp_values: dict) -> int:
        """The model's parameter count at a point (built, not trained)."""
        model_kwargs, _ = self.point(hp_values)
        return models.build_model(self.family, model_kwargs, input_shape=self.input_shape,
                                  num_classes=self.num_classes,
                                  image_size=self.image_size).count_params()

    def build(self, hp):
        model_kwargs, optimizer_kwargs = self.point(hp.values)
        model = models.build_model(self.family, model_kwargs, input_shape=self.input_shape,
                                   num_classes=self.num_classes, image_size=self.image_size)
        epochs = int(hp.values.get("tuner/epochs", self.epochs))
        training.compile_model(model, optimizer_kwargs, self.steps_per_epoch, epochs)
        return model


class SweepTuner(kt.Tuner):
    """Runs each trial as an MLflow child run; keeps only the best model on disk by default."""

    def __init__(self, oracle, hypermodel, *, job: JobContext, **kwargs):
        self.job = job
        super().__init__(oracle, hypermodel, **kwargs)
        if self._is_worker():  # keras-tuner asks again at once while the oracle is IDLE
            create = self.oracle.create_trial

            def create_trial(tuner_id):
                trial = create(tuner_id)
                if trial.status == trial_module.TrialStatus.IDLE:
                    time.sleep(IDLE_WAIT_S)  # (Hyperband waits for a round to finish)
                return trial

            self.oracle.create_trial = create_trial

    def _populate_initial_space(self):
        # keras-tuner would build the model once here with default values (slow for a VGG, and
        # wrong when the default point cannot be built); our space is declared, not discovered.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        atomic_write_json(self._get_tuner_fname(), self.get_state())

    def on_trial_begin(self, trial):
        hps = trial.hyperparameters
        searched = {hp.name for hp in hps.space if not isinstance(hp, hp_types.Fixed)}
        values = self.hypermodel.typed_values(dict(hps.values))
        self.job.progress.trial_begin(trial.trial_id,
                                      {k: v for k, v in values.items() if k in searched})

    def run_trial(self, trial, splits, **_):
        values = self.hypermodel.typed_values(dict(trial.hyperparameters.values))
        model_kwargs, optimizer_kwargs = self.hypermodel.point(values)
        params = {**values, **{k: v for k, v in model_kwargs.items() if k not in values},
                  "seed": self.job.seed + int(trial.trial_id), **self.job.trial_params}
        tags = {**self.job.trial_tags, "activation": model_kwargs["activation"]}
        with self.job.tracker.trial_run(trial.trial_id, params, tags) as run:
            try:
                return self._train_and_record(trial, run, values, splits, model_kwargs,
                                              optimizer_kwargs)
            except (NonFiniteLoss, ModelConfigError) as error:
                raise kt.errors.FailedTrialError(str(error)) from error

    def cost_adjusted(self, val_accuracy: float, cost: float) -> float:
        """The search's objective with `tuner.cost`: accuracy minus weight x log10(cost)."""
        return val_accuracy - self.job.cost_weight * math.log10(max(cost, 1e-9))

    def _epoch_hook(self, trial, run, report: bool, epochs: int, params: int):
        """Per epoch: the curves into MLflow (one batch), the value to the pruning oracle."""
        started = time.perf_counter()

        def on_epoch(epoch: int, logs: dict) -> str | None:
            if report:
                self.job.tracker.log_epoch(run, logs, epoch)
            if self.job.prune and "val_accuracy" in logs:
                value = float(logs["val_accuracy"])
                reported = {"val_accuracy": value}
                if self.job.cost:  # the objective too: the time cost projected to the end
                    cost = params if self.job.cost == "param_count" else (
                        (time.perf_counter() - started) / (epoch + 1) * epochs)
                    reported["cost_adjusted_accuracy"] = self.cost_adjusted(value, cost)
                answer = self.oracle.update_trial(trial.trial_id, reported, step=epoch)
                last = epoch + 1 >= epochs  # stopping after the last epoch would save nothing
                if answer.status == trial_module.TrialStatus.STOPPED and not last:
                    return f"pruned after epoch {epoch + 1}"
            return None
        return on_epoch

    def _train_and_record(self, trial, run, values, splits, model_kwargs, optimizer_kwargs):
        budget = self.job.budget
        epochs = int(values.get("tuner/epochs", budget.epochs))
        promoted_from = values.get("tuner/trial_id")
        params = self.hypermodel.param_count(values) if self.job.cost == "param_count" else 0
        batch_size, optimizer_kwargs = accelerator.scaled(budget.batch_size, optimizer_kwargs,
                                                          self.job.accelerator)
        executions = []
        for execution in range(self.executions_per_trial):
            executions.append(training.train_one(
                self.hypermodel.family, model_kwargs, optimizer_kwargs, splits,
                image_size=self.job.image_size, epochs=epochs, batch_size=batch_size,
                seed=self.job.seed + int(trial.trial_id) + 1000 * execution,
                patience=budget.patience, initial_epoch=int(values.get("tuner/initial_epoch", 0)),
                weights=self._checkpoint(promoted_from) if promoted_from else None,
                on_epoch=self._epoch_hook(trial, run, execution == 0, epochs, params),
                evaluate_test=False, verbose=self.job.verbose,
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
            result["cost_adjusted_accuracy"] = self.cost_adjusted(mean_val,
                                                                  measures[self.job.cost])
            measures["cost_adjusted_accuracy"] = result["cost_adjusted_accuracy"]
        if fit.stopped_by:
            measures["epochs_saved"] = max(epochs - int(values.get("tuner/initial_epoch", 0))
                                           - fit.epochs_run, 0)
        self.job.tracker.finish_trial(run, measures, pruned=fit.stopped_by)
        if fit.stopped_by is None:
            self._keep(trial.trial_id, run, best.model, mean_val, predictions)
        elif self.job.keep == "all":
            best.model.save_weights(self._checkpoint(trial.trial_id))
        self.job.progress.trial_end(trial.trial_id, mean_val, test["test_accuracy"],
                                    fit.train_time_s, note=fit.stopped_by)
        return result

    def _checkpoint(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), CHECKPOINT)

    def _keep(self, trial_id: str, run, model, score: float, predictions) -> None:
        """Saves the model if it is the job's best so far (ranked as the leaderboard ranks), and
        every trial's weights for Hyperband, which resumes promoted trials from them."""
        if self.job.keep == "all":
            model.save_weights(self._checkpoint(trial_id))
        project = Path(self.project_dir)
        key = results.rank_key(score, run.info.start_time, run.info.run_id)
        with project_lock(project):
            best_file = project / BEST_FILE
            best = json.loads(best_file.read_text()) if best_file.is_file() else None
            if best is not None and tuple(best.get("key", (-best["score"], 0, ""))) <= key:
                return
            tmp = project / f".tmp-{os.getpid()}-{BEST_MODEL}"
            model.save(tmp)
            os.replace(tmp, project / BEST_MODEL)
            tmp = project / f".tmp-{os.getpid()}-{BEST_PREDICTIONS}"
            with open(tmp, "wb") as handle:
                np.save(handle, np.asarray(predictions, dtype=np.int16))
            os.replace(tmp, project / BEST_PREDICTIONS)
            atomic_write_json(str(best_file), {"trial_id": trial_id, "score": score,
                                               "run_id": run.info.run_id, "key": list(key)})

    def prune_checkpoints(self) -> None:
        """Deletes per-trial weights once the search is over: only the best model stays."""
        for path in Path(self.project_dir).glob(f"trial_*/{CHECKPOINT}"):
            path.unlink(missing_ok=True)

    def best_model_path(self) -> Path | None:
        path = Path(self.project_dir) / BEST_MODEL
        return path if path.is_file() else None

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if trial.status != trial_module.TrialStatus.COMPLETED:
            reason = (trial.message or "").strip().splitlines()
            self.job.progress.trial_failed(trial.trial_id, reason[-1] if reason else "unknown")


def make_tuner(job: JobContext, hypermodel: SweepHyperModel, oracle, project_dir: Path,
               executions_per_trial: int = 1) -> SweepTuner:
    """The job's tuner over its stable project directory (resumed when it holds state)."""
    return SweepTuner(
        oracle, hypermodel, job=job, directory=str(project_dir.parent),
        project_name=project_dir.name, overwrite=False,
        executions_per_trial=executions_per_trial,
    )

