"""A small recorded sweep in a temporary SQLite MLflow store, written the way the sweep writes it.

No training: runs are created with `MlflowClient` following the data contract of
`vggsweep.leaderboard` (one parent run per Hydra job, one nested child run per keras-tuner trial).

Sweep A (`multirun/2025-01-01/12-00-00`), two jobs:
    cnn / relu   trials 00 (0.97, the reference), 01 (0.98), 02 FAILED (NaN loss), 03 KILLED then
                 re-run (0.975), plus one `vggsweep.role=confidence` run the leaderboard must skip;
    mlp / tanh   trials 00 (0.95), 01 (0.96), 02 (0.93), validated on other images.
Sweep B (`multirun/2025-01-02/09-30-00`), one job with a searched activation:
    vgg16 / searched   trials 00 sigmoid (0.11), 01 relu (0.99).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vggsweep.tracking.store import trial_run_name

SWEEP_A = "multirun/2025-01-01/12-00-00"
SWEEP_B = "multirun/2025-01-02/09-30-00"
EXPERIMENT = "results-test"

CNN_PARAMS = {
    "filters": 32, "kernel_size": 3, "pool_size": 2, "conv_blocks": 2, "dense_layers": 1,
    "dense_units": 128, "dropout": 0.25, "batch_norm": True, "learning_rate": 1e-3,
    "temperature": 1.0, "augment": False,
}
MLP_PARAMS = {
    "dense_layers": 1, "dense_units": 500, "dropout": 0.0, "batch_norm": False,
    "learning_rate": 1e-3, "l2": 1e-5, "temperature": 1.0,
}
VGG_PARAMS = {
    "filters": 16, "kernel_size": 3, "pool_size": 2, "conv_blocks": 3, "dense_layers": 2,
    "dense_units": 256, "dropout": 0.5, "batch_norm": True, "learning_rate": 1e-4,
    "temperature": 0.6, "augment": True,
}


@dataclass
class RecordedSweep:
    """Where the fake sweep lives and the ids of what it recorded."""

    tracking_uri: str
    experiment: str
    root: Path
    sweep_a_dir: Path
    sweep_b_dir: Path
    parents: dict[str, str] = field(default_factory=dict)  # "cnn", "mlp", "vgg16" -> run id
    trials: dict[str, str] = field(default_factory=dict)  # "cnn/01" -> run id ("cnn/03-killed")


def _metric_batch(values: dict[str, list[float]], final: dict[str, float], start_ms: int):
    """Per-epoch metrics at step = epoch, then the final metrics one step after the last epoch."""
    from mlflow.entities import Metric

    metrics = [
        Metric(key, value, start_ms + epoch, epoch)
        for key, series in values.items()
        for epoch, value in enumerate(series)
    ]
    last_step = max((len(s) for s in values.values()), default=0)
    metrics += [Metric(key, value, start_ms + 1000, last_step) for key, value in final.items()]
    return metrics


def _trial(client, experiment_id, parent, tags, params, status, val_history=(), final=None,
           reason=None, start_ms=0, role="trial"):
    """Creates one finished/failed/killed trial run nested under `parent`."""
    from mlflow.entities import Param

    job = parent.data.tags["vggsweep.job"]
    all_tags = {
        "mlflow.parentRunId": parent.info.run_id, "vggsweep.role": role,
        "vggsweep.job_key": parent.data.tags["vggsweep.job_key"], "vggsweep.job": job, **tags,
    }
    if reason:
        all_tags["vggsweep.failure_reason"] = reason
    name = trial_run_name(tags["vggsweep.trial_id"], job)  # as the writer names its runs
    run = client.create_run(experiment_id, start_time=start_ms, tags=all_tags, run_name=name)
    logged = {**params, "seed": 0, "epochs": 3, "batch_size": 64,
              "optimizer_name": "adam", "optimizer_learning_rate": params.get("learning_rate")}
    histories = {}
    if val_history:
        histories = {
            "val_accuracy": list(val_history),
            "accuracy": [v + 0.01 for v in val_history],
            "loss": [1.0 / (epoch + 1) for epoch in range(len(val_history))],
            "val_loss": [1.2 / (epoch + 1) for epoch in range(len(val_history))],
        }
    client.log_batch(
        run.info.run_id,
        metrics=_metric_batch(histories, final or {}, start_ms),
        params=[Param(k, str(v)) for k, v in logged.items()],
    )
    client.set_terminated(run.info.run_id, status, end_time=start_ms + 5000)
    return run.info.run_id


def _final(val, test, seconds, params_count, history):
    return {
        "val_accuracy": val, "test_accuracy": test, "test_loss": 0.1, "test_nll": 0.1,
        "test_ece": 0.02, "train_time_s": seconds, "epochs_run": len(history),
        "best_epoch": history.index(max(history)), "param_count": params_count,
        "images_per_s": 1000.0,
    }


def _parent(client, experiment_id, sweep_dir, model, family, activation, key):
    tags = {
        "vggsweep.role": "job", "model": model, "family": family, "activation": activation,
        "vggsweep.job_key": key, "vggsweep.sweep_dir": str(sweep_dir),
        "vggsweep.overrides": f"model={model} activation={activation}",
        "data": "mnist", "tuner": "random", "seed": "0", "vggsweep.job": f"{model}-{activation}",
    }
    return client.create_run(experiment_id, start_time=1, tags=tags,
                             run_name=f"{model}-{activation}")


def _record_cnn(client, eid, recorded: RecordedSweep) -> None:
    parent = _parent(client, eid, recorded.sweep_a_dir, "cnn", "cnn", "relu", "key-cnn-relu")
    tags = {"model": "cnn", "family": "cnn", "activation": "relu"}
    p = dict(CNN_PARAMS, activation="relu")
    history = [0.90, 0.95, 0.97]
    recorded.trials["cnn/00"] = _trial(client, eid, parent, {**tags, "vggsweep.trial_id": "00"}, p,
        "FINISHED", history, _final(0.97, 0.965, 12.5, 93322, history), start_ms=10_000)
    history = [0.93, 0.98, 0.97]
    recorded.trials["cnn/01"] = _trial(client, eid, parent, {**tags, "vggsweep.trial_id": "01"},
        dict(p, filters=64, kernel_size=5, dropout=0.5), "FINISHED", history,
        _final(0.98, 0.976, 30.0, 250000, history), start_ms=20_000)
    recorded.trials["cnn/02"] = _trial(client, eid, parent, {**tags, "vggsweep.trial_id": "02"},
        dict(p, learning_rate=0.5), "FAILED", reason="NaN loss at epoch 1", start_ms=30_000)
    recorded.trials["cnn/03-killed"] = _trial(
        client, eid, parent, {**tags, "vggsweep.trial_id": "03"}, dict(p, filters=16), "KILLED",
        [0.5], start_ms=40_000)
    history = [0.96, 0.975, 0.97]
    recorded.trials["cnn/03"] = _trial(client, eid, parent, {**tags, "vggsweep.trial_id": "03"},
        dict(p, filters=16), "FINISHED", history, _final(0.975, 0.97, 8.0, 40000, history),
        start_ms=50_000)
    _trial(client, eid, parent, {**tags, "vggsweep.trial_id": "01"}, p, "FINISHED", history,
           _final(0.999, 0.999, 1.0, 1, history), start_ms=60_000, role="confidence")
    client.log_metric(parent.info.run_id, "best_val_accuracy", 0.98)
    client.set_terminated(parent.info.run_id, "FINISHED")
    recorded.parents["cnn"] = parent.info.run_id


def _record_mlp(client, eid, recorded: RecordedSweep) -> None:
    parent = _parent(client, eid, recorded.sweep_a_dir, "mlp", "mlp", "tanh", "key-mlp-tanh")
    tags = {"model": "mlp", "family": "mlp", "activation": "tanh"}
    results = [(0.95, 500, 3.0), (0.96, 800, 4.0), (0.93, 100, 2.0)]  # val, dense_units, seconds
    for index, (val, units, seconds) in enumerate(results):
        history = [val - 0.02, val - 0.01, val]
        trial_id = f"{index:02d}"
        recorded.trials[f"mlp/{trial_id}"] = _trial(
            client, eid, parent, {**tags, "vggsweep.trial_id": trial_id},
            dict(MLP_PARAMS, activation="tanh", dense_units=units, l2=10.0 ** -(index + 4)),
            "FINISHED", history,
            _final(val, val - 0.002, seconds, 784 * units + units * 10, history),
            start_ms=70_000 + index * 10_000,
        )
    client.set_terminated(parent.info.run_id, "FINISHED")
    recorded.parents["mlp"] = parent.info.run_id


def _record_vgg(client, eid, recorded: RecordedSweep) -> None:
    parent = _parent(client, eid, recorded.sweep_b_dir, "vgg16", "vgg", "searched", "key-vgg16")
    tags = {"model": "vgg16", "family": "vgg", "activation": "searched"}
    results = [("sigmoid", 0.11, 90.0), ("relu", 0.99, 120.0)]  # activation, val, seconds
    for index, (activation, val, seconds) in enumerate(results):
        history = [val - 0.001, val, val]
        trial_id = f"{index:02d}"
        recorded.trials[f"vgg16/{trial_id}"] = _trial(
            client, eid, parent, {**tags, "vggsweep.trial_id": trial_id},
            dict(VGG_PARAMS, activation=activation), "FINISHED", history,
            _final(val, val - 0.005, seconds, 1_000_000, history),
            start_ms=200_000 + index * 10_000,
        )
    client.set_terminated(parent.info.run_id, "FINISHED")
    recorded.parents["vgg16"] = parent.info.run_id


def record_sweep(root: Path) -> RecordedSweep:
    """Writes the fake sweep described in the module docstring under `root` and returns its ids."""
    from mlflow import MlflowClient

    root = Path(root)
    recorded = RecordedSweep(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", experiment=EXPERIMENT, root=root,
        sweep_a_dir=root / SWEEP_A, sweep_b_dir=root / SWEEP_B,
    )
    recorded.sweep_a_dir.mkdir(parents=True)
    recorded.sweep_b_dir.mkdir(parents=True)
    client = MlflowClient(recorded.tracking_uri)
    eid = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    client.create_experiment("other-experiment", artifact_location=(root / "artifacts").as_uri())
    _record_cnn(client, eid, recorded)
    _record_mlp(client, eid, recorded)
    _record_vgg(client, eid, recorded)
    _record_agreement(client, recorded)
    return recorded


#: Which of 200 validation images each finished trial got wrong (as many as its accuracy says).
WRONG = {"vgg16/01": [0, 1], "cnn/01": [2, 3, 4, 5], "cnn/03": [0, 2, 3, 4, 5],
         "cnn/00": list(range(10, 16)), "vgg16/00": list(range(178))}
VAL_LABELS = [index % 10 for index in range(200)]


def _record_agreement(client, recorded: RecordedSweep) -> None:
    """The tags of which validation images each trial got right (the margins): the cnn and vgg16
    trials on the same 200 images, the mlp trials on other images; cnn/00 is its job's reference
    trial (the space's default point)."""
    import numpy as np

    from vggsweep.tracking import agreement

    for name, wrong in WRONG.items():
        correct = np.ones(200, dtype=bool)
        correct[wrong] = False
        for key, value in agreement.encode(correct, VAL_LABELS).items():
            client.set_tag(recorded.trials[name], key, value)
    for name in ("mlp/00", "mlp/01", "mlp/02"):
        for key, value in agreement.encode(np.ones(200, dtype=bool), VAL_LABELS[::-1]).items():
            client.set_tag(recorded.trials[name], key, value)
    client.set_tag(recorded.trials["cnn/00"], "vggsweep.reference", "true")


if __name__ == "__main__":  # a quick manual look: python tests/results_fixtures.py
    import tempfile

    started = time.time()
    print(record_sweep(Path(tempfile.mkdtemp())), f"{time.time() - started:.1f} s")
