"""Interrupts never land in the middle of a store write: a SIGTERM or Ctrl-C that arrives while
MLflow writes is held until the write is done, and every run still ends KILLED."""

from __future__ import annotations

import signal
import time

import pytest

from vggsweep.runtime import interrupts
from vggsweep.tracking import store, writer


@pytest.fixture
def installed():
    """vggsweep's handlers, from Python's defaults: a test worker may inherit SIGINT ignored or
    blocked (`handled` leaves an ignored SIGINT alone, as a background job wants)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with interrupts.handled():
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


def _signal_self(signum=signal.SIGTERM):
    # raise_signal delivers to this thread at once (os.kill may land on another thread of the
    # process, later); the handler then runs at the next bytecode of the main thread.
    signal.raise_signal(signum)
    time.sleep(0.05)


def test_a_signal_outside_a_deferred_section_is_raised_at_once(installed):
    with pytest.raises(KeyboardInterrupt):
        _signal_self()
        pytest.fail("the signal should have been raised before this line")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_a_deferred_section_waits_for_its_end(installed, signum):
    done = []
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)}"):
        with interrupts.deferred():
            _signal_self(signum)
            done.append("rest of the section")
            with interrupts.deferred():  # nested: still held
                done.append("nested section")
            done.append("after the nested section")
    assert done == ["rest of the section", "nested section", "after the nested section"]
    # nothing stays pending: a later section runs to its end undisturbed
    with interrupts.deferred():
        time.sleep(0.01)


def test_a_second_signal_while_one_is_held_is_raised_at_once(installed):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            _signal_self()
            done.append("held")
            _signal_self()
            done.append("never")
    assert done == ["held"]


def test_the_previous_handlers_come_back_and_an_inner_section_changes_nothing():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.handled():
        assert signal.getsignal(signal.SIGTERM) is not before[0]
        inside = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        with interrupts.handled():
            pass
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == inside
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_guarded_client_finishes_the_call_a_signal_arrives_in(installed):
    calls = []

    class Inner:
        def write(self, value):
            _signal_self()
            calls.append(value)
            return value * 2

    guarded = store.GuardedClient(Inner())
    with pytest.raises(KeyboardInterrupt):
        guarded.write(21)
    assert calls == [21]


def test_a_guarded_client_retries_a_locked_database():
    attempts = []

    class Inner:
        def write(self):
            attempts.append(1)
            if len(attempts) < 3:
                raise RuntimeError("(sqlite3.OperationalError) database is locked")
            return "written"

    assert store.GuardedClient(Inner()).write() == "written"
    assert len(attempts) == 3


def test_sigterm_while_a_query_is_open_still_ends_every_run_killed(tmp_path, installed):
    """The signal lands after a SELECT ran and before its rows are read (the connection holds a
    read lock). Raised there, it left that lock held: every later write, those that end the runs
    too, failed with "database is locked" after minutes of retries, and both runs stayed
    RUNNING. Held until the call returns, the write completes, the interrupt follows, and the
    trial and the job both end KILLED."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = writer.JobTracker(uri, "interrupts", "key", {})
    armed = []

    def interrupt_once(conn, cursor, statement, *_):
        if armed and statement.lstrip().upper().startswith("SELECT"):
            armed.pop()
            _signal_self()

    event.listen(Engine, "after_cursor_execute", interrupt_once)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            with tracker.parent_run("job"):
                with tracker.child_run("trial", "trial-0", {"units": 8}, {}) as run:
                    armed.append(True)
                    tracker.log_epoch(run, {"val_accuracy": 0.5}, 0)
                    pytest.fail("the interrupt should have been raised after the epoch's write")
    finally:
        event.remove(Engine, "after_cursor_execute", interrupt_once)
    assert not armed, "no query ran after the trigger was armed"
    assert time.monotonic() - started < 30

    client = store.client(uri)
    trial = client.get_run(run.info.run_id)
    job = client.get_run(tracker.parent_id)
    assert (trial.info.status, job.info.status) == ("KILLED", "KILLED")
    assert trial.data.metrics["val_accuracy"] == 0.5  # the write the signal arrived in is kept
    assert job.data.tags[store.FAILURE_REASON] == "interrupted"


def test_a_run_ends_with_its_status_even_when_its_reason_cannot_be_written(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = writer.JobTracker(uri, "interrupts", "key", {})
    with tracker.parent_run("job"):
        def refuse(*args, **kwargs):
            raise RuntimeError("the tag write failed")

        monkeypatch.setattr(tracker.client.inner, "log_batch", refuse)  # tags go in batches
        with pytest.raises(RuntimeError, match="the tag write failed"):
            with tracker.child_run("trial", "trial-0", {}, {}) as run:
                raise ValueError("the trial failed")
        monkeypatch.undo()
    assert store.client(uri).get_run(run.info.run_id).info.status == "FAILED"


def test_an_interrupt_a_library_swallowed_is_raised_again_where_the_work_goes_on(installed):
    """TensorFlow's imports catch everything (bare `except:`): a SLURM warning or a Ctrl-C that
    lands there must still stop the job at the next trial or epoch, with its reason."""
    try:
        _signal_self(signal.SIGTERM)
    except BaseException:  # noqa: BLE001 - what a library's bare `except:` does
        pass
    with pytest.raises(interrupts.Interrupted, match=f"signal {int(signal.SIGTERM)}"):
        interrupts.check()
    with pytest.raises(interrupts.Interrupted):  # until it ends the process: again and again
        interrupts.check()


def test_a_held_interrupt_that_was_swallowed_is_raised_again_too(installed):
    try:
        with interrupts.deferred():
            _signal_self(signal.SIGINT)
    except BaseException:  # noqa: BLE001 - swallowed after the section raised it
        pass
    with pytest.raises(interrupts.Interrupted, match=f"signal {int(signal.SIGINT)}"):
        interrupts.check()


def test_once_the_handlers_are_removed_nothing_is_raised_again():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(interrupts.Interrupted), interrupts.handled():
            _signal_self(signal.SIGTERM)
        interrupts.check()  # handled: a later search in this process runs undisturbed
        with interrupts.handled():
            interrupts.check()
    finally:
        signal.signal(signal.SIGINT, previous)
