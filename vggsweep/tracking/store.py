"""The MLflow store: where it is, what vggsweep's tags are called, and opening it safely.

One definition of each tag, of the default tracking URI and of how a store is created: the writer
(`tracking`) and the readers (`results`, the commands) all use this module. Creating a fresh
SQLite store is done under an inter-process file lock, so any number of processes may start at
once on the same store. MLflow is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from vggsweep.errors import ResultsError, StoreError
from vggsweep.runtime import files, interrupts
from vggsweep.tracking import faults

# Tags of the data contract (parent run per Hydra job, nested child run per trial).
ROLE = "vggsweep.role"  # job | trial | confidence
JOB_KEY = "vggsweep.job_key"  # the job's identity (hash of its effective config)
TRIAL_ID = "vggsweep.trial_id"  # keras-tuner's trial id
FAILURE_REASON = "vggsweep.failure_reason"  # why a run ended FAILED or KILLED
SWEEP_DIR = "vggsweep.sweep_dir"  # the Hydra sweep (or run) directory of the job
OVERRIDES = "vggsweep.overrides"  # the job's command-line overrides
RESUMED = "vggsweep.resumed"  # "true" on a parent run that a rerun reopened
WORKER = "vggsweep.worker"  # the tuner worker that trained a trial
PRUNED = "vggsweep.pruned"  # "true" on a trial the pruner stopped early
KEPT_MODEL = "vggsweep.kept_model"  # on the job's best trial: where its model is kept on disk
REFERENCE = "vggsweep.reference"  # "true" on the job's reference trial (its first enqueued point)
SOURCE_RUN = "vggsweep.source_run"  # on a confidence run: the trial it retrains
ATTEMPT = "vggsweep.attempt"  # a client-made id on a created run: a retried creation finds it
LOGGED_FROM = "vggsweep.logged_from"  # on a job's logged model: the trial run it was kept from
JOB_NAME = "vggsweep.job"  # the job's run name, on its parent and trial runs (the UI groups by it)
LOGGED_MODEL = "vggsweep.logged_model"  # on a job's run: models:/<id> of its best model
VAL_CORRECT = "vggsweep.val_correct"  # on a finished trial: which validation images it got right
PARENT = "mlflow.parentRunId"
EXPERIMENT_KIND = "mlflow.experimentKind"  # how the MLflow UI opens the experiment
TRAINING_KIND = "custom_model_development"  # the UI's model-training view (not GenAI)

#: Schemes MLflow can store runs in (plus database drivers, e.g. postgresql+psycopg2).
KNOWN_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
TRACKING_URI_HELP = "default: $MLFLOW_TRACKING_URI, else sqlite:///<launch dir>/mlflow.db"
LOCK_TIMEOUT_S = 120


def trial_number(trial_id) -> int | str:
    """The number a trial is shown with everywhere (progress lines, run names, the report):
    1-based, keras-tuner's trial id + 1; an id that is not a number is shown as it is."""
    text = str(trial_id)
    return int(text) + 1 if text.isdigit() else text


def trial_run_name(trial_id, job: str | None = None) -> str:
    """The MLflow run name of keras-tuner's trial `trial_id` in job `job`: `cnn-relu/trial-3`,
    unique in the experiment and readable in a flat list of runs."""
    name = f"trial-{trial_number(trial_id)}"
    return f"{job}/{name}" if job else name


def superseded_run_name(name: str, run_id: str) -> str:
    """The new name of a run that another run of the same trial replaces."""
    return f"{name} (superseded {run_id[:8]})"


def job_run_name(mlflow_client, experiment_id: str, label: str, job_key: str) -> str:
    """The run name of a job: its earlier run's name when the job ran before, else `label`,
    numbered (`cnn-relu (2)`) when another job of the experiment took it already."""
    jobs = search_all_runs(mlflow_client, [experiment_id], f"tags.`{ROLE}` = 'job'")
    for run in sorted(jobs, key=lambda run: run.info.start_time or 0):  # as the writer reopens
        if run.data.tags.get(JOB_KEY) == job_key and run.info.run_name:
            return run.info.run_name
    taken = {run.info.run_name for run in jobs}
    name, number = label, 2
    while name in taken:
        name, number = f"{label} ({number})", number + 1
    return name


#: A sweep's manifest in its directory: written by the launching process, read by its jobs (their
#: count) and by the commands that rebuild its outputs (which jobs, in which store).
MANIFEST = ".vggsweep-sweep.json"


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    import json

    files.atomic_write(Path(sweep_dir) / MANIFEST, json.dumps(manifest, indent=1))


def read_manifest(sweep_dir: str | os.PathLike | None) -> dict:
    """The sweep's manifest, {} when there is none (a job run outside a vggsweep sweep)."""
    import json

    if not sweep_dir:
        return {}
    try:
        return json.loads((Path(sweep_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def launch_dir() -> Path:
    """The directory the user launched from (home of mlflow.db, tuner_state and outputs).

    `VGGSWEEP_HOME` overrides the working directory (tests, and users who launch from elsewhere).
    """
    return Path(os.environ.get("VGGSWEEP_HOME", os.getcwd())).resolve()


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI: the given one, else $MLFLOW_TRACKING_URI, else <launch dir>/mlflow.db."""
    if uri:
        return str(uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{launch_dir() / 'mlflow.db'}"


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) of a local tracking URI; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if uri.startswith("file:"):
        return Path(uri[len("file:"):].removeprefix("//"))
    if "://" not in uri and not uri.startswith("databricks"):
        return Path(uri)
    return None


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside it (not in whatever directory a job runs in)."""
    path = local_store_path(uri)
    if uri.startswith("sqlite:///") and path is not None:
        return (path.parent / "mlartifacts").resolve().as_uri()
    return None


def check_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Refuses, in one line, a URI MLflow cannot use: unknown scheme, missing folder, a server
    that does not answer, a database driver that is not installed."""
    scheme = urlparse(uri).scheme.split("+", 1)[0].lower() if "://" in uri else "file"
    if scheme not in KNOWN_SCHEMES:
        raise StoreError(f"tracking.uri={uri}: unknown scheme {scheme!r}; valid: sqlite:///PATH, "
                         "http(s)://HOST:PORT, postgresql+psycopg2://..., file:PATH")
    path = local_store_path(uri)
    if path is not None and not path.parent.is_dir():
        raise StoreError(f"tracking.uri={uri}: the folder {path.parent} does not exist")
    if scheme in ("http", "https"):
        _check_server(uri, timeout_s)
    if "+" in urlparse(uri).scheme:
        _check_driver(uri)


def _check_server(uri: str, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s)
            response.read(64)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            return  # a server with authentication: it answers
        raise StoreError(f"tracking.uri={uri}: the server answered {error.code} at {url}") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise StoreError(f"tracking.uri={uri}: no MLflow server answers ({reason}); start one "
                         "(make server) or use the default SQLite store") from None


def _check_driver(uri: str) -> None:
    import importlib.util

    driver = urlparse(uri).scheme.split("+", 1)[1]
    if importlib.util.find_spec(driver) is None:
        raise StoreError(f"tracking.uri={uri}: the database driver {driver!r} is not installed; "
                         "pip install -e '.[server]'")


@contextlib.contextmanager
def creation_lock(uri: str):
    """An inter-process lock around creating a local store (a no-op for servers).

    MLflow crashes when processes create the tables of a fresh SQLite file at the same moment
    ("table runs already exists"); the first process to hold the lock creates them.
    """
    path = local_store_path(uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    with open(lock, "a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"{path}: another process has held {lock} for over "
                                     f"{LOCK_TIMEOUT_S}s; is it stuck?") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class GuardedClient:
    """An MlflowClient whose every call is one uninterrupted step: a signal waits for the call
    to return (`interrupts.deferred`), a call SQLite refuses as locked is retried, and while the
    store is away the call is tried again until it answers or `tracking.outage_s` has passed
    (`faults`): then TrackingUnavailable, or DiskFull at once for a full disk, one line each.
    A `create_run` (or `create_logged_model`) tried again is first looked for by a tag of ours,
    so that a request the store carried out but whose answer was lost makes no second run."""

    def __init__(self, inner, uri: str | None = None):
        self.inner = inner
        self.uri = uri or str(getattr(inner, "tracking_uri", ""))
        self.health = faults.health(self.uri)

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def guarded(*args, **kwargs):
            return self.call(attribute, *args, **kwargs)

        guarded.__name__ = name
        return guarded

    def call(self, function, *args, recover=None, **kwargs):
        """`function(*args, **kwargs)` until the store answers (bounded); `recover()`, asked
        before each new try, returns what an earlier try did (None: nothing)."""
        tried = False
        while True:
            if tried and recover is not None:
                found = self.call(recover)
                if found is not None:
                    return found
            started = time.monotonic()
            try:
                with interrupts.deferred():
                    result = retry(function, *args, **kwargs)
            except Exception as error:
                problem = faults.fault(error, self.health, local_store_path(self.uri), started)
                if problem is error:
                    raise
                if problem is not None:
                    raise problem from error
                tried = True
                time.sleep(self.health.pause())  # outside `deferred`: Ctrl-C stops the wait
                continue
            self.health.succeeded()
            return result

    def create_run(self, experiment_id, *args, tags=None, **kwargs):
        attempt = uuid.uuid4().hex

        def created():
            runs = self.inner.search_runs([experiment_id], f"tags.`{ATTEMPT}` = '{attempt}'",
                                          max_results=1)
            return runs[0] if runs else None

        return self.call(self.inner.create_run, experiment_id, *args,
                         tags={**(tags or {}), ATTEMPT: attempt}, recover=created, **kwargs)

    def create_logged_model(self, experiment_id, *args, tags=None, **kwargs):
        attempt = uuid.uuid4().hex

        def created():
            found = self.inner.search_logged_models(
                [experiment_id], filter_string=f"tags.`{ATTEMPT}` = '{attempt}'", max_results=1)
            return found[0] if found else None

        return self.call(self.inner.create_logged_model, experiment_id, *args,
                         tags={**(tags or {}), ATTEMPT: attempt}, recover=created, **kwargs)


def client(uri: str) -> GuardedClient:
    """An MlflowClient for `uri` (the store itself is opened on first use), guarded."""
    from mlflow import MlflowClient

    quiet_store_errors()
    faults.configure_http()
    return GuardedClient(MlflowClient(uri), uri)


def quiet_store_errors() -> None:
    """MLflow logs each failed SQL statement with its traceback before raising it; vggsweep says
    what the failure means in one line (a full disk would print a traceback per write)."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def prepare(uri: str, experiment: str, tags: dict | None = None) -> str:
    """Creates (or migrates) the store and the experiment if needed; returns the experiment id.

    Safe when many processes call it at once on the same fresh store. `tags` are set on the
    experiment when they are missing.
    """
    with creation_lock(uri):
        mlflow_client = client(uri)
        found = mlflow_client.get_experiment_by_name(experiment)
        if found is not None:
            for key, value in (tags or {}).items():
                if key not in found.tags:
                    mlflow_client.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        from mlflow.exceptions import MlflowException

        try:
            return mlflow_client.create_experiment(
                experiment, artifact_location=artifact_root(uri), tags=tags)
        except MlflowException:  # created by another process (a server, no shared lock)
            found = mlflow_client.get_experiment_by_name(experiment)
            if found is None:
                raise
            return found.experiment_id


def open_existing(uri: str, experiment: str):
    """Connects to an existing store and finds an existing experiment; creates neither.

    Returns:
        (MlflowClient, experiment_id).

    Raises:
        ResultsError: the store does not exist, or the experiment is unknown.
    """
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise ResultsError(f"no MLflow store at {path} (tracking URI {uri}); pass "
                           "--tracking-uri, e.g. sqlite:///<launch dir>/mlflow.db, or set "
                           "MLFLOW_TRACKING_URI")
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in mlflow_client.search_experiments())
        raise ResultsError(f"unknown experiment {experiment!r} in {uri}; experiments: "
                           + (", ".join(names) or "(none)"))
    return mlflow_client, found.experiment_id


def search_all_runs(mlflow_client, experiment_ids: list[str], filter_string: str = "") -> list:
    """Every run of the experiments matching `filter_string`, following MLflow's paging."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(experiment_ids, filter_string, max_results=1000,
                                         page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def retry(function, *args, attempts: int = 5, **kwargs):
    """Calls `function`, retrying when SQLite says the database is locked (busy writers)."""
    for attempt in range(attempts):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if "database is locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")
