"""vggsweep's `hydra/launcher=submitit_slurm` and `submitit_local`: Hydra's submitit configs (the
same options, typed) with vggsweep's launcher classes (`hydra_plugins.vggsweep_launcher`, whose
work is `vggsweep.job.cluster`'s: every job waited for, its failure reported, its progress shown)
and a default that says vggsweep resumes a job.

Hydra's plugin registers its own configs in the ConfigStore when Hydra scans its plugins; these
replace them by name, after that scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra_plugins.hydra_submitit_launcher import config as submitit

#: Requeues a SLURM job may make after time limits (Hydra's default, 0, ends the job at its first
#: time limit). A requeued job resumes from its tuner state, so a requeue costs one trial at most.
MAX_NUM_TIMEOUT = 3


@dataclass
class SlurmConf(submitit.SlurmQueueConf):
    _target_: str = "hydra_plugins.vggsweep_launcher.launchers.SlurmLauncher"
    max_num_timeout: int = MAX_NUM_TIMEOUT


@dataclass
class LocalConf(submitit.LocalQueueConf):
    _target_: str = "hydra_plugins.vggsweep_launcher.launchers.LocalLauncher"


def register() -> None:
    """Stores vggsweep's submitit launcher configs over the plugin's (call before composing)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from hydra_plugins.vggsweep_launcher import launchers

    plugins = Plugins.instance()  # the plugin scan (once per process) registers the plugin's
    # configs; an editable install's hydra_plugins is not scanned: its launchers are named here
    plugins.register(launchers.SlurmLauncher)
    plugins.register(launchers.LocalLauncher)
    store = ConfigStore.instance()
    store.store(group="hydra/launcher", name="submitit_slurm", node=SlurmConf, provider="vggsweep")
    store.store(group="hydra/launcher", name="submitit_local", node=LocalConf, provider="vggsweep")
