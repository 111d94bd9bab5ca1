"""Every submitit internal vggsweep relies on, behind this one door. `NAMES` lists them;
`tests/test_internals.py` checks that the installed submitit still has each.
"""

from __future__ import annotations

#: (module, attribute) of every internal used below.
NAMES = (("submitit.slurm.slurm", "_make_sbatch_string"),
         ("submitit.core.job_environment", "SignalHandler"),
         ("submitit.auto.auto", "AutoExecutor"))


def sbatch_script(executor, jobs: int) -> str:
    """The sbatch script `executor` (a submitit AutoExecutor for SLURM) would submit for `jobs`
    Hydra jobs (an array when there are several), running `true` instead of the job."""
    from submitit.slurm import slurm

    inner = executor._executor  # noqa: SLF001 - the door: the SLURM executor AutoExecutor wraps
    return slurm._make_sbatch_string(  # noqa: SLF001 - the door
        command="true", folder=inner.folder, map_count=jobs if jobs > 1 else None,
        **inner.parameters)


def timed_out(handler) -> bool | None:
    """Whether submitit's signal handler (`SignalHandler.checkpoint_and_try_requeue`, bound)
    counts the job's warning signal as its time limit (True) or a preemption (False); None when
    `handler` is not submitit's."""
    owner = getattr(handler, "__self__", None)
    check = getattr(owner, "has_timed_out", None)
    return bool(check()) if callable(check) else None
