"""`python -m vggsweep.leaderboard`: rank the trials of a recorded sweep (see
`vggsweep.outputs.leaderboard`).

    python -m vggsweep.leaderboard --experiment mnist --top 10
    python -m vggsweep.leaderboard --experiment mnist --group-by model,activation --out best.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vggsweep import cli
from vggsweep.outputs.leaderboard import (
    check_table_format,
    constants_line,
    display_view,
    format_console,
    group_best,
    write_table,
)
from vggsweep.tracking import results
from vggsweep.tracking.results import rank_trials


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "python -m vggsweep.leaderboard",
        "Rank the trials of a recorded sweep on validation accuracy "
        "(test accuracy is shown, never used to rank).",
    )
    parser.add_argument("--sweep", help="only jobs of this sweep dir (path or its last components)")
    parser.add_argument("--model", help="only trials of this model option, e.g. cnn")
    parser.add_argument("--status", help="only runs with this status: finished, pruned, failed, "
                        "killed")
    parser.add_argument("--top", type=cli.positive_int, help="show the best N rows")
    parser.add_argument("--by", default="val_accuracy",
                        help=f"rank on this metric: {', '.join(results.ALL_METRICS)}")
    parser.add_argument("--group-by", help="best trial per group, e.g. model,activation")
    parser.add_argument("--out", help="also write the table to FILE (.csv, .md or .html)")
    return parser


def _leaderboard_main(args: argparse.Namespace) -> int:
    results.check_metric(args.by)
    if args.out:
        check_table_format(args.out)
    trials = results.load_trials(
        cli.tracking_uri(args), args.experiment,
        sweep=args.sweep, model=args.model, status=args.status,
    )
    if args.group_by:
        columns = [c.strip() for c in args.group_by.split(",") if c.strip()]
        table = group_best(trials, columns, args.by)
    else:
        table = rank_trials(trials, args.by)
    if args.top:
        table = table.head(args.top)
    if table.empty:
        print("no trials match", file=sys.stderr)
    else:
        shown, constants = display_view(table, args.by, extras=False)
        if constants:
            print(constants_line(constants))
        print(format_console(shown))
    if args.out:
        write_table(table, args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(_leaderboard_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
