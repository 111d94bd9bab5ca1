"""`python -m vggsweep.confidence`: retrain the top-k configurations of a sweep with several
seeds (see `vggsweep.outputs.confidence`).

    python -m vggsweep.confidence --experiment activations --top 3 --seeds 5
"""

from __future__ import annotations

import argparse
import sys

from vggsweep import cli
from vggsweep.outputs.confidence import format_summary, run_confidence


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m vggsweep.confidence",
                        "Retrain the best configurations of a sweep with several seeds.")
    parser.add_argument("--sweep", default=None, help="only trials of this sweep dir")
    parser.add_argument("--top", type=cli.positive_int, default=3,
                        help="configurations to retrain (the best on validation)")
    parser.add_argument("--seeds", type=_seeds, default=5,
                        help="seeds per configuration (>= 2: a confidence interval needs two)")
    return parser


def _seeds(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 (a 95% interval needs at "
                                         f"least two seeds), got {text!r}")
    return int(text)


def _confidence_main(args: argparse.Namespace) -> int:
    summary = run_confidence(cli.tracking_uri(args), args.experiment, args.top, args.seeds,
                             args.sweep)
    print(format_summary(summary))
    return 0


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(_confidence_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
