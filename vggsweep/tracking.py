"""MLflow: the store, one parent run per Hydra job, one nested child run per keras-tuner trial.

Every run this module opens ends FINISHED, FAILED (reason in the tag `vggsweep.failure_reason`) or
KILLED, also when an exception or an interrupt goes through. A rerun of the same job reuses its
parent run and marks the runs a killed process left RUNNING as KILLED.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from vggsweep.config import launch_dir

ROLE, JOB_KEY, TRIAL_ID = "vggsweep.role", "vggsweep.job_key", "vggsweep.trial_id"
FAILURE_REASON, SWEEP_DIR, OVERRIDES = (
    "vggsweep.failure_reason", "vggsweep.sweep_dir", "vggsweep.overrides",
)
PARENT = "mlflow.parentRunId"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: the config's, else $MLFLOW_TRACKING_URI, else <launch dir>/mlflow.db."""
    if uri:
        return str(uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{launch_dir() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store (not in whatever directory a job runs in)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def prepare_store(uri: str, experiment: str) -> str:
    """Creates/migrates the store and the experiment once, before any job starts.

    Several processes creating a fresh SQLite store at once corrupt it; doing it here, once,
    makes the jobs only ever open an existing store. Returns the experiment id.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(experiment, artifact_location=artifact_root(uri))


def git_commit() -> str:
    """The repository's commit (with '-dirty' when there are local changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
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


def _status_for(error: BaseException | None) -> str:
    if error is None:
        return "FINISHED"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "KILLED"
    return "FAILED"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:500]


class JobTracker:
    """The MLflow side of one job: its parent run and the child runs of its trials."""

    def __init__(self, uri: str, experiment: str, job_key: str, tags: dict):
        import mlflow

        self.mlflow = mlflow
        self.uri = uri
        self.client = mlflow.MlflowClient(uri)
        mlflow.set_tracking_uri(uri)
        self.experiment_id = prepare_store(uri, experiment)
        self.job_key = job_key
        self.tags = {k: str(v) for k, v in tags.items()}
        self.parent_id: str | None = None

    def find_parent(self) -> str | None:
        """The parent run of an earlier attempt at this job, if any."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{JOB_KEY}` = '{self.job_key}' and tags.`{ROLE}` = 'job'",
            order_by=["attributes.start_time ASC"], max_results=1,
        )
        return runs[0].info.run_id if runs else None

    @contextlib.contextmanager
    def parent_run(self, run_name: str):
        """Opens (or reopens) the job's parent run; ends it with a status whatever happens."""
        existing = self.find_parent()
        tags = {**self.tags, ROLE: "job", JOB_KEY: self.job_key}
        if existing:
            run = self.mlflow.start_run(run_id=existing)
            self.mlflow.set_tags({**tags, "vggsweep.resumed": "true"})
            if self._has_tag(existing, FAILURE_REASON):
                self.client.delete_tag(existing, FAILURE_REASON)
        else:
            run = self.mlflow.start_run(
                experiment_id=self.experiment_id, run_name=run_name, tags=tags
            )
        self.parent_id = run.info.run_id
        self.kill_orphans()
        error = None
        try:
            yield run
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._end(self.parent_id, error)
            while self.mlflow.active_run() is not None:
                self.mlflow.end_run(_status_for(error))

    def _has_tag(self, run_id: str, key: str) -> bool:
        return key in self.client.get_run(run_id).data.tags

    def fail_parent(self, reason: str) -> None:
        """Records why the job failed (its run then ends FAILED)."""
        self.client.set_tag(self.parent_id, FAILURE_REASON, reason[:500])

    def _end(self, run_id: str, error: BaseException | None) -> None:
        status = _status_for(error)
        if error is not None and status == "FAILED":
            self.client.set_tag(run_id, FAILURE_REASON, _one_line(error))
        if error is None and self._has_tag(run_id, FAILURE_REASON):
            status = "FAILED"
        if status == "KILLED":
            self.client.set_tag(run_id, FAILURE_REASON, "interrupted")
        if self.mlflow.active_run() and self.mlflow.active_run().info.run_id == run_id:
            self.mlflow.end_run(status)
        else:
            self.client.set_terminated(run_id, status)

    def kill_orphans(self) -> None:
        """Marks runs a killed process left RUNNING under this parent as KILLED."""
        for run in self.children("attributes.status = 'RUNNING'"):
            self.client.set_tag(run.info.run_id, FAILURE_REASON, "interrupted: the process ended "
                                "while this trial was running; the trial was run again")
            self.client.set_terminated(run.info.run_id, "KILLED")

    def children(self, extra: str = "") -> list:
        """The trial runs under this job's parent run, optionally filtered (`extra`)."""
        query = f"tags.`{PARENT}` = '{self.parent_id}' and tags.`{ROLE}` = 'trial'"
        if extra:
            query += f" and {extra}"
        return self.client.search_runs([self.experiment_id], filter_string=query,
                                       max_results=5000)

    def supersede_all(self, reason: str) -> None:
        """Marks every earlier trial run of this job KILLED (the search starts over)."""
        for run in self.children():
            if run.info.status != "KILLED":
                self.client.set_tag(run.info.run_id, FAILURE_REASON, reason)
                self.client.set_terminated(run.info.run_id, "KILLED")

    def supersede(self, trial_id: str) -> None:
        """Marks earlier runs of a trial that is about to run again as KILLED (no duplicates)."""
        for run in self.children(f"tags.`{TRIAL_ID}` = '{trial_id}'"):
            if run.info.status != "KILLED":
                self.client.set_tag(run.info.run_id, FAILURE_REASON,
                                    "superseded: this trial was run again")
                self.client.set_terminated(run.info.run_id, "KILLED")

    @contextlib.contextmanager
    def trial_run(self, trial_id: str, params: dict, tags: dict):
        """A nested child run for one trial; FINISHED, FAILED (with reason) or KILLED."""
        self.supersede(trial_id)
        run = self.mlflow.start_run(
            experiment_id=self.experiment_id, run_name=f"trial-{trial_id}", nested=True,
            tags={**{k: str(v) for k, v in tags.items()}, ROLE: "trial", JOB_KEY: self.job_key,
                  TRIAL_ID: trial_id, PARENT: self.parent_id},
        )
        self.mlflow.log_params({k: _param(v) for k, v in params.items()})
        error = None
        try:
            yield run
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._end(run.info.run_id, error)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def trial_counts(self) -> dict:
        """FINISHED / FAILED / KILLED child runs under the parent."""
        counts = {"FINISHED": 0, "FAILED": 0, "KILLED": 0}
        for run in self.children():
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        return counts


def _param(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return str(value)
