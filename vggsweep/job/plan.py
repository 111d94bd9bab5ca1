"""One job plan: what a job's config means, decided once for the launcher's checks and the job.

`make(cfg)` checks the config against the registries, loads and checks the data, fixes the image
size the models work at, checks the tracking URI, and gives the job's identity (its key: a hash of
the config keys that make a job, declared on the schema with `identity=False` for the others) and
its keras-tuner project. The launching process calls it for every job before any starts (bad
input: one line, exit 2, nothing created); the job calls it again where it runs (another process
for Hydra's parallel launchers, another machine on SLURM), and gets the same plan.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from vggsweep import config, data
from vggsweep.config import schema
from vggsweep.errors import StateError
from vggsweep.job import checks
from vggsweep.tracking import store

_checked_uris: set[str] = set()  # a server is asked once per process


@dataclass(frozen=True)
class JobPlan:
    """A checked job: its config, data, image size, store and identity."""

    cfg: object
    uri: str  # the tracking URI, resolved
    key: str  # the job's identity in the store and on disk
    project: Path  # its keras-tuner project
    splits: object  # vggsweep.data.Splits
    image_size: int  # the size its models work at


def make(cfg) -> JobPlan:
    """Checks a job's config, data and store; raises ConfigError (one line) on a problem."""
    checks.validate(cfg, geometry=False)
    splits = data.load(cfg.data)  # cached per process: the in-process jobs share it
    image_size = config.effective_image_size(cfg.data, splits.image_shape)
    checks.check_geometry(cfg, image_size)
    checks.check_memory(cfg, image_size, splits.image_shape, splits.num_classes)
    uri = store.resolve_uri(cfg.tracking.uri)
    if uri not in _checked_uris:
        store.check_uri(uri)
        _checked_uris.add(uri)
    key = job_key(cfg, uri)
    project = project_dir(cfg, key)
    if not cfg.tuner.fresh:
        check_state_files(project)
    return JobPlan(cfg, uri, key, project, splits, image_size)


def identity(cfg) -> dict:
    """The job's effective config as plain Python, without the keys that do not make a job
    another job (`identity=False` on the schema: how much or where it runs, not what)."""
    plain = config.container(cfg)
    for path in schema.identity_paths():
        node = plain
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return plain


def job_key(cfg, tracking_uri: str) -> str:
    """A stable identity for a job: a hash of `identity(cfg)` and where it is recorded."""
    plain = identity(cfg)
    plain["tracking_uri"] = tracking_uri
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def project_dir(cfg, key: str) -> Path:
    """The job's keras-tuner project: <tuner.directory or launch dir/tuner_state>/<exp>-<key>."""
    root = Path(cfg.tuner.directory) if cfg.tuner.directory else store.launch_dir() / "tuner_state"
    return root.expanduser().resolve() / f"{cfg.experiment}-{key}"


def check_state_files(project_dir: Path) -> None:
    """Fails with one line naming the file when saved tuner state is truncated or corrupt."""
    for path in [project_dir / "oracle.json", *sorted(project_dir.glob("*.json")),
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


def prepare_project(project_dir: Path, fresh: bool) -> None:
    """Discards the project when `fresh`; refuses corrupt saved state with one line."""
    if fresh and project_dir.exists():
        shutil.rmtree(project_dir)
    check_state_files(project_dir)
