"""`python -m vggsweep.worker`: train trials of a running job (keras-tuner's distributed mode).

A job with `tuner.workers=N` starts N of these itself. To add a worker on another machine, give it
the chief's address (printed by the job), the job's tuner project (a shared folder: it holds
`job.json`, written by the job) and, if the job's tracking URI is not reachable from there as
written, one that is (the same store):

    python -m vggsweep.worker --chief HOST:PORT --project /shared/tuner_state/EXP-KEY \\
        --worker-id hostb-0 [--tracking-uri http://tracking-server:5000]

Each trial it trains is a child run of the job's parent run, tagged `vggsweep.worker`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vggsweep.errors import EXIT_INFRASTRUCTURE, ConfigError, InfrastructureError, one_line


def join(args: argparse.Namespace) -> int:
    """Trains trials of the running job `args.project` until its oracle has none left."""
    project = Path(args.project).expanduser().resolve()
    if not (project / "job.json").is_file():
        raise ConfigError(f"--project {project} holds no job.json; give the tuner project the "
                          "job printed (tuner_state/<experiment>-<job key>)")
    if "chief" in args.worker_id:
        raise ConfigError(f"--worker-id {args.worker_id!r}: a worker's name may not contain "
                          "'chief' (keras-tuner reserves it)")
    host, _, port = args.chief.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--chief {args.chief!r}: give HOST:PORT, e.g. 127.0.0.1:50051")
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port,
                      KERASTUNER_TUNER_ID=args.worker_id)
    from vggsweep.job import runner
    from vggsweep.runtime import accelerator, quiet

    quiet.quiet_libraries()
    settings = json.loads((project / runner.JOB_FILE).read_text())["config"].get("accelerator")
    accelerator.limit_memory(settings)  # before anything starts the GPU
    accelerator.apply(settings)
    job = runner.Job.load(project, args.tracking_uri)
    report = job.progress(worker=args.worker_id)
    try:
        tracker = job.tracker(worker=args.worker_id)
        try:
            tuner = job.tuner(tracker, report, worker=args.worker_id)
            tuner.search(job.splits, verbose=0)
        except BaseException as error:
            tracker.close(error)  # what it can write now; the rest kept for the job's rerun
            raise
        tracker.close()
    except InfrastructureError as error:  # its trial stays ongoing: the chief stops the job,
        report.note(f"stopped: {one_line(error, 1000)}")  # whose rerun trains that trial
        return EXIT_INFRASTRUCTURE
    return 0
