"""`hydra/launcher=submitit_slurm | submitit_local` as vggsweep registers them
(`vggsweep.config.launchers`): Hydra's submitit launchers whose sweep waits for every job and
follows it, and whose SLURM jobs requeue themselves on SLURM's warning signal. The work is
`vggsweep.job.cluster`'s, imported when a launcher runs (Hydra imports this module at every start).
"""

from __future__ import annotations

import functools

from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Hydra's submitit_slurm launcher; see `vggsweep.job.cluster`."""

    def launch(self, job_overrides, initial_job_idx):
        from vggsweep.job import cluster

        return cluster.launch(self, self._EXECUTOR, job_overrides, initial_job_idx)

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state):
        """Inside the SLURM job: the job, requeued on SLURM's warning signal."""
        from vggsweep.job import cluster

        run = functools.partial(super().__call__, sweep_overrides, job_dir_key, job_num, job_id,
                                singleton_state)
        return cluster.run_requeueing(run, self.params.get("max_num_timeout", 0),
                                      f"[job {job_num + 1}]")


class LocalLauncher(submitit_launcher.LocalLauncher):
    """Hydra's submitit_local launcher; see `vggsweep.job.cluster`."""

    def launch(self, job_overrides, initial_job_idx):
        from vggsweep.job import cluster

        return cluster.launch(self, self._EXECUTOR, job_overrides, initial_job_idx)
