"""keras-tuner, made to survive: oracles with atomic state, quasi-random search, and a tuner whose
trials are MLflow child runs.

Responsibilities follow keras-tuner's split: `SweepHyperModel` declares the space and builds a
model; the oracles pick values; `SweepTuner.run_trial` trains one point and records it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.hyperparameters import hp_types

from vggsweep import config as config_module
from vggsweep import models, space, training
from vggsweep.config import ConfigError

OBJECTIVE = kt.Objective("val_accuracy", direction="max")
BEST_MODEL = "best_model.keras"
CHECKPOINT = "checkpoint.weights.h5"


class StateError(ConfigError):
    """The tuner's saved state cannot be read."""


def atomic_write_json(path: str, obj) -> str:
    """Writes JSON through a temporary file and a rename, so a kill never leaves half a file."""
    text = json.dumps(obj)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return text


class AtomicStateMixin:
    """Saves the oracle's state and every trial's file atomically."""

    def save(self):
        atomic_write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        atomic_write_json(path, trial.get_state())


class RandomOracle(AtomicStateMixin, kt.oracles.RandomSearchOracle):
    pass


class GridOracle(AtomicStateMixin, kt.oracles.GridSearchOracle):
    pass


class BayesianOracle(AtomicStateMixin, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(AtomicStateMixin, kt.oracles.HyperbandOracle):
    pass


class QuasiRandomOracle(AtomicStateMixin, kt.Oracle):
    """Quasi-random search: a scrambled Sobol sequence (scipy.stats.qmc) mapped through each
    hyperparameter's `prob_to_value`, the low-discrepancy exploration the Deep Learning Tuning
    Playbook recommends. The n-th trial takes the n-th point, so a resumed search continues the
    same sequence; points that map onto already-tried values are skipped.
    """

    def __init__(self, objective=None, max_trials=10, seed=None, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials, seed=seed, **kwargs)
        self._next_index = 0

    def _points(self, dimensions: int, index: int):
        from scipy.stats import qmc

        count = 1 << max(int(index).bit_length(), 4)  # a power of two keeps Sobol balanced
        return qmc.Sobol(d=max(dimensions, 1), scramble=True, seed=self.seed).random(count)

    def populate_space(self, trial_id):
        space_ = self.hyperparameters.space
        searched = [hp for hp in space_ if not isinstance(hp, hp_types.Fixed)]
        fixed = {hp.name: hp.value for hp in space_ if isinstance(hp, hp_types.Fixed)}
        for _ in range(1000):
            index = self._next_index
            self._next_index += 1
            point = self._points(len(searched), index)[index]
            values = dict(fixed)
            values.update({hp.name: hp.prob_to_value(float(u)) for hp, u in zip(searched, point)})
            if not self._duplicate(values):
                return {"status": trial_module.TrialStatus.RUNNING, "values": values}
        return {"status": trial_module.TrialStatus.STOPPED, "values": None}

    def get_state(self):
        state = super().get_state()
        state["next_index"] = self._next_index
        return state

    def set_state(self, state):
        super().set_state(state)
        self._next_index = state.get("next_index", 0)


def make_oracle(tuner_cfg, budget_cfg, seed: int):
    """The oracle named by `tuner.name`, seeded with `seed`; a failed trial never aborts the
    search."""
    oracle = _new_oracle(tuner_cfg, budget_cfg, seed)
    # keras-tuner replaces a falsy seed (our default, 0) by a random one: set it back.
    oracle.seed = oracle._seed_state = seed
    return oracle


def _new_oracle(tuner_cfg, budget_cfg, seed: int):
    common = {"objective": OBJECTIVE, "seed": seed,
              "max_consecutive_failed_trials": budget_cfg.max_trials + 1}
    name = tuner_cfg.name
    if name == "random":
        return RandomOracle(max_trials=budget_cfg.max_trials, **common)
    if name == "grid":
        return GridOracle(max_trials=budget_cfg.max_trials, **common)
    if name == "bayesian":
        return BayesianOracle(max_trials=budget_cfg.max_trials,
                              num_initial_points=tuner_cfg.num_initial_points, **common)
    if name == "hyperband":
        return HyperbandOracle(max_epochs=budget_cfg.epochs, factor=tuner_cfg.factor,
                               hyperband_iterations=tuner_cfg.hyperband_iterations, **common)
    if name == "quasi_random":
        return QuasiRandomOracle(max_trials=budget_cfg.max_trials, **common)
    raise ConfigError(f"tuner.name={name!r} is not valid; valid: {', '.join(config_module.TUNERS)}")


class SweepHyperModel(kt.HyperModel):
    """Declares the job's space from the config and builds + compiles a model at one point."""

    def __init__(self, cfg, input_shape, num_classes, steps_per_epoch=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epochs = cfg.budget.epochs
        self.cfg = cfg
        self.family = cfg.model.family
        self.model_params = {k: v for k, v in cfg.model.items() if k != "family"}
        self.optimizer_params = {k: v for k, v in cfg.optimizer.items() if k != "name"}
        self.input_shape = input_shape
        self.num_classes = num_classes

    def declare_hyperparameters(self, hp):
        space.declare(hp, {"activation": self.cfg.activation})
        space.declare(hp, self.model_params)
        space.declare(hp, self.optimizer_params)

    def point(self, hp_values: dict) -> tuple[dict, dict]:
        """(model builder kwargs, optimizer kwargs) at the trial's values."""
        model_kwargs = config_module.model_point(self.cfg, hp_values)
        optimizer_kwargs = {"name": self.cfg.optimizer.name,
                            **space.values(hp_values, self.optimizer_params)}
        return model_kwargs, optimizer_kwargs

    def build(self, hp):
        model_kwargs, optimizer_kwargs = self.point(hp.values)
        model = models.build_model(
            self.family, model_kwargs, input_shape=self.input_shape,
            num_classes=self.num_classes, image_size=self.cfg.data.image_size,
        )
        # Hyperband trials train for their own number of epochs (tuner/epochs).
        epochs = int(hp.values.get("tuner/epochs", self.epochs))
        training.compile_model(model, optimizer_kwargs, self.steps_per_epoch, epochs)
        return model


def check_state_files(project_dir: Path) -> None:
    """Fails with one line naming the file when saved tuner state is truncated or corrupt."""
    for path in [project_dir / "oracle.json", *sorted(project_dir.glob("tuner*.json")),
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


class SweepTuner(kt.Tuner):
    """Runs each trial as an MLflow child run; keeps only the best model on disk by default."""

    def __init__(self, oracle, hypermodel, *, job, **kwargs):
        self.job = job
        self.search_started = time.perf_counter()
        self.completed_this_run = 0
        super().__init__(oracle, hypermodel, **kwargs)

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

    def pre_create_trial(self):
        limit = self.job.budget.time_limit_s
        if limit and time.perf_counter() - self.search_started > limit:
            # No new trial starts: create_trial() answers STOPPED once max_trials is reached.
            # keras-tuner reads max_trials=0 as "no limit": at least one trial always runs.
            self.oracle.max_trials = max(len(self.oracle.trials), 1)
            self.job.progress.note(f"time limit of {limit:g}s reached: no new trial starts")

    def on_trial_begin(self, trial):
        hps = trial.hyperparameters
        searched = {hp.name for hp in hps.space if not isinstance(hp, hp_types.Fixed)}
        self.job.progress.trial_begin(
            trial.trial_id, {k: v for k, v in self.trial_values(trial).items() if k in searched})

    def trial_values(self, trial) -> dict:
        """The trial's values in the config's own types (booleans stay booleans)."""
        values = dict(trial.hyperparameters.values)
        model_kwargs, optimizer_kwargs = self.hypermodel.point(values)
        typed = {**model_kwargs, **optimizer_kwargs}
        return {k: typed.get(k, v) for k, v in values.items()}

    def run_trial(self, trial, splits, **_):
        values = self.trial_values(trial)
        model_kwargs, optimizer_kwargs = self.hypermodel.point(values)
        params = {**values, **{k: v for k, v in model_kwargs.items() if k not in values},
                  "seed": self.job.seed + int(trial.trial_id), **self.job.trial_params}
        with self.job.tracker.trial_run(trial.trial_id, params, self.job.trial_tags):
            try:
                return self._train_and_record(trial, values, splits, optimizer_kwargs)
            except (training.NonFiniteLoss, models.ModelConfigError) as error:
                raise kt.errors.FailedTrialError(str(error)) from error

    def _train_and_record(self, trial, values, splits, optimizer_kwargs):
        import mlflow

        epochs = int(values.get("tuner/epochs", self.job.budget.epochs))
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        results = []
        for execution in range(self.executions_per_trial):
            keras.utils.set_random_seed(self.job.seed + int(trial.trial_id) + 1000 * execution)
            model = self._try_build(trial.hyperparameters)
            if "tuner/trial_id" in values:
                model.load_weights(self._checkpoint(values["tuner/trial_id"]))
            callbacks = [mlflow.keras.MlflowCallback(log_every_epoch=True)] if execution == 0 else []
            fit = training.fit(
                model, splits, epochs=epochs, batch_size=self.job.budget.batch_size,
                patience=self.job.budget.patience, initial_epoch=initial_epoch,
                use_ema=bool(optimizer_kwargs.get("ema")), callbacks=callbacks,
                verbose=self.job.verbose,
            )
            val_metrics, _ = training.evaluate(model, splits.x_val, splits.y_val, "val")
            results.append((val_metrics["val_accuracy"], fit, model))
        best_val, fit, model = max(results, key=lambda item: item[0])
        mean_val = sum(item[0] for item in results) / len(results)
        test_metrics, _ = training.evaluate(model, splits.x_test, splits.y_test, "test")
        self.job.tracker.log_metrics(
            {
                "val_accuracy": mean_val, **test_metrics,
                "train_time_s": fit.train_time_s, "epochs_run": fit.epochs_run,
                "best_epoch": fit.best_epoch, "param_count": model.count_params(),
                "images_per_s": fit.images_per_s,
            },
            step=initial_epoch + fit.epochs_run,
        )
        self._keep(trial.trial_id, model, mean_val)
        self.job.progress.trial_end(trial.trial_id, mean_val, test_metrics["test_accuracy"],
                                    fit.train_time_s)
        return {"val_accuracy": mean_val}

    def _checkpoint(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), CHECKPOINT)

    def _keep(self, trial_id: str, model, score: float) -> None:
        """Saves the model if it is the job's best so far (and every trial's weights for
        Hyperband, which resumes promoted trials from them)."""
        if self.job.keep == "all":
            model.save_weights(self._checkpoint(trial_id))
        best_file = Path(self.project_dir) / "best.json"
        best = json.loads(best_file.read_text()) if best_file.is_file() else None
        if best is not None and best["score"] >= score:
            return
        tmp = Path(self.project_dir) / f".tmp-{BEST_MODEL}"
        model.save(tmp)
        os.replace(tmp, Path(self.project_dir) / BEST_MODEL)
        atomic_write_json(str(best_file), {"trial_id": trial_id, "score": score})

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


def prepare_project(project_dir: Path, fresh: bool) -> None:
    """Discards the project when `fresh`; refuses corrupt saved state with one line."""
    if fresh and project_dir.exists():
        shutil.rmtree(project_dir)
    check_state_files(project_dir)


def make_tuner(job, hypermodel, project_dir: Path, fresh: bool) -> SweepTuner:
    """The job's tuner over its stable project directory (resumed unless `fresh`)."""
    prepare_project(project_dir, fresh)
    oracle = make_oracle(job.tuner_cfg, job.budget, job.seed)
    return SweepTuner(
        oracle, hypermodel, job=job, directory=str(project_dir.parent),
        project_name=project_dir.name, overwrite=False,
        executions_per_trial=job.budget.executions_per_trial,
    )
