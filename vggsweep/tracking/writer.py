"""The tracking boundary: the only module that writes to MLflow during a sweep.

One parent run per Hydra job, one nested child run per keras-tuner trial, one run per confidence
retraining. `run`, `tuning`, the workers and `confidence` call `JobTracker`'s methods; none of them
imports MLflow. Everything goes through `MlflowClient` with explicit run ids (no fluent active-run
state), so threads, workers and processes can share a store. Every run opened here ends FINISHED,
FAILED (reason in the tag `vggsweep.failure_reason`) or KILLED, also when an exception or an
interrupt goes through. A rerun of the same job reuses its parent run, writes first what an earlier
attempt left in its outbox, and marks the runs a killed process left RUNNING as KILLED.

Training never waits for the store: a trial's records are queued in an outbox (in order, kept on
disk, exactly once in effect); reads wait for the queue to be written, bounded by
`tracking.outage_s`, after which TrackingUnavailable says since when the store has been away.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

from vggsweep.errors import InfrastructureError, one_line
from vggsweep.runtime import interrupts
from vggsweep.tracking import faults, results, store


def git_commit() -> str:
    """The repository's commit (with '-dirty' when there are local changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]  # the repository (vggsweep/tracking/writer.py)
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def status_for(error: BaseException | None) -> str:
    """The MLflow status a run ends with after `error` (None: it ended normally). A run cut
    short by the infrastructure (the store away, a full disk) is KILLED: it runs again."""
    if error is None:
        return "FINISHED"
    if isinstance(error, (KeyboardInterrupt, SystemExit, InfrastructureError)):
        return "KILLED"
    return "FAILED"


def _param(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _batch(run_id: str, metrics: dict | None = None, step: int = 0, tags: dict | None = None,
           params: dict | None = None) -> dict:
    """An outbox record: metrics stamped now (a record written again keeps its timestamp, so
    the store keeps one point), tags, params."""
    now = int(time.time() * 1000)
    return {"op": "batch", "run": run_id,
            "metrics": [[k, float(v), now, int(step)] for k, v in (metrics or {}).items()
                        if v is not None],
            "tags": [[k, str(v)] for k, v in (tags or {}).items()],
            "params": [[k, _param(v)[:6000]] for k, v in (params or {}).items()]}


class JobTracker:
    """The MLflow side of one job: its parent run and the child runs of its trials.

    Writes go through an outbox (`vggsweep.tracking.outbox`: in order, kept on disk, written
    by a thread, so training never waits for the store) when `outbox` names its file; reads
    first wait until every write is in (bounded by `outage_s`). Without `outbox`, each write is
    made at once.

    Args:
        outbox: the outbox file of this process (<project>/outbox/<job|worker>.jsonl).
        outage_s: how long to wait for the store (`tracking.outage_s`).
        label: the job's prefix for the lines about the store.
        adopt: take over the records other processes of the job left beside `outbox`.
    """

    def __init__(self, uri: str, experiment: str, job_key: str, tags: dict, *,
                 outbox: Path | None = None, outage_s: float | None = None, label: str = "",
                 adopt: bool = False):
        self.uri = uri
        faults.configure(uri, outage_s, label)
        self.client = store.client(uri)
        self.experiment_id = store.prepare(uri, experiment)
        self.job_key = job_key
        self.tags = {k: str(v) for k, v in tags.items()}
        self.parent_id: str | None = None
        self._failed: set[str] = set()  # runs whose failure reason this process recorded
        self.outbox = None
        if outbox is not None:
            from vggsweep.tracking.outbox import Outbox

            self.outbox = Outbox(store.client(uri).inner, uri, Path(outbox))
            for other in sorted(Path(outbox).parent.glob("*.jsonl")) if adopt else ():
                if other != Path(outbox):
                    self.outbox.adopt(other)

    # ----------------------------------------------------------------------------------------
    # Writes (queued) and the waits before reads.

    def _put(self, record: dict) -> None:
        if self.outbox is not None:
            self.outbox.put(record)
        else:
            from vggsweep.tracking.outbox import send

            self.client.call(send, self.client.inner, record)

    def sync(self) -> None:
        """Waits until every queued write is in the store (bounded)."""
        if self.outbox is not None:
            self.outbox.flush()

    def check(self) -> None:
        """Raises when the store has been away past the bound or a disk is full (a trial's
        epochs call it: training goes on meanwhile, never past the bound)."""
        if self.outbox is not None:
            self.outbox.check()

    def close(self, error: BaseException | None = None) -> None:
        """Writes what is queued (briefly after an interrupt); what is left stays in the
        outbox file for the rerun, and the job's error says so."""
        if self.outbox is None:
            return
        interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
        left = self.outbox.close(wait=True, wait_s=10.0 if interrupted else None)
        if not left:
            return
        note = f"{left} unsaved tracking records {self.outbox.kept()}"
        if isinstance(error, InfrastructureError):
            error.args = (f"{error}; {note}",)
        elif error is None:
            problem = self.outbox.error or faults.health(self.uri).error()
            problem.args = (f"{problem}; {note}",)
            raise problem

    # ----------------------------------------------------------------------------------------
    # The parent run.

    def find_parent(self) -> str | None:
        """The parent run of an earlier attempt at this job, if any."""
        self.sync()
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{store.JOB_KEY}` = '{self.job_key}' and "
                          f"tags.`{store.ROLE}` = 'job'",
            order_by=["attributes.start_time ASC"], max_results=1)
        return runs[0].info.run_id if runs else None

    @contextlib.contextmanager
    def parent_run(self, run_name: str, params: dict | None = None):
        """Opens (or reopens) the job's parent run; ends it with a status whatever happens.
        The records an earlier attempt left unsaved are written first."""
        existing = self.find_parent()
        tags = {**self.tags, store.ROLE: "job", store.JOB_KEY: self.job_key}
        if existing:
            self.parent_id = existing
            self._put({"op": "status", "run": existing, "status": "RUNNING"})
            self._put(_batch(existing, tags={**tags, store.RESUMED: "true"}))
            self._put({"op": "untag", "run": existing, "key": store.FAILURE_REASON})
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            self.parent_id = run.info.run_id
            if params:
                self.log_params(self.parent_id, params)
        error = None
        try:
            self.kill_orphans()
            yield self.parent_id
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._end(self.parent_id, error)
            self.close(error)

    def attach(self, parent_id: str) -> None:
        """Writes trials under an existing parent run (a worker of a job another process runs)."""
        self.parent_id = parent_id

    def log_params(self, run_id: str, params: dict) -> None:
        items = list(params.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._put(_batch(run_id, params=dict(items[start:start + 100])))

    def log_config(self, config: dict) -> None:
        self.client.log_dict(self.parent_id, config, "config.yaml")

    def finish_job(self, metrics: dict) -> None:
        """The job's summary on its run; nothing when the run holds it already (a rerun of a
        finished job logs nothing new: `job_time_s` is the first complete run's)."""
        self.sync()
        recorded = self.client.get_run(self.parent_id).data.metrics
        if all(recorded.get(k) == v for k, v in metrics.items() if k != "job_time_s"):
            return
        self._put(_batch(self.parent_id, metrics))

    def fail_parent(self, reason: str) -> None:
        """Records why the job failed (its run then ends FAILED)."""
        self._failed.add(self.parent_id)
        self._put(_batch(self.parent_id, tags={store.FAILURE_REASON: reason[:500]}))

    def _end(self, run_id: str, error: BaseException | None) -> None:
        """Ends the run with the status `error` calls for, and why; the status is written even
        when writing the reason fails (the run is never left RUNNING by a failed tag)."""
        status = status_for(error)
        reason = None
        if isinstance(error, InfrastructureError) or status == "FAILED":
            reason = one_line(error)
        elif status == "KILLED":  # "interrupted", or SLURM's event ("time limit", "preempted")
            reason = interrupts.reason(error)
        elif run_id in self._failed:
            status = "FAILED"
        try:
            if reason:
                self._put(_batch(run_id, tags={store.FAILURE_REASON: reason}))
        finally:
            self._put({"op": "end", "run": run_id, "status": status,
                       "time": int(time.time() * 1000)})

    # ----------------------------------------------------------------------------------------
    # Trial runs.

    def children(self, extra: str = "") -> list:
        """The trial runs under this job's parent run, optionally filtered (`extra`)."""
        self.sync()
        query = (f"tags.`{store.PARENT}` = '{self.parent_id}' and "
                 f"tags.`{store.ROLE}` = 'trial'")
        if extra:
            query += f" and {extra}"
        return store.search_all_runs(self.client, [self.experiment_id], query)

    def _kill(self, runs, reason: str) -> None:
        for run in runs:
            if run.info.status != "KILLED":
                self._put(_batch(run.info.run_id, tags={store.FAILURE_REASON: reason}))
                self._put({"op": "end", "run": run.info.run_id, "status": "KILLED",
                           "time": int(time.time() * 1000)})

    def kill_orphans(self) -> None:
        """Marks runs a killed process left RUNNING under this parent as KILLED (keras-tuner
        runs their trials again: they were ongoing when the process ended)."""
        self._kill(self.children("attributes.status = 'RUNNING'"),
                   "interrupted: the process ended while this trial was running; the trial is "
                   "run again")

    def close_abandoned(self, parent_id: str, reason: str) -> None:
        """Ends KILLED, with `reason`, the runs of a job whose process was killed outright (a
        cluster's out-of-memory or node failure: no signal it could handle) and left RUNNING."""
        self.parent_id = parent_id
        self._kill(self.children("attributes.status = 'RUNNING'"), reason)
        self._kill([self.client.get_run(parent_id)], reason)

    def supersede_all(self, reason: str) -> None:
        """Marks every earlier trial run of this job KILLED (the search starts over)."""
        self._kill(self.children(), reason)

    def supersede(self, trial_id: str, name: str | None = None) -> None:
        """Marks earlier runs of a trial that is about to run again as KILLED (no duplicates);
        one named `name` is renamed, so that run names stay unique in the experiment."""
        earlier = self.children(f"tags.`{store.TRIAL_ID}` = '{trial_id}'")
        self._kill(earlier, "superseded: this trial was run again")
        for run in earlier:  # renamed through the run's name tag, in order with the rest
            if name and run.info.run_name == name:
                self._put(_batch(run.info.run_id, tags={
                    "mlflow.runName": store.superseded_run_name(name, run.info.run_id)}))

    def trial_run(self, trial_id: str, params: dict, tags: dict):
        """A nested child run for one trial; FINISHED, FAILED (with reason) or KILLED."""
        name = store.trial_run_name(trial_id, tags.get(store.JOB_NAME))
        self.supersede(trial_id, name)
        return self.child_run("trial", name, params, {**tags, store.TRIAL_ID: trial_id})

    @contextlib.contextmanager
    def child_run(self, role: str, name: str, params: dict, tags: dict):
        """A run nested under the parent (a trial, a confidence retraining); it ends FINISHED,
        FAILED (with reason) or KILLED whatever happens."""
        run = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={**{k: str(v) for k, v in tags.items()}, store.ROLE: role,
                  store.JOB_KEY: self.job_key, store.PARENT: self.parent_id})
        error = None
        try:
            self.log_params(run.info.run_id, params)
            yield run
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._end(run.info.run_id, error)

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        self._put(_batch(run_id, metrics, step))

    def log_epoch(self, run, logs: dict, epoch: int) -> None:
        """One epoch's metrics of a trial, in one batch, at step = epoch (0-based): queued."""
        self._put(_batch(run.info.run_id, logs, epoch))

    def finish_trial(self, run, metrics: dict, pruned: str | None = None,
                     tags: dict | None = None) -> None:
        """A trial's final metrics (the kept model's), whether the pruner stopped it, and `tags`
        (which validation images it got right: `agreement.encode`)."""
        tags = {**(tags or {}),
                **({store.PRUNED: "true", "vggsweep.pruned_reason": pruned} if pruned else {})}
        self._put(_batch(run.info.run_id, metrics, tags=tags))

    def trial_counts(self) -> dict:
        """FINISHED / FAILED / KILLED child runs under the parent (PRUNED ones are FINISHED)."""
        counts = {"FINISHED": 0, "FAILED": 0, "KILLED": 0, "PRUNED": 0, "epochs_saved": 0}
        for run in self.children():
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
            if results.trial_status(run) == "PRUNED":
                counts["PRUNED"] += 1
                counts["epochs_saved"] += int(run.data.metrics.get("epochs_saved", 0))
        return counts

    def best_trial(self):
        """The job's best trial run, as the leaderboard ranks (None when none finished)."""
        scored = [r for r in self.children("attributes.status = 'FINISHED'")
                  if results.trial_status(r) == "FINISHED" and _kept(r) is not None]
        if not scored:
            return None
        return min(scored, key=lambda r: results.rank_key(_kept(r), r.info.start_time,
                                                          r.info.run_id))

    def ranks_first(self, run, score: float) -> bool:
        """Whether the open trial `run`, at validation accuracy `score`, ranks before every
        finished trial of the job (`results.rank_key`: the one ranking)."""
        best = self.best_trial()
        if best is None:
            return True
        mine = results.rank_key(score, run.info.start_time, run.info.run_id)
        return mine < results.rank_key(_kept(best), best.info.start_time, best.info.run_id)

    def record_kept_model(self, run, path) -> None:
        """Records on the trial's run where its model is kept (the job's best, so far)."""
        self._put(_batch(run.info.run_id, tags={store.KEPT_MODEL: str(path)}))

    def first_failure(self) -> str:
        for run in self.children("attributes.status = 'FAILED'"):
            reason = run.data.tags.get(store.FAILURE_REASON)
            if reason:
                return reason
        return ""

    # ----------------------------------------------------------------------------------------
    # Artifacts and the best model.

    def log_artifact(self, path: str | os.PathLike, folder: str) -> None:
        self.client.log_artifact(self.parent_id, str(path), folder)

    def logged_model_of(self, trial_run) -> bool:
        """Whether the job's run holds the model kept from `trial_run` already (a rerun of a
        finished job logs it once)."""
        from mlflow.entities import LoggedModelStatus

        self.sync()
        found = self.client.search_logged_models(
            [self.experiment_id],
            filter_string=f"source_run_id = '{self.parent_id}' AND "
                          f"tags.`{store.LOGGED_FROM}` = '{trial_run.info.run_id}'")
        return any(model.status == LoggedModelStatus.READY for model in found)

    def log_model(self, model, example, step: int = 0, metrics: dict | None = None,
                  trial_run=None) -> str:
        """Logs `model` as the job's MLflow logged model (`vggsweep.tracking.logged_model`),
        tagged with the trial run it was kept from; returns its URI (`models:/<id>`)."""
        from vggsweep.tracking import logged_model

        self.sync()
        tags = {store.LOGGED_FROM: trial_run.info.run_id} if trial_run is not None else {}
        return logged_model.log(self.client, self.experiment_id, self.parent_id, model, example,
                                step=step, metrics=metrics, tags=tags)


def _kept(run) -> float | None:
    metrics = run.data.metrics
    return metrics.get(results.KEPT_VAL_ACCURACY, metrics.get("val_accuracy"))
