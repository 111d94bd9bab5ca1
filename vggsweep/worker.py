"""`python -m vggsweep.worker`: train trials of a running job (see `vggsweep.job.worker`).

    python -m vggsweep.worker --chief HOST:PORT --project /shared/tuner_state/EXP-KEY \\
        --worker-id hostb-0 [--tracking-uri http://tracking-server:5000]
"""

from __future__ import annotations

import argparse
import sys

from vggsweep import cli
from vggsweep.job import worker


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m vggsweep.worker", "Train trials of a running vggsweep job.",
                        experiment=False)
    parser.add_argument("--chief", required=True, help="the job's oracle, HOST:PORT")
    parser.add_argument("--project", required=True, help="the job's tuner project folder")
    parser.add_argument("--worker-id", required=True,
                        help="a name unique in the job (a restarted worker keeps its name)")
    return parser



def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(worker.join, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
