"""Sweeps on a real single-node SLURM cluster (`tests/slurm_cluster.py`: munged, MariaDB and
slurmdbd for sacct, slurmctld, slurmd, started once for this module, stopped by PID): the smoke
sweep, a job SLURM cancels while the other runs, a job that hits its time limit and finishes
through requeues, a preempted job, and a partition SLURM refuses. They skip, with the reason,
only where SLURM's packages are not installed (`.ci/run` installs them) or not as root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest
import slurm_cluster
from conftest import cli_env

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug"]
TINY_MLP = ["model=mlp", "data=digits", "budget=smoke"]
JOB_KEY = "vggsweep.job_key"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurm_cluster.missing_programs()
    if missing:
        pytest.skip(f"SLURM is not installed (missing {', '.join(missing)}); .ci/run installs "
                    "Debian's slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core "
                    "mariadb-client-core")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons run as root: run the SLURM tests as root")
    started = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    yield started
    started.stop()


class Sweep:
    """`python -m vggsweep ...` in the background against the test cluster, its output in files
    (read while it runs)."""

    def __init__(self, cluster, home: Path, args: list[str]):
        self.cluster, self.home = cluster, home
        self.out, self.err = home / "sweep.out", home / "sweep.err"
        env = {**cli_env(home), **cluster.env}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "vggsweep", *args],
                                            cwd=home, env=env, stdout=out, stderr=err)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.out.read_text())
            if found:
                return found
            assert self.process.poll() is None, f"the sweep ended first:\n{self.output()}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} after {timeout} s:\n{self.output()}")

    def finish(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            message = f"the sweep did not end in {timeout} s:\n{self.output()}"
            raise AssertionError(message) from None

    def output(self) -> str:
        """The sweep's output, and what SLURM's daemons logged about its jobs (a failure's
        evidence: the signals they sent, when)."""
        out = self.out.read_text()
        jobs = sorted(set(re.findall(r"SLURM job (\d+)", out)))
        pattern = re.compile(r"\b(?:JobId=|StepId=|job |\[)(?:" + "|".join(jobs) + r")\b"
                             if jobs else r"(?!)")
        logs = []
        for daemon in ("slurmctld", "slurmd"):
            path = self.cluster.log_dir / f"{daemon}.log"
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if pattern.search(line) or "signal" in line.lower()] if path.exists() else []
            logs.append(f"--- {daemon}.log (lines about jobs {', '.join(jobs) or '-'}) ---\n"
                        + "\n".join(lines[-40:]))
        return "\n".join([out[-4000:], "--- stderr ---", self.err.read_text()[-4000:], *logs])

    def sacct(self, job_id: str, wait: float = 30.0) -> list[str]:
        """Every run of a job (requeued ones too) as `JobID State`, once SLURM's accounting has
        recorded how each ended (it lags a job's end by a moment; at most `wait` s)."""
        deadline = time.monotonic() + wait
        while True:
            result = self.cluster.run("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State",
                                      "-j", job_id)
            runs = [line.replace("|", " ") for line in result.stdout.splitlines()]
            states = [run.split()[-1] for run in runs]
            settled = (runs and not {"PENDING", "RUNNING"} & set(states)
                       and states[-1] != "REQUEUED")
            if settled or time.monotonic() > deadline:
                return runs
            time.sleep(1)

    def runs(self) -> list:
        return helpers.experiment_runs(f"sqlite:///{self.home / 'mlflow.db'}", "vggsweep")


def test_a_smoke_sweep_runs_as_slurm_jobs_and_shows_their_progress(cluster, tmp_path):
    sweep = Sweep(cluster, tmp_path, ["-m", "model=cnn,mlp", "activation=relu", "data=digits",
                                      "budget=smoke", *SLURM])
    assert sweep.finish(300) == 0, sweep.output()
    out = sweep.out.read_text()
    array = re.search(r"SLURM job (\d+)_0", out).group(1)
    assert sorted(sweep.sacct(array)) == [f"{array}_0 COMPLETED", f"{array}_1 COMPLETED"]
    runs = sweep.runs()
    assert [r.info.status for r in runs] == ["FINISHED"] * 6  # 2 jobs, 2 trials each
    # the terminal followed the jobs: their state and their own progress lines
    assert re.search(r"\[job 1/2\] SLURM job \d+_0: running", out), out
    assert "[job 2/2 mlp-relu] trial 2/2 done" in out and "[job 1/2 cnn-relu] finished" in out
    sweep_dir = Path(re.search(r"leaderboard: (.*)/leaderboard.csv", out).group(1))
    assert (sweep_dir / "report.html").is_file()
    assert re.search(r"^best: \S+/trial-\d+ ", out, re.M), out  # the sweep's best, ranked


def test_a_cancelled_job_is_a_failed_job_and_the_sweep_waits_for_the_other(cluster, tmp_path):
    sweep = Sweep(cluster, tmp_path, ["-m", *TINY_MLP, "activation=relu,tanh",
                                      "budget.max_trials=12", *SLURM])
    array = sweep.wait_for(r"SLURM job (\d+)_0: running", 120).group(1)
    sweep.wait_for(r"\[job 1/2 mlp-relu\] trial 1/12 started", 120)
    cluster.run("scancel", f"{array}_0")
    code = sweep.finish(300)
    out, err = sweep.out.read_text(), sweep.err.read_text()
    assert code == 1, sweep.output()
    assert "1/2 jobs failed" in err and "Traceback" not in err + out, sweep.output()
    assert re.search(rf"job mlp-relu .* failed: interrupted \(SLURM job {array}_0 ended "
                     r"CANCELLED", err), err
    # it returned only once the other job had ended, finished
    assert sorted(state.split()[1] for state in sweep.sacct(array)) == ["CANCELLED", "COMPLETED"]
    assert out.index("[job 2/2 mlp-tanh] finished") < out.index("leaderboard: ")
    runs = sweep.runs()
    assert "RUNNING" not in [r.info.status for r in runs]
    parents = {r.data.tags["activation"]: r for r in runs if r.data.tags.get(helpers.ROLE) == "job"}
    assert parents["relu"].info.status == "KILLED"
    tanh = [r for r in runs if r.data.tags[JOB_KEY] == parents["tanh"].data.tags[JOB_KEY]]
    assert [r.info.status for r in tanh] == ["FINISHED"] * 13  # its run and its 12 trials


def test_a_job_at_its_time_limit_requeues_and_resumes_to_the_end(cluster, tmp_path):
    """A job interrupted by its time limit (SLURM's warning, 60 s before it) ends its trial
    KILLED, requeues itself (vggsweep's max_num_timeout) and resumes. The search is open-ended
    and stops at its deadline (`budget.time_limit_s`, counted in each run of the job). SLURM
    sends the warning 30 to 60 s into the first run (60 s before its 2-minute limit; slurmctld
    checks time limits every 30 s) and the deadline is well past that, so only the warning can
    end the first run; once the job has requeued the test grants it more time, so that it ends
    in its second run however fast this machine trains."""
    sweep = Sweep(cluster, tmp_path, ["-m", *TINY_MLP, "activation=relu",
                                      "budget.max_trials=1000", "budget.time_limit_s=100",
                                      "hydra.launcher.timeout_min=2",
                                      "hydra.launcher.signal_delay_s=60", *SLURM])
    job = sweep.wait_for(r"SLURM job (\d+): running", 120).group(1)
    sweep.wait_for(r"\[job 1\] time limit: SLURM's warning signal", 150)
    cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")
    assert sweep.finish(420) == 0, sweep.output()
    out = sweep.out.read_text()
    # SLURM's state, asked every 10 s: REQUEUED for a moment, then PENDING until the hold ends
    assert re.search(rf"SLURM job {job}: (requeued|pending \(requeued)", out), out
    assert sweep.sacct(job)[0] == f"{job} REQUEUED" and sweep.sacct(job)[-1] == f"{job} COMPLETED"
    trials = [r for r in sweep.runs() if r.data.tags.get(helpers.ROLE) == "trial"]
    statuses = {r.info.status for r in trials}
    assert statuses == {"FINISHED", "KILLED"}, statuses
    finished = {r.data.tags[helpers.TRIAL_ID] for r in trials if r.info.status == "FINISHED"}
    for killed in (r for r in trials if r.info.status == "KILLED"):
        assert killed.data.tags["vggsweep.failure_reason"] == "time limit"
        assert killed.data.tags[helpers.TRIAL_ID] in finished  # run again, to the end


def test_a_preempted_job_requeues_and_no_trial_it_interrupts_is_failed(cluster, tmp_path):
    """Preemption with a signal (`PreemptParameters=send_user_signal`; here `scancel
    --signal=USR2`) while the job trains: the trial ends KILLED "preempted" and runs again after
    the requeue. Wherever the signal lands (TensorFlow once turned it into a "None values not
    supported" error, and the trial was FAILED), no run is FAILED."""
    sweep = Sweep(cluster, tmp_path, ["-m", *TINY_MLP, "activation=relu",
                                      "budget.max_trials=12", *SLURM])
    job = sweep.wait_for(r"SLURM job (\d+): running", 120).group(1)
    sweep.wait_for(r"\[job 1/1 mlp-relu\] trial 2/12 started", 120)
    cluster.run("scancel", "--signal=USR2", job)
    assert sweep.finish(300) == 0, sweep.output()
    out = sweep.out.read_text()
    assert "[job 1] preempted: SLURM's warning signal" in out, sweep.output()
    assert sweep.sacct(job) == [f"{job} REQUEUED", f"{job} COMPLETED"], sweep.output()
    runs = sweep.runs()
    assert "FAILED" not in {r.info.status for r in runs}, sweep.output()
    trials = [r for r in runs if r.data.tags.get(helpers.ROLE) == "trial"]
    finished = {r.data.tags[helpers.TRIAL_ID] for r in trials if r.info.status == "FINISHED"}
    assert len(finished) == 12
    for killed in (r for r in trials if r.info.status == "KILLED"):
        assert killed.data.tags["vggsweep.failure_reason"] == "preempted"
        assert killed.data.tags[helpers.TRIAL_ID] in finished  # run again, to the end


def test_a_partition_slurm_refuses_is_one_line_and_creates_nothing(cluster, tmp_path):
    sweep = Sweep(cluster, tmp_path, ["-m", "model=cnn,mlp", "activation=relu",
                                      "data=digits", "budget=smoke",
                                      "hydra/launcher=submitit_slurm",
                                      "hydra.launcher.partition=nosuch"])
    assert sweep.finish(120) == 2, sweep.output()
    err = sweep.err.read_text()
    assert err.count("\n") == 1 and err.startswith("error: ") and "nosuch" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.err", "sweep.out"]
