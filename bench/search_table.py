"""A recorded table of S3's 64-point grid, and searches replayed against it.

`record` trains every point of the `grid64` study's space (S3's CNN grid) once per seed through
the product's own training path (`vggsweep.models.training.train_one`, the data, the accelerator
settings and the point mapping a job uses) and writes one JSON line per (dataset, seed, point):
the validation and test accuracy after every epoch and the time of every epoch. Test accuracy is
recorded for the benchmark's last column only; no search ever reads it. Recording is
resumable: a rerun skips every point already in the table, and a kill loses at most the point
being trained.

    nice -n 10 .venv/bin/python bench/search_table.py record --datasets mnist digits \
        --seeds 0 1 2

`replay` runs search strategies against the table instead of training (see `replay --help`).
A benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "search_table.jsonl"
MNIST_PATH = ROOT.parent / "shared" / "data" / "mnist"
#: What a table's rows of one dataset must agree on (a rerun with other settings is refused).
TOLERANCE = 0.002  # as in bench/search_efficiency.py: 10 of 5,000 validation images
#: Accuracies are recorded to 6 decimals: a difference of two is exact to this much.
ROUNDING = 1.5e-6
#: The budgets the figures are read at, as shares of the grid's epochs.
BUDGET_SHARES = (0.10, 0.25, 0.50)
IDENTITY = ("study", "epochs", "batch_size", "sizes", "data_sha256", "seed_rule", "points")


class UsageError(Exception):
    """Bad input: one line on stderr, exit 2."""


# ------------------------------------------------------------------------------------------------
# The table file: JSON lines, a meta line per dataset, a run line per recording session, a row
# per (dataset, seed, point).


def read_lines(path: Path, repair: bool = False) -> list[dict]:
    """The table's entries. A last line cut short by a kill is dropped (and, with `repair`,
    cut off the file, so that appending goes on after the last whole line); any other bad line
    is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # the last line, with no newline: a write cut short
                if repair:
                    with path.open("r+b") as handle:
                        handle.truncate(len(raw) - len(line))
                break
            raise UsageError(f"{path}: line {number} is not JSON; not a search table") from None
    return entries


def append_line(path: Path, entry: dict) -> None:
    """Appends one entry and makes it durable before the next point starts."""
    with path.open("a") as handle:
        handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------------------------------------
# record


def dataset_overrides(dataset: str, mnist_path: Path) -> list[str]:
    """The data of each recorded dataset, as in bench/search_efficiency.py: 2,000 MNIST training
    images, 5,000 validation (carved from the training set), 2,000 test; digits as it ships."""
    if dataset == "mnist":
        train, val = 2000, 5000
        return ["data=mnist", f"data.path={mnist_path.resolve()}", f"data.train_samples={train}",
                f"data.val_fraction={val / (train + val):.6f}", "data.test_samples=2000",
                "data.download=false"]
    if dataset == "digits":
        return ["data=digits"]
    raise UsageError(f"unknown dataset {dataset!r}; valid: mnist, digits")


def searched_specs(cfg) -> dict:
    """The grid's searched hyperparameters, name -> spec, in the config's order."""
    from vggsweep.config import space

    specs = {}
    if space.is_spec(cfg.activation):
        specs["activation"] = space.check_spec("activation", cfg.activation)
    for section, skip in ((cfg.model, "family"), (cfg.optimizer, "name")):
        _, found = space.split({k: v for k, v in space.plain(section).items() if k != skip})
        specs.update(found)
    return specs


def grid_points(cfg) -> list[dict]:
    """Every point of the study's finite space, in a fixed order (the first value of each
    hyperparameter varies slowest)."""
    from vggsweep.config import space

    specs = searched_specs(cfg)
    choices = []
    for name, spec in specs.items():
        values = space.spec_values(spec)
        if values is None:
            raise UsageError(f"{name} is searched over a continuous range: not a grid")
        choices.append(values)
    return [dict(zip(specs, combination)) for combination in itertools.product(*choices)]


def trial_seed(seed: int, index: int) -> int:
    """The seed the table trains point `index` with under table seed `seed`."""
    return 1000 * seed + index


def versions() -> dict:
    from importlib import metadata

    names = ("tensorflow", "keras", "keras-tuner", "numpy", "vggsweep")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"


def train_point(cfg, splits, image_size: int, values: dict, seed: int) -> dict:
    """Trains one point for `budget.epochs` epochs as a trial would; after every epoch, the
    validation accuracy (as Keras measured it for the trial), the test accuracy and the epoch's
    time (the first one includes building and compiling the model)."""
    import keras

    from vggsweep.config import space
    from vggsweep.errors import ModelConfigError, NonFiniteLoss
    from vggsweep.models import training
    from vggsweep.runtime import accelerator

    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation, values)
    batch_size, optimizer_kwargs = accelerator.scaled(cfg.budget.batch_size, optimizer_kwargs,
                                                      cfg.accelerator)
    row = {"val": [], "test": [], "time_s": []}
    clock = [time.perf_counter()]

    class Record(keras.callbacks.Callback):
        """After each epoch: validation as the trial saw it, test for the table only."""

        def on_epoch_end(self, epoch, logs=None):
            row["time_s"].append(round(time.perf_counter() - clock[0], 3))
            row["val"].append(round(float((logs or {})["val_accuracy"]), 6))
            test, _ = training.evaluate(self.model, splits.x_test, splits.y_test, "test")
            row["test"].append(round(test["test_accuracy"], 6))
            clock[0] = time.perf_counter()

    try:
        trained = training.train_one(
            cfg.model.family, model_kwargs, optimizer_kwargs, splits, image_size=image_size,
            epochs=int(cfg.budget.epochs), batch_size=batch_size, seed=seed, patience=None,
            callbacks=[Record()], evaluate_test=False,
            compile_options=accelerator.compile_options(cfg.accelerator))
        row["param_count"] = int(trained.model.count_params())
    except (NonFiniteLoss, ModelConfigError) as error:  # recorded: a search meets it too
        row["failed"] = str(error).splitlines()[0]
    return row


def record(args) -> None:
    from vggsweep import config, data
    from vggsweep.job import checks
    from vggsweep.runtime import accelerator, quiet

    quiet.quiet_libraries()
    path = args.table
    entries = read_lines(path, repair=True)
    metas = {e["meta"]["dataset"]: e["meta"] for e in entries if "meta" in e}
    done = {(e["dataset"], e["seed"], e["index"]) for e in entries if "dataset" in e}
    run_noted = False
    for dataset in args.datasets:
        overrides = ["study=grid64", *dataset_overrides(dataset, args.mnist_path),
                     f"budget.epochs={args.epochs}", "budget.patience=null", "verbose=0"]
        cfg = config.compose(overrides)
        checks.validate(cfg, geometry=False)  # the checks a job makes (job/plan.make)
        splits = data.load(cfg.data)
        image_size = config.effective_image_size(cfg.data, splits.image_shape)
        checks.check_geometry(cfg, image_size)
        points = grid_points(cfg)
        meta = {"dataset": dataset, "study": "grid64", "epochs": args.epochs,
                "batch_size": int(cfg.budget.batch_size), "sizes": splits.sizes(),
                "data_sha256": splits.sha256, "data_source": splits.source,
                "seed_rule": "point i under table seed s trains with seed 1000*s + i",
                "points": len(points), "overrides": overrides[:1] + [
                    o.replace(str(args.mnist_path.resolve()), str(args.mnist_path))
                    for o in overrides[1:]]}
        if dataset in metas:
            differs = [k for k in IDENTITY if metas[dataset].get(k) != meta[k]]
            if differs:
                raise UsageError(f"{path} holds {dataset} recorded with other settings "
                                 f"({', '.join(differs)}); record into another --table")
        else:
            append_line(path, {"meta": meta})
        accelerator.apply(cfg.accelerator)
        splits = accelerator.on_device(splits, cfg.accelerator)
        for seed in args.seeds:
            todo = [i for i in range(len(points)) if (dataset, seed, i) not in done]
            if not todo:
                continue
            if not run_noted:  # who recorded what follows, and how
                append_line(path, {"run": {
                    "command": " ".join(["bench/search_table.py", *sys.argv[1:]]),
                    "started": datetime.datetime.now().isoformat(timespec="seconds"),
                    "versions": versions(), "machine": machine()}})
                run_noted = True
            print(f"{dataset} seed {seed}: {len(todo)} of {len(points)} points to train",
                  flush=True)
            for index in todo:
                started = time.perf_counter()
                row = train_point(cfg, splits, image_size, points[index],
                                  trial_seed(seed, index))
                append_line(path, {"dataset": dataset, "seed": seed, "index": index,
                                   "point": points[index], **row})
                print(f"  {dataset} seed {seed} point {index}: val "
                      f"{' '.join(f'{v:.4f}' for v in row['val'])}, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)


# ------------------------------------------------------------------------------------------------
# replay: the table answers the trials


class TableError(UsageError):
    """The table cannot answer: missing, incomplete or inconsistent."""


class StrategyError(Exception):
    """A strategy misbehaved: it never stops, or asks for what no trial can train."""


class TrialFailed(Exception):
    """The table recorded this point as failed (the loss diverged) at this epoch."""


@dataclass
class Table:
    """One dataset of a recorded table: every point's curves under every complete seed."""

    dataset: str
    epochs: int
    names: tuple
    points: list  # index -> the point's values, in `names` order
    val: dict  # seed -> (points x epochs) validation accuracy, NaN from a failure on
    test: dict  # seed -> (points x epochs) test accuracy
    meta: dict
    incomplete: dict = field(default_factory=dict)  # seed -> points recorded so far

    def __post_init__(self):
        self._index = {values: i for i, values in enumerate(self.points)}

    @property
    def seeds(self) -> list[int]:
        return sorted(self.val)

    @property
    def grid_epochs(self) -> int:
        return len(self.points) * self.epochs

    def index(self, values) -> int:
        """The point a strategy proposed (a mapping holding at least the table's names)."""
        try:
            key = tuple(values[name] for name in self.names)
            return self._index[key]
        except KeyError:
            raise StrategyError(f"proposed {dict(values)}, which is not a point of the table "
                                f"({', '.join(self.names)})") from None

    def choices(self) -> dict[str, list]:
        found = {name: [] for name in self.names}
        for values in self.points:
            for name, value in zip(self.names, values):
                if value not in found[name]:
                    found[name].append(value)
        return found

    def kept(self, seed: int) -> np.ndarray:
        """Each point's validation accuracy as a trial keeps it (its best epoch's)."""
        val = self.val[seed]
        with np.errstate(invalid="ignore"):
            return np.where(np.isnan(val).all(axis=1), -np.inf,
                            np.nan_to_num(val, nan=-np.inf).max(axis=1))

    def kept_test(self, seed: int) -> np.ndarray:
        """Each point's test accuracy at its best validation epoch (the kept weights)."""
        best_epoch = np.nan_to_num(self.val[seed], nan=-np.inf).argmax(axis=1)
        return self.test[seed][np.arange(len(self.points)), best_epoch]


def load_table(path: Path, dataset: str) -> Table:
    """The dataset's complete seeds from a table file. A seed still being recorded is left
    out (and named); a table that cannot be right is refused with one line."""
    if not path.is_file():
        raise TableError(f"{path}: no such table; record one with `record`")
    entries = read_lines(path)
    metas = [e["meta"] for e in entries if "meta" in e and e["meta"].get("dataset") == dataset]
    if not metas:
        held = sorted({e["meta"]["dataset"] for e in entries if "meta" in e})
        raise TableError(f"{path} holds no {dataset} table (it holds: "
                         f"{', '.join(held) or 'nothing'})")
    meta = metas[0]
    epochs, count = int(meta["epochs"]), int(meta["points"])
    rows: dict[int, dict[int, dict]] = {}
    points: dict[int, tuple] = {}
    names = None
    for row in (e for e in entries if e.get("dataset") == dataset and "index" in e):
        where = f"{path}: {dataset} seed {row.get('seed')} point {row.get('index')}"
        seed, index, point = row.get("seed"), row.get("index"), row.get("point")
        if not isinstance(index, int) or not 0 <= index < count or not isinstance(point, dict):
            raise TableError(f"{where}: not a point of the {count}-point grid")
        names = names or tuple(point)
        if tuple(point) != names:
            raise TableError(f"{where}: names {sorted(point)}, other rows {sorted(names)}")
        values = tuple(point[name] for name in names)
        if points.setdefault(index, values) != values:
            raise TableError(f"{where}: point {index} is {point} here, "
                             f"{dict(zip(names, points[index]))} in another seed")
        val, test = row.get("val"), row.get("test")
        if (not isinstance(val, list) or not isinstance(test, list) or len(val) != len(test)
                or (len(val) != epochs and "failed" not in row) or len(val) > epochs
                or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in val + test)):
            raise TableError(f"{where}: needs {epochs} validation and test accuracies in "
                             f"[0, 1] (one per epoch), got {val!r} and {test!r}")
        if index in rows.setdefault(seed, {}):
            raise TableError(f"{where}: recorded twice")
        rows[seed][index] = row
    if len(set(points.values())) != len(points):
        raise TableError(f"{path}: {dataset} holds the same point under two indexes")
    val, test, incomplete = {}, {}, {}
    for seed, found in rows.items():
        if len(found) < count:
            incomplete[seed] = len(found)
            continue
        val[seed] = np.full((count, epochs), np.nan)
        test[seed] = np.full((count, epochs), np.nan)
        for index, row in found.items():
            val[seed][index, :len(row["val"])] = row["val"]
            test[seed][index, :len(row["test"])] = row["test"]
    if not val:
        raise TableError(f"{path}: no {dataset} seed holds all {count} points yet "
                         f"(recorded so far: {incomplete})")
    return Table(dataset, epochs, names, [points[i] for i in range(count)], val, test, meta,
                 incomplete)


class Replay:
    """One repeat's trainer: answers each epoch from the table under one seed, counts the
    epochs spent, and notes when a point has been trained through its last epoch.

    The search ends at `budget` epochs, or as soon as it has trained the table's best point
    through its last epoch: nothing it does after that can change its figures (its regret is 0
    from then on, and a later point cannot displace the selected one), so the rest is not
    replayed."""

    def __init__(self, table: Table, seed: int, budget: int, stall_limit: int = 2000):
        self.table, self.seed, self.budget = table, seed, budget
        self.val = table.val[seed]
        self.kept = table.kept(seed)
        self.spent = 0
        self.finished: list[tuple[int, int]] = []  # (epochs spent then, point index)
        self.found_best = False
        self.stall_limit = stall_limit
        self.stalled = 0  # proposals since the last epoch trained

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget or self.found_best

    def propose(self) -> None:
        """Called for every proposal; a strategy that trains nothing for `stall_limit`
        proposals in a row never stops, which is a bug in it (or in its driver)."""
        self.stalled += 1
        if self.stalled > self.stall_limit:
            raise StrategyError(f"{self.stall_limit} proposals in a row without training an "
                                "epoch: the strategy never stops")

    def epoch(self, index: int, epoch: int) -> float:
        """Trains point `index` for epoch `epoch` (0-based); its validation accuracy."""
        if not 0 <= epoch < self.table.epochs:
            raise StrategyError(f"asked for epoch {epoch + 1} of a point; the table holds "
                                f"{self.table.epochs} epochs per point (record more, or give "
                                "the strategy that many)")
        value = self.val[index, epoch]
        self.spent += 1
        self.stalled = 0
        if np.isnan(value):
            raise TrialFailed(f"the table records point {index} as failed at epoch {epoch + 1}")
        if epoch == self.table.epochs - 1:
            self.finished.append((self.spent, index))
            self.found_best = self.found_best or self.kept[index] == self.kept.max()
        return float(value)


# -- the drivers: each runs one strategy's search as its own tuning loop would, against a Replay


def drive_keras_tuner(oracle, replay: Replay, per_epoch: bool) -> None:
    """A keras-tuner oracle driven as `SweepTuner` drives it in a job (one worker): a trial is
    created, trained epoch by epoch (each epoch reported with `update_trial` when the job
    prunes, and the trial stopped when the oracle answers STOPPED before its last epoch; else
    its kept value reported at the end, as keras-tuner's `Tuner` does), then ended."""
    from keras_tuner.src.engine import trial as trial_module

    status = trial_module.TrialStatus
    while not replay.exhausted:
        replay.propose()
        trial = oracle.create_trial("tuner0")
        if trial.status == status.STOPPED:
            return
        if trial.status == status.IDLE:
            continue
        values = trial.hyperparameters.values
        index = replay.table.index(values)
        first = int(values.get("tuner/initial_epoch", 0))
        last = int(values.get("tuner/epochs", replay.table.epochs))
        reached = []
        try:
            for epoch in range(first, last):
                reached.append(replay.epoch(index, epoch))
                if per_epoch:
                    answer = oracle.update_trial(trial.trial_id, {"val_accuracy": reached[-1]},
                                                 step=epoch)
                    if answer.status == status.STOPPED and epoch + 1 < last:
                        break
            if not per_epoch:
                oracle.update_trial(trial.trial_id, {"val_accuracy": max(reached)}, step=0)
            trial.status = status.COMPLETED
        except TrialFailed as failure:
            trial.status, trial.message = status.FAILED, str(failure)
        oracle.end_trial(trial)


def drive_optuna(study, distributions: dict, replay: Replay, duplicate_limit: int = 20) -> str:
    """An Optuna study driven through ask/tell: every epoch reported (`trial.report`, step =
    epochs trained) and `should_prune` asked, as Optuna's pruning integrations do. A point
    that already completed is not trained again: it is told its earlier value (Optuna's FAQ
    recipe for duplicates); after `duplicate_limit` such proposals in a row the study has
    nothing new to try, and the search ends ("converged")."""
    from optuna.trial import TrialState

    completed: dict[int, float] = {}
    duplicates = 0
    while not replay.exhausted:
        replay.propose()
        trial = study.ask(distributions)
        index = replay.table.index(trial.params)
        if index in completed:
            study.tell(trial, completed[index])
            duplicates += 1
            if duplicates >= duplicate_limit:
                return "converged"
            continue
        duplicates = 0
        reached = []
        try:
            for epoch in range(replay.table.epochs):
                reached.append(replay.epoch(index, epoch))
                trial.report(reached[-1], step=epoch + 1)
                if epoch + 1 < replay.table.epochs and trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            else:
                completed[index] = max(reached)
                study.tell(trial, completed[index])
        except TrialFailed:
            study.tell(trial, state=TrialState.FAIL)
    return "budget"


# -- the strategies

#: The shipped default search (conf/config.yaml: tuner=tpe, with ASHA from epoch 2).
DEFAULT = "vggsweep tpe + ASHA from epoch 2"
#: vggsweep's searches, each built exactly as a job of the grid64 study builds its oracle
#: (`vggsweep_oracle`), with these tuner overrides.
VGGSWEEP = {
    "grid": ["tuner=grid"],
    "random": ["tuner=random", "tuner.pruner=off"],
    "random + ASHA": ["tuner=random", "tuner.pruner=asha", "tuner.pruner_min_trials=1"],
    "quasi_random": ["tuner=quasi_random", "tuner.pruner=off"],
    "quasi_random + ASHA": ["tuner=quasi_random"],
    "quasi_random + median": ["tuner=quasi_random", "tuner.pruner=median",
                              "tuner.pruner_min_trials=3"],
    "bayesian": ["tuner=bayesian", "tuner.pruner=off"],
    "bayesian + ASHA": ["tuner=bayesian", "tuner.pruner=asha", "tuner.pruner_min_trials=1"],
    "hyperband": ["tuner=hyperband", "tuner.hyperband_iterations=100"],
    "tpe": ["tuner=tpe", "tuner.pruner=off"],
    "tpe + ASHA": ["tuner=tpe", "tuner.pruner_warmup_epochs=1"],  # rungs at epochs 1, 3
    "tpe + median": ["tuner=tpe", "tuner.pruner=median", "tuner.pruner_min_trials=3",
                     "tuner.pruner_warmup_epochs=1"],
    # The shipped default (conf/tuner/tpe.yaml): ASHA's first rung at epoch 2, from trial 1 on.
    "tpe + ASHA from epoch 2": ["tuner=tpe"],
}


@functools.lru_cache(maxsize=None)
def _study_config(overrides: tuple):
    from vggsweep import config

    return config.compose(["study=grid64", "data=digits", *overrides, "verbose=0"])


def vggsweep_oracle(overrides: list[str], epochs: int, seed: int):
    """The oracle a job of the grid64 study builds with these overrides (its pruner and warm
    start included), with the job's search space declared on it; and whether the job reports
    every epoch to it (it does when it prunes). The one function that knows how a job builds
    its search (`vggsweep.job.runner.Job.tuner`)."""
    from vggsweep.search import oracles, trialspace, tuners

    cfg = _study_config((*overrides, f"budget.epochs={epochs}", "budget.max_trials=10000"))
    trial_space, enqueue = trialspace.of_job(cfg, input_shape=(28, 28, 1), num_classes=10,
                                             image_size=28)
    oracle = oracles.make_oracle(cfg.tuner, cfg.budget, seed,
                                 pruner=tuners.make_pruner(cfg.tuner), enqueue=enqueue)
    hp = oracle.get_space()
    trial_space.declare(hp)
    oracle.update_space(hp)
    return oracle, str(cfg.tuner.pruner) != "off"


def reference_point() -> dict:
    """The grid64 study's reference point: its first enqueued point, S3's own model."""
    from vggsweep.config import space

    return dict(space.plain(_study_config(()).tuner.enqueue)[0])


def in_memory(oracle):
    """The oracle's state kept in memory: a replayed search writes no files (the search is
    the same; only keras-tuner's persistence is left out)."""
    for name in ("save", "save_trial", "_save_trial"):  # vggsweep's names and keras-tuner's
        setattr(oracle, name, lambda *args, **kwargs: None)
    oracle.verbose = 0  # as a job's tuner sets it
    return oracle


def run_vggsweep(overrides):
    def run(replay: Replay, seed: int) -> str:
        oracle, per_epoch = vggsweep_oracle(overrides, replay.table.epochs, seed)
        drive_keras_tuner(in_memory(oracle), replay, per_epoch)
        return "done"
    return run


#: keras-tuner's own oracles, as a keras-tuner user builds them: no warm start, no pruning.
KERAS_TUNER = ("random", "bayesian", "hyperband", "grid")


def run_keras_tuner(kind: str):
    def run(replay: Replay, seed: int) -> str:
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for name, values in replay.table.choices().items():
            hp.Choice(name, values)
        common = {"objective": kt.Objective("val_accuracy", "max"), "seed": seed,
                  "hyperparameters": hp, "max_consecutive_failed_trials": 10_000}
        if kind == "hyperband":
            oracle = kt.oracles.HyperbandOracle(max_epochs=replay.table.epochs, factor=3,
                                                hyperband_iterations=100, **common)
        else:
            oracle_class = {"random": kt.oracles.RandomSearchOracle,
                            "bayesian": kt.oracles.BayesianOptimizationOracle,
                            "grid": kt.oracles.GridSearchOracle}[kind]
            oracle = oracle_class(max_trials=10_000, **common)
        drive_keras_tuner(in_memory(oracle), replay, per_epoch=False)
        return "done"
    return run


OPTUNA_SAMPLERS = ("TPE", "random", "QMC", "CMA-ES")
OPTUNA_PRUNERS = ("none", "median", "successive halving", "hyperband")
#: Optuna searches also run from the reference first (`study.enqueue_trial`), as vggsweep's do.
OPTUNA_FROM_REFERENCE = (("TPE", "median"), ("TPE", "successive halving"),
                         ("QMC", "successive halving"), ("random", "successive halving"))


def optuna_distributions(table: Table, numeric: bool) -> dict:
    """The table's space for Optuna: each hyperparameter's choices as a categorical (what
    `suggest_categorical` gives a user); with `numeric`, evenly spaced integers as an
    IntDistribution instead (QMC and CMA-ES sample numbers only)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    found = {}
    for name, values in table.choices().items():
        ordered = sorted(values) if all(type(v) is int for v in values) else None
        steps = {b - a for a, b in zip(ordered, ordered[1:])} if ordered else set()
        if numeric and ordered and len(steps) <= 1:
            found[name] = IntDistribution(ordered[0], ordered[-1], step=steps.pop() if steps
                                          else 1)
        else:
            found[name] = CategoricalDistribution(values)
    return found


def run_optuna(sampler_name: str, pruner_name: str, reference: bool = False):
    def run(replay: Replay, seed: int) -> str:
        import optuna

        samplers = optuna.samplers
        sampler = {"TPE": lambda: samplers.TPESampler(seed=seed),
                   "random": lambda: samplers.RandomSampler(seed=seed),
                   "QMC": lambda: samplers.QMCSampler(scramble=True, seed=seed,
                                                      warn_independent_sampling=False),
                   "CMA-ES": lambda: samplers.CmaEsSampler(seed=seed,
                                                           warn_independent_sampling=False),
                   }[sampler_name]()
        pruner = {"none": optuna.pruners.NopPruner,
                  "median": optuna.pruners.MedianPruner,
                  "successive halving": optuna.pruners.SuccessiveHalvingPruner,
                  "hyperband": lambda: optuna.pruners.HyperbandPruner(
                      max_resource=replay.table.epochs)}[pruner_name]()
        # A fixed study name: Optuna's Hyperband pruner assigns brackets by a hash of it.
        study = optuna.create_study(study_name=f"replay-{seed}", direction="maximize",
                                    sampler=sampler, pruner=pruner)
        numeric = sampler_name in ("QMC", "CMA-ES")
        if reference:  # the first trial: S3's own model, as vggsweep's searches start
            point = reference_point()
            study.enqueue_trial({name: point[name] for name in replay.table.names})
        return drive_optuna(study, optuna_distributions(replay.table, numeric), replay)
    return run


@dataclass
class Strategy:
    name: str
    family: str  # vggsweep | keras-tuner | optuna
    run: object  # (replay, tuner seed) -> how the search ended
    seeded: bool = True  # False: the tuner seed changes nothing (a grid walks in its order)
    needs_reference: bool = False  # starts from the grid64 study's reference point
    slow: bool = False  # left out unless named: minutes per search (keras-tuner's Gaussian
    # process: 50 L-BFGS restarts per trial, ~5 s a trial on a 2-core CPU)


def strategies() -> list[Strategy]:
    found = [Strategy(f"vggsweep {name}", "vggsweep", run_vggsweep(overrides),
                      seeded=name != "grid", slow=name.startswith("bayesian"),
                      needs_reference=True)
             for name, overrides in VGGSWEEP.items()]
    found += [Strategy(f"keras-tuner {kind}", "keras-tuner", run_keras_tuner(kind),
                       seeded=kind != "grid", slow=kind == "bayesian")
              for kind in KERAS_TUNER]
    found += [Strategy(f"optuna {sampler}" + ("" if pruner == "none" else f" + {pruner}"),
                       "optuna", run_optuna(sampler, pruner))
              for sampler in OPTUNA_SAMPLERS for pruner in OPTUNA_PRUNERS
              if sampler != "CMA-ES" or (pruner == "none" and _has("cmaes"))]
    found += [Strategy(f"optuna {sampler} + {pruner}, reference first", "optuna",
                       run_optuna(sampler, pruner, reference=True), needs_reference=True)
              for sampler, pruner in OPTUNA_FROM_REFERENCE]
    return found


def _has(module: str) -> bool:
    """Whether an optional package is installed (Optuna's CMA-ES sampler needs `cmaes`)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- the figures of one repeat, and of a strategy over its repeats


def measure(table: Table, seed: int, replay: Replay, tolerance: float,
            shares=BUDGET_SHARES) -> dict:
    """One repeat's figures (`anytime`) from the points its replay trained to their end."""
    kept, kept_test = table.kept(seed), table.kept_test(seed)
    finished = [(spent, kept[index], kept_test[index]) for spent, index in replay.finished]
    figures = anytime(finished, kept.max(), table.grid_epochs, tolerance, shares)
    return {**figures, "spent": replay.spent}


def anytime(finished: list, best: float, horizon: int, tolerance: float,
            shares=BUDGET_SHARES) -> dict:
    """The regret after every epoch up to `horizon` (`best`, the table's best validation
    accuracy, minus that of the best point trained through its last epoch so far; inf before
    the first), the epochs until the regret was within `tolerance`, and the test accuracy of
    the point a user would select (the best on validation; ties: the first) at each share of
    `horizon`. `finished`: (epochs spent when it finished, its validation, its test) in order."""
    regret = np.full(horizon + 1, np.inf)
    chosen = np.full(horizon + 1, np.nan)
    best_so_far, its_test, at = -np.inf, np.nan, 0
    for spent, val, test in finished:
        if spent > horizon:
            break
        regret[at:spent], chosen[at:spent] = best - best_so_far, its_test
        if val > best_so_far:
            best_so_far, its_test = val, test
        at = spent
    regret[at:], chosen[at:] = best - best_so_far, its_test
    within = np.nonzero(regret <= tolerance + ROUNDING)[0]
    tests = {share: None if np.isnan(chosen[int(share * horizon)])
             else float(chosen[int(share * horizon)]) for share in shares}
    return {"regret": regret, "reach": int(within[0]) if len(within) else None,
            "tests": tests}


def run_strategy(args: tuple) -> dict:
    """Every repeat (table seed x tuner seed) of one strategy on one dataset."""
    path, dataset, strategy_name, tuner_seeds, tolerance = args
    import warnings

    warnings.filterwarnings("ignore")
    _quiet()
    table = load_table(Path(path), dataset)
    strategy = next(s for s in strategies() if s.name == strategy_name)
    started = time.perf_counter()
    repeats, ends = [], {}
    for seed in table.seeds:
        measured = None
        for tuner_seed in tuner_seeds:
            if measured is None or strategy.seeded:  # an unseeded search is run once
                replay = Replay(table, seed, table.grid_epochs)
                end = strategy.run(replay, tuner_seed)
                measured = measure(table, seed, replay, tolerance)
            ends[end] = ends.get(end, 0) + 1
            repeats.append(measured)
    return {"strategy": strategy.name, "family": strategy.family, "dataset": dataset,
            "repeats": repeats, "ends": ends, "wall_s": time.perf_counter() - started}


def _quiet() -> None:
    import logging

    from vggsweep.runtime import quiet

    quiet.quiet_libraries()
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    logging.getLogger("keras_tuner").setLevel(logging.ERROR)


def quantiles(values, qs=(0.25, 0.5, 0.75)) -> list[float]:
    """Empirical quartiles (no interpolation: an infinite value, "not yet", stays one)."""
    return [float(v) for v in np.quantile(np.asarray(values, dtype=float), qs,
                                          method="inverted_cdf")]


def summarize(result: dict, table: Table, shares=BUDGET_SHARES) -> dict:
    """A strategy's figures over its repeats."""
    repeats = result["repeats"]
    regret = np.stack([r["regret"] for r in repeats])
    horizon = table.grid_epochs
    reach = [math.inf if r["reach"] is None else r["reach"] for r in repeats]
    at = {share: quantiles(regret[:, int(share * horizon)]) for share in shares}
    tests = {share: [r["tests"][share] for r in repeats if r["tests"][share] is not None]
             for share in shares}
    return {
        "strategy": result["strategy"], "family": result["family"], "repeats": len(repeats),
        "curve": np.quantile(regret, (0.25, 0.5, 0.75), axis=0, method="inverted_cdf"),
        "regret": at, "reach": quantiles(reach),
        "reached": sum(not math.isinf(r) for r in reach) / len(reach),
        "test": {share: (quantiles(v) if v else None, len(v)) for share, v in tests.items()},
        "ends": result["ends"], "seconds": result["wall_s"] / len(repeats),
        "mean_regret_25": float(np.mean(np.minimum(regret[:, int(0.25 * horizon)], 1.0))),
    }


def rank_key(summary: dict) -> tuple:
    """Best first: the lowest median regret at 25% of the grid's epochs; ties (within the
    recording's rounding): the cheaper, first in epochs to reach the table's best (median),
    then in the search's own seconds per search."""
    median = summary["regret"][0.25][1]
    bucket = math.inf if math.isinf(median) else round(median / (2 * ROUNDING))
    return (bucket, summary["reach"][1], summary["seconds"])


def spread(values, digits: int = 4) -> str:
    if values is None:
        return "n/a"
    q1, median, q3 = values
    def shown(value: float) -> str:
        return "never" if math.isinf(value) else f"{value:.{digits}f}"

    return f"{shown(median)} [{shown(q1)}\u2013{shown(q3)}]"


def print_table(table: Table, summaries: list[dict], args, reference: dict | None) -> None:
    shares = BUDGET_SHARES
    sizes = table.meta["sizes"]
    tuner_seeds = summaries[0]["repeats"] // len(table.seeds)
    print(f"\n{table.dataset}: S3's {len(table.points)}-point grid, {sizes['train_size']} "
          f"training / {sizes['val_size']} validation / {sizes['test_size']} test images, "
          f"{table.epochs} epochs per point ({table.grid_epochs} for the whole grid); table "
          f"seeds {', '.join(map(str, table.seeds))} x tuner seeds 1-{tuner_seeds} = "
          f"{len(table.seeds) * tuner_seeds} repeats per strategy; tolerance "
          f"{args.tolerance}. median [quartiles] over the repeats; regret = the table's best "
          "validation accuracy minus the best of the points trained to their last epoch so far "
          "(validation selects; test is only reported)")
    if table.incomplete:
        print(f"(seeds still being recorded, left out: {table.incomplete})")
    if reference is not None and tuple(reference.get(n) for n in table.names) in table.points:
        index = table.index(reference)
        gaps = [table.kept(seed).max() - table.kept(seed)[index] for seed in table.seeds]
        print(f"the reference point alone (S3's own model, {table.epochs} epochs): regret "
              + ", ".join(f"{g:.4f}" for g in gaps) + " (per table seed)")
    headers = (["strategy"] + [f"regret at {s:.0%}" for s in shares]
               + ["epochs to the best", "reached"] + [f"test at {s:.0%}" for s in shares]
               + ["s/search"])
    rows = []
    for summary in summaries:
        tests = []
        for share in shares:
            values, count = summary["test"][share]
            text = spread(values)
            tests.append(text if count == summary["repeats"] else
                         f"{text} ({count}/{summary['repeats']})")
        reach = spread(summary["reach"], 0)
        rows.append([summary["strategy"]] + [spread(summary["regret"][s]) for s in shares]
                    + [reach, f"{summary['reached']:.0%}"] + tests
                    + [f"{summary['seconds']:.2f}"])
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|---" + "|---:" * (len(headers) - 1) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(r[i])) for r in [headers, *rows]) + 2 for i in range(len(headers))]
    for row in [headers, *rows]:
        print("".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
                      for i, (cell, w) in enumerate(zip(row, widths))))


def plot(tables: dict, summaries: dict, path: Path, tolerance: float) -> None:
    """The anytime curves (median regret and its quartile band against epochs spent) of the
    best strategy of each family, of the default search, quasi-random + ASHA and the grid, one
    panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 4.6), squeeze=False)
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        ranked = sorted(summaries[dataset], key=rank_key)
        shown = []
        for family in ("vggsweep", "optuna", "keras-tuner"):
            shown += [s for s in ranked if s["family"] == family][:2 if family == "vggsweep"
                                                                    else 1]
        for extra in (DEFAULT, "vggsweep quasi_random + ASHA", "vggsweep grid"):
            shown += [s for s in ranked if s["strategy"] == extra and s not in shown]
        epochs = np.arange(table.grid_epochs + 1)
        for summary in shown:
            q1, median, q3 = (np.where(np.isinf(c), np.nan, c) for c in summary["curve"])
            line, = ax.plot(epochs, median, label=summary["strategy"], lw=1.6)
            ax.fill_between(epochs, q1, q3, color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(tolerance, color="grey", lw=0.8, ls="--")
        for share in BUDGET_SHARES:
            ax.axvline(share * table.grid_epochs, color="grey", lw=0.6, ls=":")
        tops = [c[np.isfinite(c)].max() for s in shown for c in s["curve"][2:]
                if np.isfinite(c).any()]
        ax.set_ylim(0, 1.05 * max(tops + [2 * tolerance]))
        ax.set_xlim(0, table.grid_epochs // 2)
        sizes = table.meta["sizes"]
        ax.set_title(f"{dataset}: {len(table.points)}-point grid, {table.epochs} epochs each, "
                     f"{sizes['val_size']} validation images", fontsize=10)
        ax.set_xlabel("epochs spent (dotted: 10%, 25%, 50% of the grid's; dashed: the tolerance)")
        ax.set_ylabel("regret in validation accuracy (median, quartiles)")
        ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def replay(args) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    tables = {dataset: load_table(args.table, dataset) for dataset in args.datasets}
    chosen = [s for s in strategies() if any(f in s.name for f in args.strategies)
              ] if args.strategies else [s for s in strategies() if not s.slow]
    if not chosen:
        raise UsageError(f"no strategy matches {args.strategies}; strategies: "
                         + ", ".join(s.name for s in strategies()))
    tasks = []
    reference = reference_point()
    for dataset, table in tables.items():
        # Tuner seeds from 1 (keras-tuner replaces a seed of 0 by a random one).
        seeds = list(range(1, math.ceil(args.repeats / len(table.seeds)) + 1))
        holds = tuple(reference.get(name) for name in table.names) in table.points
        skipped = [s.name for s in chosen if s.needs_reference and not holds]
        if skipped:
            print(f"{dataset}: not a table of the grid64 study's space (its reference point is "
                  f"not in it): left out {', '.join(skipped)}")
        tasks += [(str(args.table), dataset, s.name, seeds, args.tolerance) for s in chosen
                  if s.name not in skipped]
    started = time.perf_counter()
    results = []
    if args.jobs == 1:
        for task in tasks:
            results.append(run_strategy(task))
            print(f"  {task[1]} {task[2]}: {results[-1]['wall_s']:.0f} s", flush=True)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            for result in pool.map(run_strategy, tasks):
                results.append(result)
                print(f"  {result['dataset']} {result['strategy']}: {result['wall_s']:.0f} s",
                      flush=True)
    summaries = {dataset: [] for dataset in tables}
    for result in results:
        summaries[result["dataset"]].append(summarize(result, tables[result["dataset"]]))
    for dataset, table in tables.items():
        ranked = sorted(summaries[dataset], key=rank_key)
        print_table(table, ranked, args, reference)
        best = ranked[0]
        print(f"best at 25% of the grid's epochs: {best['strategy']}")
        default = next((r for r in ranked if r["strategy"] == DEFAULT), None)
        optuna = next((r for r in ranked if r["family"] == "optuna"), None)
        if default is not None and optuna is not None:
            print(f"regret at 25%: the default ({DEFAULT}) {spread(default['regret'][0.25])}, "
                  f"the best Optuna configuration ({optuna['strategy']}) "
                  f"{spread(optuna['regret'][0.25])}")
    print(f"\n{len(tasks)} strategy x dataset replays in {time.perf_counter() - started:.0f} s "
          f"({args.jobs} processes)")
    if args.plot:
        plot(tables, summaries, args.plot, args.tolerance)


# ------------------------------------------------------------------------------------------------
# confirm: live searches (real training, through the job runner) on a seed the table does not
# hold, measured as the replay measures them


def live_search(name: str, overrides: list[str], home: Path, seed: int) -> list[dict]:
    """Runs one search as a job of the grid64 study; its trials in the order they ended."""
    from vggsweep import config
    from vggsweep.job import task
    from vggsweep.tracking import results, store

    experiment = f"confirm-{seed}-{abs(hash(name)) % 100_000}"
    uri = f"sqlite:///{home}/mlflow.db"
    cfg = config.compose(["study=grid64", *overrides, f"seed={seed}", f"experiment={experiment}",
                          f"tracking.uri={uri}", f"tuner.directory={home}/tuner_state",
                          "tuner.fresh=true", "verbose=0", "tracking.log_model=false"])
    result = task.run_job(cfg)
    if result.status != "completed":
        raise StrategyError(f"{name}: the live job {result.status}: {result.message}")
    client, experiment_id = store.open_existing(uri, experiment)
    runs = client.search_runs([experiment_id], f"tags.`{store.ROLE}` = 'trial' and "
                              "attributes.status = 'FINISHED'",
                              order_by=["attributes.end_time ASC"], max_results=5000)
    return [{"epochs": int(r.data.metrics["epochs_run"]),
             "val": r.data.metrics[results.KEPT_VAL_ACCURACY],
             "test": r.data.metrics["test_accuracy"],
             "pruned": results.trial_status(r) == "PRUNED",
             "reference": r.data.tags.get(store.REFERENCE) == "true"} for r in runs]


def confirm(args) -> None:
    import tempfile

    from vggsweep.runtime import quiet

    quiet.quiet_libraries()
    common = [*dataset_overrides(args.dataset, args.mnist_path), f"budget.epochs={args.epochs}",
              "budget.patience=null", "budget.max_trials=64"]
    home = Path(tempfile.mkdtemp(prefix="vggsweep-confirm-"))
    names = ["grid", *args.strategies]
    unknown = [n for n in names if n not in VGGSWEEP]
    if unknown:
        raise UsageError(f"unknown strategies {unknown}; vggsweep's: {', '.join(VGGSWEEP)}")
    found = {}
    for name in names:
        started = time.perf_counter()
        found[name] = live_search(name, [*common, *VGGSWEEP[name]], home, args.seed)
        print(f"  {name}: {len(found[name])} trials, "
              f"{sum(t['epochs'] for t in found[name])} epochs, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    horizon = 64 * args.epochs
    best = max(t["val"] for t in found["grid"])
    print(f"\nlive searches on {args.dataset}, seed {args.seed} (not in the table), "
          f"{args.epochs} epochs per point; target: the live grid's best validation accuracy "
          f"{best:.4f}; tolerance {args.tolerance}")
    print(f"{'search':<28}" + "".join(f"{f'regret at {s:.0%}':>16}" for s in BUDGET_SHARES)
          + f"{'epochs to best':>16}" + "".join(f"{f'test at {s:.0%}':>14}"
                                               for s in BUDGET_SHARES))
    for name, trials in found.items():
        spent, finished = 0, []
        for trial in trials:
            spent += trial["epochs"]
            if not trial["pruned"] and trial["epochs"] >= args.epochs:
                finished.append((spent, trial["val"], trial["test"]))
        figures = anytime(finished, best, horizon, args.tolerance)
        cells = [f"{figures['regret'][int(s * horizon)]:.4f}" for s in BUDGET_SHARES]
        reach = "never" if figures["reach"] is None else str(figures["reach"])
        tests = ["n/a" if figures["tests"][s] is None else f"{figures['tests'][s]:.4f}"
                 for s in BUDGET_SHARES]
        print(f"{name:<28}" + "".join(f"{c:>16}" for c in cells) + f"{reach:>16}"
              + "".join(f"{t:>14}" for t in tests))


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="train the grid's points into the table "
                              "(resumable: points already recorded are skipped)")
    rec.add_argument("--table", type=Path, default=TABLE)
    rec.add_argument("--datasets", nargs="+", default=["mnist", "digits"],
                     choices=["mnist", "digits"])
    rec.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    rec.add_argument("--epochs", type=int, default=4)
    rec.add_argument("--mnist-path", type=Path, default=MNIST_PATH)
    rep = commands.add_parser("replay", help="replay search strategies against the table")
    rep.add_argument("--table", type=Path, default=TABLE)
    rep.add_argument("--datasets", nargs="+", default=["mnist", "digits"])
    rep.add_argument("--repeats", type=int, default=200,
                     help="at least this many repeats per strategy: table seeds x tuner seeds")
    rep.add_argument("--tolerance", type=float, default=TOLERANCE)
    rep.add_argument("--strategies", nargs="*", default=None,
                     help="only the strategies whose names contain one of these")
    rep.add_argument("--jobs", type=int, default=2, help="processes")
    rep.add_argument("--markdown", action="store_true", help="the tables in Markdown")
    rep.add_argument("--plot", type=Path, default=None, help="the anytime plot (PNG)")
    con = commands.add_parser("confirm", help="live searches (real training) on a seed the "
                              "table does not hold, measured as the replay measures them")
    con.add_argument("--dataset", default="digits", choices=["mnist", "digits"])
    con.add_argument("--seed", type=int, default=3)
    con.add_argument("--epochs", type=int, default=4)
    con.add_argument("--strategies", nargs="+", default=["tpe + ASHA from epoch 2"])
    con.add_argument("--tolerance", type=float, default=TOLERANCE)
    con.add_argument("--mnist-path", type=Path, default=MNIST_PATH)
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            if args.epochs < 1 or any(s < 0 for s in args.seeds):
                raise UsageError("--epochs must be >= 1 and --seeds >= 0")
            record(args)
        elif args.command == "confirm":
            confirm(args)
        else:
            if args.repeats < 1 or args.jobs < 1 or not 0 <= args.tolerance < 1:
                raise UsageError("--repeats and --jobs must be >= 1, --tolerance in [0, 1)")
            replay(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the product's bad-input errors (config, data) are one line too
        from vggsweep.errors import ConfigError, one_line

        if not isinstance(error, ConfigError):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
