"""One numbering and readable, unique names: trials numbered from 1 everywhere (progress lines,
run names `<job>/trial-<n>`, the summary, the report), job labels that say what the job is, and
no two runs of an experiment with the same name."""

from __future__ import annotations

import io

import pytest

from vggsweep import config
from vggsweep.job import progress, task
from vggsweep.job.runner import JobInfo
from vggsweep.tracking import store as vstore
from vggsweep.tracking.writer import JobTracker


@pytest.mark.parametrize(("trial_id", "number", "name"), [
    ("0", 1, "cnn-relu/trial-1"), ("09", 10, "cnn-relu/trial-10"), ("x", "x", "cnn-relu/trial-x"),
])
def test_trials_are_numbered_from_one(trial_id, number, name):
    assert vstore.trial_number(trial_id) == number
    assert vstore.trial_run_name(trial_id, "cnn-relu") == name


def test_progress_lines_use_the_same_numbers_and_count_pruned_trials_as_pruned():
    out = io.StringIO()
    report = progress.Progress(2, 4, "cnn-relu", 3, stream=out)
    report.trial_begin("0", {"filters": 32})
    report.trial_end("0", 0.9, 0.88, 1.5)
    report.trial_end("1", 0.5, 0.48, 0.5, note="pruned after epoch 1")
    report.job_end(1, 1, 0, "best cnn-relu/trial-1: val_accuracy 0.9000")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[job 2/4 cnn-relu] trial 1/3 started: filters=32"
    assert lines[1].startswith("[job 2/4 cnn-relu] trial 1/3 done in 1.5s")
    assert lines[2].startswith("[job 2/4 cnn-relu] trial 2/3 done in 0.5s (pruned after epoch 1)")
    assert lines[3].endswith(": 2 trials: 1 finished, 1 pruned, 0 failed; best "
                             "cnn-relu/trial-1: val_accuracy 0.9000")


@pytest.mark.parametrize(("overrides", "swept", "label"), [
    (["model=vgg11"], [], "vgg11"),  # the activation is searched: it varies by trial
    (["model=cnn", "activation=relu"], [], "cnn-relu"),
    (["model=cnn", "activation=relu"], ["model=cnn", "activation=relu"], "cnn-relu"),
    (["model=cnn", "activation=tanh", "data=digits"], ["activation=tanh", "data=digits"],
     "cnn-tanh data=digits"),
])
def test_a_job_is_labelled_by_what_it_is(overrides, swept, label):
    cfg = config.compose(overrides)
    option = overrides[0].split("=")[1]  # Hydra's choice of the model group
    assert task._name(cfg, JobInfo(model_name=option, swept=swept)) == label


def test_run_names_stay_unique_in_an_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = vstore.client(uri)
    experiment_id = vstore.prepare(uri, "names")
    first = JobTracker(uri, "names", "key-a", {vstore.JOB_NAME: "cnn-relu"})
    with first.parent_run("cnn-relu"):
        for _ in range(2):  # the same trial run again (an interrupted trial): one name each
            with first.trial_run("0", {}, {vstore.JOB_NAME: "cnn-relu"}):
                pass
    # the same job keeps its name; another job with the same label gets a numbered one
    assert vstore.job_run_name(client, experiment_id, "cnn-relu", "key-a") == "cnn-relu"
    assert vstore.job_run_name(client, experiment_id, "cnn-relu", "key-b") == "cnn-relu (2)"
    names = sorted(run.info.run_name for run in client.search_runs([experiment_id]))
    assert names[:2] == ["cnn-relu", "cnn-relu/trial-1"]
    assert names[2].startswith("cnn-relu/trial-1 (superseded ") and len(names) == 3
