"""SLURM seen from the launching process: its launcher options checked by SLURM before anything
exists, and its jobs' states read back while they run.

`check` runs before the store, the sweep folder or any run is created: the options of
`hydra/launcher=submitit_slurm` (partition, account, qos, time, CPUs, memory, GPUs, ...) become
the sbatch script submitit would submit, and `sbatch --test-only` says whether SLURM would take
it. `states` asks `sacct` (what submitit polls too) for the jobs' states and why they wait.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from vggsweep.errors import ConfigError

#: Hydra's basic launcher: the only one a run without -m uses.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
#: States in which a job is not over yet (submitit's list and the other transient ones).
UNFINISHED = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED",
              "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "CONFIGURING",
              "SIGNALING", "STAGE_OUT", "STOPPED"}
TEST_TIMEOUT_S = 60  # sbatch --test-only asks slurmctld: seconds, unless the controller is down


def launcher_name(hydra_cfg) -> str:
    """The launcher's option name as a user types it (submitit_slurm, joblib, ...)."""
    return str(hydra_cfg.runtime.choices.get("hydra/launcher", "basic"))


def is_slurm(launcher_cfg) -> bool:
    return str(launcher_cfg.get("_target_", "")).endswith("SlurmLauncher")


def check(hydra_cfg, multirun: bool, jobs: int, workers: int = 1) -> None:
    """Checks the launcher before anything exists: a launcher other than the basic one needs -m
    (Hydra would otherwise train in this process), and SLURM must accept submitit_slurm's
    options for `jobs` jobs. Raises ConfigError (one line). Warns when a job's `workers`
    trial processes would share fewer CPUs."""
    launcher = hydra_cfg.launcher
    name = launcher_name(hydra_cfg)
    if str(launcher.get("_target_", "")) != BASIC_LAUNCHER and not multirun:
        raise ConfigError(f"hydra/launcher={name} runs jobs only in a multirun: add -m (without "
                          "it Hydra runs the job here, in this process)")
    if not is_slurm(launcher):
        return
    test_submission(launcher, jobs)
    cpus = launcher.get("cpus_per_task") or 1
    if workers > cpus:
        print(f"warning: tuner.workers={workers} trains {workers} trials at once in a SLURM job "
              f"of {cpus} CPU(s); give it hydra.launcher.cpus_per_task={workers}",
              file=sys.stderr, flush=True)


def launcher_params(launcher_cfg) -> dict:
    """hydra.launcher's options as the launcher gets them (resolved, without `_target_`)."""
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(launcher_cfg, resolve=True)
    params.pop("_target_", None)
    return params


def test_submission(launcher_cfg, jobs: int) -> None:
    """`sbatch --test-only` of the script submitit would submit; ConfigError with SLURM's
    reason when SLURM would refuse it."""
    from vggsweep.job import internals

    missing = [tool for tool in ("sbatch", "sacct", "srun") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"hydra/launcher=submitit_slurm needs SLURM's {', '.join(missing)} on "
                          "PATH (run the sweep on a SLURM login node)")
    try:
        executor = make_executor("slurm", launcher_params(launcher_cfg))
        script = internals.sbatch_script(executor, jobs)
    except (ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"hydra.launcher: {_first_line(str(error))}") from None
    try:
        result = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True,
                                text=True, timeout=TEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"hydra/launcher=submitit_slurm: sbatch --test-only got no answer "
                          f"from SLURM in {TEST_TIMEOUT_S} s (is slurmctld up? `sinfo`)") from None
    if result.returncode != 0:
        said = [line.removeprefix("sbatch: error: ").strip()
                for line in result.stderr.splitlines() if "error" in line.lower()]
        why = "; ".join(said) or _first_line(result.stderr) or f"exit {result.returncode}"
        raise ConfigError(f"hydra.launcher options refused by SLURM (sbatch --test-only): {why}")


def make_executor(cluster: str, params: dict):
    """The submitit executor Hydra's plugin builds from hydra.launcher's options (the same
    translation: `max_num_timeout` and the folder to the executor, the rest as parameters)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    init_keys = {"max_num_timeout", "submitit_folder"}
    executor = submitit.AutoExecutor(
        cluster=cluster, folder=params["submitit_folder"],
        **{f"{cluster}_max_num_timeout": params[key] for key in ("max_num_timeout",)
           if key in params})
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{key if key in shared else f"{cluster}_{key}": value
                                  for key, value in params.items() if key not in init_keys})
    return executor


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id (e.g. 12_0) -> (state, why it waits) from sacct; {} when sacct fails (the next
    poll asks again)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["sacct", "-X", "--parsable2", "-o", "JobID,State,Reason"]
    for array in arrays:
        command += ["-j", array]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = SlurmInfoWatcher().read_info(output)  # submitit's parser: arrays, ranges
    return {job_id: (info.get("State", "UNKNOWN"), info.get("Reason", ""))
            for job_id, info in found.items() if job_id in job_ids}


def is_over(state: str) -> bool:
    """Whether a SLURM state is final ("CANCELLED by 0" is)."""
    return state.split(" ")[0].upper() not in UNFINISHED
