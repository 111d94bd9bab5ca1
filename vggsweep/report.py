"""`python -m vggsweep.report`: rebuild a sweep's report (and leaderboard, plots) from the store.

    python -m vggsweep.report --sweep-dir multirun/2025-01-01/12-00-00 --experiment mnist

The page itself is `vggsweep.outputs.page`; what goes into it is read back by
`vggsweep.outputs.sweep`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vggsweep import cli
from vggsweep.outputs import sweep


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m vggsweep.report",
                        "Rebuild report.html of a sweep from what MLflow recorded.")
    parser.add_argument("--sweep-dir", required=True,
                        help="the Hydra sweep dir (report.html goes there)")
    return parser


def _report_main(args: argparse.Namespace) -> int:
    print(sweep.write_report(args.sweep_dir, cli.tracking_uri(args), args.experiment))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(_report_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
