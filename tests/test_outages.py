"""A sweep survives its infrastructure: the tracking store going away (for a while, for good) and
a full disk lose nothing and never stall training.

In-process: the outbox (in order, exactly once, kept on disk across a give-up), a retried
`create_run` that finds its run, the bound and its one line, MLflow's HTTP settings, which errors
are a trial's and which the infrastructure's, a full store injected at SQLite's writes (one line,
the cut trial trained again by the rerun), atomic outputs, and a rerun of a finished job that
logs nothing new. Subprocesses: a real `mlflow server` behind a proxy that stops answering
mid-trial (to the client, a stopped server: connections refused) and comes back or not, and a
sweep on a small tmpfs that fills up (where a mount namespace can be made). The issue's exact
figures (60 s outages, the server itself killed and restarted) are the slow tests.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import keras_tuner as kt
import outage_fixtures as fixtures
import pytest
import requests
from helpers import SMALL_DATA, client, compose, experiment_runs

from vggsweep.errors import DiskFull, NonFiniteLoss, TrackingUnavailable
from vggsweep.job import task
from vggsweep.tracking import faults, outbox, store

TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def fresh_health(monkeypatch):
    """Each test's store starts healthy (the health of a URI lives as long as the process), and
    MLflow's HTTP settings come back as they were after it."""
    for name, value in faults.http_settings(faults.DEFAULT_OUTAGE_S).items():
        monkeypatch.setenv(name, os.environ.get(name, value))
    monkeypatch.setattr(faults, "_http_configured", faults._http_configured)
    faults._health.clear()
    yield
    faults._health.clear()


def _sqlite(tmp_path: Path, name: str = "mlflow.db") -> str:
    return f"sqlite:///{tmp_path / name}"


class Flaky:
    """An MlflowClient whose writes are refused while `down` (a stopped server), and whose
    `lost` next write is made but its answer lost (the client sees an error)."""

    def __init__(self, inner):
        self.inner, self.down, self.lost, self.calls = inner, False, 0, 0

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.down:
                raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")
            result = attribute(*args, **kwargs)
            if self.lost:
                self.lost -= 1
                raise requests.exceptions.ConnectionError("Connection reset by peer")
            return result

        return call


def _epoch(run_id: str, step: int) -> dict:
    return {"op": "batch", "run": run_id, "metrics": [["m", float(step), 1000 + step, step]],
            "tags": [], "params": []}


def _history(uri: str, run_id: str, key: str = "m") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


# --------------------------------------------------------------------------------------------
# the outbox, the bound, the HTTP settings (in-process)


def test_the_outbox_writes_in_order_exactly_once_while_the_store_comes_and_goes(
        tmp_path, fresh_health):
    uri = _sqlite(tmp_path)
    faults.configure(uri, 60)
    mlflow_client = client(uri)
    run_id = mlflow_client.create_run(mlflow_client.create_experiment("x")).info.run_id
    flaky = Flaky(mlflow_client)
    box = outbox.Outbox(flaky, uri, tmp_path / "outbox" / "job.jsonl")
    puts = []
    for step in range(20):
        if step == 5:
            flaky.down = True  # the store goes away for 1.5 s ...
            threading.Timer(1.5, lambda: setattr(flaky, "down", False)).start()
        if step == 15:
            flaky.lost = 1  # ... and later one answer is lost: the write is tried again
        started = time.perf_counter()
        box.put(_epoch(run_id, step))
        puts.append(time.perf_counter() - started)
        time.sleep(0.1)
    assert box.close() == 0
    assert max(puts) < 0.05, f"a put waited for the store: {max(puts):.3f}s"
    assert _history(uri, run_id) == [(step, float(step)) for step in range(20)]
    assert not (tmp_path / "outbox" / "job.jsonl").exists(), "an empty outbox file was left"


def test_records_left_at_a_give_up_are_written_first_by_the_next_process(tmp_path, fresh_health,
                                                                          capsys):
    uri = _sqlite(tmp_path)
    state = faults.configure(uri, 1.0, label="[job 1/1 x]")
    mlflow_client = client(uri)
    run_id = mlflow_client.create_run(mlflow_client.create_experiment("x")).info.run_id
    flaky = Flaky(mlflow_client)
    flaky.down = True
    path = tmp_path / "outbox" / "job.jsonl"
    box = outbox.Outbox(flaky, uri, path)
    for step in range(3):
        box.put(_epoch(run_id, step))
    with pytest.raises(TrackingUnavailable, match=r"unreachable since .*tracking.outage_s=1"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            box.check()
            time.sleep(0.05)
    assert box.close() == 3
    assert len(path.read_text().splitlines()) == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if "unreachable" in line]
    assert len(lines) == 1 and lines[0].startswith("[job 1/1 x] tracking store"), lines

    state.succeeded()  # a new process, the store back: the records are written first, once
    box = outbox.Outbox(mlflow_client, uri, path)
    box.put(_epoch(run_id, 3))
    assert box.close() == 0
    assert _history(uri, run_id) == [(step, float(step)) for step in range(4)]
    assert not path.exists()


def test_a_create_run_whose_answer_was_lost_is_found_not_made_twice(tmp_path, fresh_health):
    uri = _sqlite(tmp_path)
    mlflow_client = client(uri)
    experiment_id = mlflow_client.create_experiment("x")
    flaky = Flaky(mlflow_client)
    flaky.lost = 1  # the store creates the run, the answer never arrives
    guarded = store.GuardedClient(flaky, uri)
    run = guarded.create_run(experiment_id, run_name="trial-0")
    runs = mlflow_client.search_runs([experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].data.tags[store.ATTEMPT]


def test_a_store_away_past_the_bound_is_one_error_saying_since_when(tmp_path, fresh_health,
                                                                     capsys):
    uri = f"http://127.0.0.1:{fixtures.free_port()}"  # nothing listens: refused at once
    faults.configure(uri, 2.0)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as raised:
        store.client(uri).search_experiments()
    assert time.monotonic() - started < 6
    assert f"tracking server {uri} unreachable since" in str(raised.value)
    assert "connection refused" in str(raised.value)
    waiting = [line for line in capsys.readouterr().err.splitlines() if "waiting up to" in line]
    assert len(waiting) == 1, waiting
    # the next call of this process (the next job) gives up at its first failure
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable):
        store.client(uri).search_experiments()
    assert time.monotonic() - started < 1


def test_mlflow_http_settings_follow_the_bound(fresh_health, monkeypatch):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    for name in faults.http_settings(60):
        monkeypatch.delenv(name, raising=False)
    assert faults.http_settings(60)["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
    assert faults.http_settings(3600)["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"
    faults.configure("http://127.0.0.1:1", 60)
    # MLflow reads these on every request: one attempt (we retry, never repeating a POST
    # behind our back) and a timeout that leaves room for several tries within the bound
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 15


@pytest.mark.parametrize(("error", "kind"), [
    (OSError(28, "No space left on device"), DiskFull),
    (RuntimeError("(sqlite3.OperationalError) database or disk is full"), DiskFull),
    (requests.exceptions.ConnectionError("refused"), TrackingUnavailable),
    (NonFiniteLoss("loss became nan at epoch 1"), kt.errors.FailedTrialError),
    (ValueError("a bug in the trial's training"), kt.errors.FailedTrialError),
])
def test_an_infrastructure_error_is_not_the_trials(error, kind, tmp_path):
    from vggsweep.search import tuning

    classified = tuning.SweepTuner._classified(SimpleNamespace(project_dir=str(tmp_path)), error)
    assert isinstance(classified, kind)
    if kind is DiskFull:
        assert "free at least" in str(classified)
    if isinstance(error, ValueError):
        assert "ValueError: a bug" in str(classified)


def test_outputs_on_a_full_disk_leave_the_old_files_whole(tmp_path, monkeypatch):
    import pandas as pd

    from vggsweep.outputs import leaderboard
    from vggsweep.outputs.plots import common
    from vggsweep.runtime import files

    table = pd.DataFrame({"rank": [1], "val_accuracy": [0.9]})
    csv = leaderboard.write_table(table, tmp_path / "leaderboard.csv")
    report = files.atomic_write(tmp_path / "report.html", "<p>old</p>")  # as page writes it
    fig = common.figure(2, 2)
    png = common.save(fig, tmp_path / "plot.png")
    before = {path: path.read_bytes() for path in (csv, report, png)}

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for write in (lambda: leaderboard.write_table(table.assign(rank=2), csv),
                  lambda: files.atomic_write(report, "<p>new</p>"),
                  lambda: common.save(common.figure(3, 3), png)):
        with pytest.raises(DiskFull, match=r"disk full: cannot write .* free at least"):
            write()
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv", "plot.png",
                                                         "report.html"]


def test_a_worker_stopped_by_the_infrastructure_stops_its_job_leaving_its_trial_ongoing():
    from vggsweep.errors import EXIT_INFRASTRUCTURE, InfrastructureError
    from vggsweep.search import distributed

    ended = []
    chief = SimpleNamespace(workers={"worker0": SimpleNamespace(poll=lambda: EXIT_INFRASTRUCTURE)},
                            failed=[], restarts={}, oracle=SimpleNamespace(end_trial=ended.append))
    with pytest.raises(InfrastructureError, match="worker worker0 stopped"):
        distributed._supervise(chief, job=None, envs={}, report=None)
    assert chief.restarts == {} and ended == [], "restarted, or its trial ended FAILED"


# --------------------------------------------------------------------------------------------
# jobs in-process: a full store, a rerun of a finished job


@pytest.fixture
def full_store():
    """While `state["full"]`, SQLite refuses every write as a full disk does; with
    `state["after_first_trial"]`, that starts at the first metric written after a trial's run
    ended FINISHED (mid-trial: the next trial's first epoch)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    state = {"full": False, "after_first_trial": False, "armed": False}

    def refuse(conn, cursor, statement, parameters, *_):
        sql = statement.lstrip().upper()
        if state["armed"] and sql.startswith("INSERT INTO METRICS"):
            state["full"], state["armed"] = True, False
        if state["full"] and sql.startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        if state["after_first_trial"] and sql.startswith("UPDATE RUNS SET STATUS") and \
                "FINISHED" in str(parameters):
            state["armed"], state["after_first_trial"] = True, False

    event.listen(Engine, "before_cursor_execute", refuse)
    yield state
    event.remove(Engine, "before_cursor_execute", refuse)


def test_a_full_store_stops_the_job_in_one_line_and_the_rerun_finishes_it(
        home, full_store, fresh_health, capsys):
    uri = _sqlite(home)
    experiment = "full"
    cfg = compose(home, uri, experiment, "budget.max_trials=3", "budget.epochs=2",
                  "tuner.pruner=off", *SMALL_DATA)
    full_store["after_first_trial"] = True
    result = task.task(cfg)
    output = capsys.readouterr()
    assert result.status == "failed"
    assert full_store["full"], "the store never filled up"
    lines = [line for line in output.err.splitlines() if "disk full" in line]
    assert len(lines) == 1, output.err
    assert f"stopped: disk full: cannot write {home / 'mlflow.db'}" in lines[0]
    assert "free at least" in lines[0]
    assert "Traceback" not in output.err + output.out
    kept = list(home.glob("tuner_state/*/outbox/job.jsonl"))
    assert kept and kept[0].read_text().strip(), "the runs' ends were not kept for the rerun"

    full_store["full"] = False  # space is back: the rerun ends the cut trial's run with its
    result = task.task(cfg)  # cause, trains that trial again and finishes the job
    assert result.status == "completed", result.message
    assert result.completed == 3 and result.failed == 0
    runs = [r for r in experiment_runs(uri, experiment) if r.data.tags.get(store.ROLE) == "trial"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("disk full" in r.data.tags[store.FAILURE_REASON] for r in killed)
    finished_ids = sorted(r.data.tags[store.TRIAL_ID] for r in runs
                          if r.info.status == "FINISHED")
    assert finished_ids == ["0", "1", "2"]
    assert [r.data.tags[store.TRIAL_ID] for r in killed] == ["1"]  # cut short, trained again
    assert client(uri).get_metric_history(killed[0].info.run_id, "val_accuracy"), \
        "the epochs recorded before the disk filled up were lost"
    assert not list(home.glob("tuner_state/*/outbox/*.jsonl"))


def test_a_rerun_of_a_finished_job_adds_no_run_and_no_logged_model(finished, store):
    from vggsweep.job import task as job_task

    experiment = finished["experiment"]
    mlflow_client = client(store)
    experiment_id = mlflow_client.get_experiment_by_name(experiment).experiment_id
    parent = finished["result"].parent_run_id

    def snapshot():
        runs = experiment_runs(store, experiment)
        models = mlflow_client.search_logged_models([experiment_id])
        history = {key: len(mlflow_client.get_metric_history(parent, key))
                   for key in ("trials_completed", "job_time_s")}
        return sorted((r.info.run_id, r.info.status) for r in runs), len(models), history

    before = snapshot()
    assert before[1] == 1
    home = Path(finished["cfg"].tuner.directory).parent
    patch = pytest.MonkeyPatch()
    patch.chdir(home)
    patch.setenv("VGGSWEEP_HOME", str(home))
    try:
        result = job_task.run_job(finished["cfg"])
    finally:
        patch.undo()
    assert result.status == "completed" and result.completed == 3
    assert snapshot() == before


# --------------------------------------------------------------------------------------------
# subprocesses: a tracking server that goes away, a disk that fills up

SWEEP = ["model=mlp", "activation=relu", "data=digits", "budget=smoke", "budget.epochs=4",
         "tuner.pruner=off"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` (SQLite) for the module; tests reach it through a proxy."""
    instance = fixtures.MlflowServer(tmp_path_factory.mktemp("server"))
    instance.start()
    yield instance
    instance.stop()


def _server_runs(url: str, experiment: str) -> list:
    return experiment_runs(url, experiment)


def _trials(runs: list) -> list:
    return [r for r in runs if r.data.tags.get(store.ROLE) == "trial"]


def _log(lines: list):
    def on_line(line, elapsed):
        lines.append((elapsed, line.rstrip("\n")))
    return on_line


@pytest.mark.subprocess
def test_a_server_down_mid_trial_loses_nothing_and_costs_no_training_time(server, tmp_path):
    proxy = fixtures.Proxy(server.port)
    outage_s = 15.0
    events = {"last_epochs": []}

    def on_line(line, elapsed):
        if "epoch 2/" in line and "down" not in events:
            events["down"] = elapsed
            proxy.down()

            def up():
                events["up"] = time.monotonic() - started
                proxy.up()

            threading.Timer(outage_s, up).start()
        if "epoch 4/4" in line:
            events["last_epochs"].append(elapsed)

    started = time.monotonic()
    result = fixtures.sweep(tmp_path, [*SWEEP, f"tracking.uri={proxy.url}",
                                       "tracking.outage_s=120", "experiment=outage"],
                            on_line=on_line)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "down" in events, result.stdout[-3000:]
    # The trial went on training while the server was away (its last epoch ended before the
    # server came back); the sweep said so once, and once that it was back.
    assert events["last_epochs"][0] < events["up"], events
    assert len([line for line in result.stderr.splitlines()
                if "unreachable since" in line and "training continues" in line]) == 1
    assert "answers again" in result.stderr
    assert "Traceback" not in result.stderr

    runs = _server_runs(server.url, "outage")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3, "a run was lost or doubled"
    for run in _trials(runs):
        history = client(server.url).get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [0, 1, 2, 3], "epochs lost or doubled"
        # Waiting for the server would have made the trial's time at least the outage's.
        assert run.data.metrics["train_time_s"] < outage_s, "the outage was counted as training"


@pytest.mark.subprocess
def test_a_server_gone_for_good_ends_the_sweep_in_the_bound_and_the_rerun_trains_the_lost_trial(
        server, tmp_path):
    proxy = fixtures.Proxy(server.port)
    args = [*SWEEP, f"tracking.uri={proxy.url}", "tracking.outage_s=10", "experiment=gone"]
    events = {}

    def on_line(line, elapsed):
        if "epoch 2/" in line and "down" not in events:
            events["down"] = elapsed
            proxy.down()

    first = fixtures.sweep(tmp_path, [*args, "-m"], on_line=on_line)
    assert first.returncode == 1, first.stderr[-3000:]
    assert first.seconds - events["down"] < 10 + 30, "the give-up took longer than the bound"
    stopped = [line for line in first.stderr.splitlines() if "stopped:" in line]
    assert len(stopped) == 1, first.stderr
    assert f"tracking server {proxy.url} unreachable since" in stopped[0]
    assert "tracking.outage_s=10" in stopped[0] and "kept in" in stopped[0]
    assert "Traceback" not in first.stderr
    kept = list(tmp_path.glob("tuner_state/*/outbox/job.jsonl"))
    assert kept and kept[0].read_text().strip(), "the unsaved records were not kept"

    proxy.up()
    second = fixtures.sweep(tmp_path, [*args, "-m"])
    assert second.returncode == 0, second.stderr[-3000:]
    runs = _trials(_server_runs(server.url, "gone"))
    by_trial = {}
    for run in runs:
        by_trial.setdefault(run.data.tags[store.TRIAL_ID], []).append(run)
    assert sorted(by_trial) == ["0", "1"]
    cut = by_trial["0"]  # the trial under way when the server went away: trained again
    assert sorted(r.info.status for r in cut) == ["FINISHED", "KILLED"]
    killed = next(r for r in cut if r.info.status == "KILLED")
    assert "unreachable" in killed.data.tags[store.FAILURE_REASON]
    assert client(server.url).get_metric_history(killed.info.run_id, "val_accuracy"), \
        "the records kept during the outage were not written"
    assert [r.info.status for r in by_trial["1"]] == ["FINISHED"]
    assert not list(tmp_path.glob("tuner_state/*/outbox/*.jsonl"))

    # A rerun of the finished sweep adds no run and no logged model.
    experiment_id = client(server.url).get_experiment_by_name("gone").experiment_id
    before = (len(_server_runs(server.url, "gone")),
              len(client(server.url).search_logged_models([experiment_id])))
    third = fixtures.sweep(tmp_path, [*args, "-m"])
    assert third.returncode == 0, third.stderr[-3000:]
    assert (len(_server_runs(server.url, "gone")),
            len(client(server.url).search_logged_models([experiment_id]))) == before
    assert before[1] == 1


@pytest.mark.subprocess
@pytest.mark.skipif(not fixtures.can_mount_tmpfs(),
                    reason="no mount namespace here (unshare); the full store is injected at "
                    "SQLite's writes in test_a_full_store_stops_the_job_in_one_line...")
def test_a_disk_full_mid_sweep_says_so_once_truncates_nothing_and_the_rerun_finishes(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    args = ["-m", "model=mlp", "activation=relu,tanh", *SWEEP[2:], "budget.epochs=3",
            "experiment=disk"]
    script = (f"mount -t tmpfs -o size=128m tmpfs {mount} && exec {sys.executable} "
              f"{TESTS / 'full_disk_sweep.py'} {mount} 'epoch 2/' 2 -- " + " ".join(args))
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=TESTS,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    first, second = outcome["first"], outcome["second"]
    assert outcome["filled"] > 0
    assert first["returncode"] != 0
    lines = [line for line in first["stderr"].splitlines() if "disk full" in line]
    assert len(lines) == 1, first["stderr"]
    assert f"cannot write {mount}" in lines[0] and "free at least" in lines[0]
    assert "Traceback" not in first["stderr"] + first["stdout"]
    assert outcome["broken"] == [], "a file was truncated or left half-written"
    assert not [r for r in outcome["after_first"]["runs"] if r["status"] == "RUNNING"]
    assert second["returncode"] == 0, second["stderr"][-3000:]
    trials = [r for r in outcome["after_second"]["runs"] if r["role"] == "trial"]
    finished = sorted((r["name"], r["status"]) for r in trials if r["status"] == "FINISHED")
    assert len(finished) == 4  # 2 jobs x 2 trials
    assert all("disk full" in r["reason"] for r in trials if r["status"] == "KILLED")
    assert outcome["broken_after"] == []
    assert outcome["after_second"]["logged_models"] == 2


# --------------------------------------------------------------------------------------------
# The issue's figures: the server itself killed mid-trial (SIGKILL of its process group) during
# the sweep of the issue, for good with tracking.outage_s=60, or restarted after 60 s.

ISSUE_SWEEP = ["-m", "model=cnn,mlp", "activation=relu", "data=digits", "budget=demo"]


def _kill_at_second_epoch(instance, events: dict, restart_after_s: float | None = None):
    def on_line(line, elapsed):
        if "epoch 2/" in line and "down" not in events:
            events["down"] = elapsed
            instance.stop()
            if restart_after_s is not None:
                def restart():
                    time.sleep(restart_after_s)
                    events["restart_s"] = instance.start()
                threading.Thread(target=restart, daemon=True).start()
    return on_line


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_server_killed_for_good_ends_the_sweep_within_3_minutes_then_the_rerun_finishes(
        tmp_path):
    instance = fixtures.MlflowServer(tmp_path / "server")
    instance.start()
    try:
        args = [*ISSUE_SWEEP, f"tracking.uri={instance.url}", "tracking.outage_s=60",
                "experiment=issue-gone"]
        events = {}
        first = fixtures.sweep(tmp_path, args, on_line=_kill_at_second_epoch(instance, events))
        give_up_s = first.seconds - events["down"]
        print(f"give-up after the kill: {give_up_s:.1f} s (tracking.outage_s=60)")
        assert first.returncode == 1, first.stderr[-3000:]
        assert give_up_s < 180
        assert len([line for line in first.stderr.splitlines() if "stopped:" in line]) == 1
        assert f"tracking server {instance.url} unreachable" in first.stderr
        assert "Traceback" not in first.stderr

        instance.start()
        second = fixtures.sweep(tmp_path, args)
        assert second.returncode == 0, second.stderr[-3000:]
        trials = _trials(_server_runs(instance.url, "issue-gone"))
        assert not [r for r in trials if r.info.status not in ("FINISHED", "KILLED")]
        finished = {(r.data.tags["model"], r.data.tags[store.TRIAL_ID]) for r in trials
                    if r.info.status == "FINISHED"}
        killed = [(r.data.tags["model"], r.data.tags[store.TRIAL_ID]) for r in trials
                  if r.info.status == "KILLED"]
        assert len(finished) == 4 and killed and set(killed) <= finished
    finally:
        instance.stop()


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_server_down_60_s_mid_trial_costs_no_trial_time(tmp_path):
    instance = fixtures.MlflowServer(tmp_path / "server")
    instance.start()
    try:
        base = fixtures.sweep(tmp_path, [*ISSUE_SWEEP, f"tracking.uri={instance.url}",
                                         "experiment=issue-base"])
        assert base.returncode == 0, base.stderr[-3000:]
        events = {}
        result = fixtures.sweep(tmp_path, [*ISSUE_SWEEP, f"tracking.uri={instance.url}",
                                           "experiment=issue-down"],
                                on_line=_kill_at_second_epoch(instance, events, 60.0))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "answers again" in result.stderr and "Traceback" not in result.stderr

        def times(experiment):
            return {(r.data.tags["model"], r.data.tags[store.TRIAL_ID]):
                    r.data.metrics["train_time_s"]
                    for r in _trials(_server_runs(instance.url, experiment))}

        without, down = times("issue-base"), times("issue-down")
        print(f"down {60 + events.get('restart_s', 0):.0f} s; train_time_s without -> with "
              "the outage: " + ", ".join(f"{k[0]}/{k[1]} {without[k]:.1f} -> {down[k]:.1f}"
                                         for k in sorted(down)))
        assert sorted(without) == sorted(down)
        # 2x, and 1 s for the timer noise of a 2-second trial on a loaded machine
        assert all(down[key] <= 2 * without[key] + 1.0 for key in down), (without, down)
    finally:
        instance.stop()
