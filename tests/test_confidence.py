"""Confidence: retraining the top configurations with several seeds."""

import math

import mlflow
import pytest

from vggsweep import confidence as confidence_command
from vggsweep import config
from vggsweep.job import task
from vggsweep.outputs import confidence


def test_mean_ci95_and_welch():
    mean, half = confidence.mean_ci95([0.97, 0.98, 0.99])
    assert mean == pytest.approx(0.98)
    assert half == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-3)  # t(0.975, 2) = 4.303
    assert math.isnan(confidence.mean_ci95([0.5])[1])
    assert confidence.welch_p_value([0.90, 0.91, 0.90], [0.99, 0.98, 0.99]) < 0.01
    assert confidence.welch_p_value([0.95, 0.97, 0.96], [0.96, 0.95, 0.97]) > 0.5


def test_top_trials_are_retrained_with_seeds_and_recorded(isolated, capsys):
    cfg = config.compose(["model=mlp", "activation=relu", "data=digits", "budget=smoke",
                          "data.train_samples=150", "data.test_samples=60",
                          "model.hidden_units={choice:[16,32]}", "model.hidden_layers=1",
                          "experiment=conf", "verbose=0"])
    assert task.run_job(cfg).completed == 2
    uri = f"sqlite:///{isolated / 'mlflow.db'}"
    summary = confidence.run_confidence(uri, "conf", top=2, seeds=2)
    assert len(summary) == 2
    assert summary[0]["val_accuracy"] >= summary[1]["val_accuracy"]
    assert all(len(item["test_accuracies"]) == 2 for item in summary)
    assert "p_vs_runner_up" in summary[0]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("conf")
    retrained = client.search_runs([experiment.experiment_id],
                                   "tags.`vggsweep.role` = 'confidence'")
    assert len(retrained) == 4 and all(r.info.status == "FINISHED" for r in retrained)
    assert {r.data.params["hidden_units"] for r in retrained} <= {"16", "32"}
    names = {r.info.run_name for r in retrained}  # the trial's name, as the UI shows it
    assert len(names) == 4 and all(n.startswith("mlp-relu/trial-") and "/confidence-seed-" in n
                                   for n in names), names
    assert {r.data.tags["vggsweep.job"] for r in retrained} == {"mlp-relu"}  # in its job's group
    source = client.get_run(summary[0]["run_id"])
    assert source.data.metrics["confidence_seeds"] == 2
    assert 0 < source.data.metrics["test_accuracy_mean"] <= 1
    text = confidence.format_summary(summary)
    assert "best vs runner-up" in text and "±" in text and "mlp-relu/trial-" in text
    assert confidence_command.main(["--experiment", "nope", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: unknown experiment")
