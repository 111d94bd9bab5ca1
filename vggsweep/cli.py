"""What every vggsweep command shares: one-line errors, exit codes, the store arguments.

    def main(argv=None) -> int:
        return cli.run(_main, argv, _parser())

Bad input (a usage error, an unknown experiment, a bad value) is one `error: ...` line on stderr
and exit status 2; an interrupt (Ctrl-C, SIGTERM) exits 130 once the store write under way
is done; nothing prints a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vggsweep.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ConfigError,
    InfrastructureError,
    ResultsError,
    one_line,
)
from vggsweep.runtime import collector, interrupts
from vggsweep.tracking import store


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one `error: ...` line and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {message}\n")


def parser(prog: str, description: str, *, experiment: bool = True) -> OneLineErrorParser:
    """A parser with the arguments that name a store (`--tracking-uri`, `--experiment`)."""
    result = OneLineErrorParser(prog=prog, description=description)
    if experiment:
        result.add_argument("--experiment", required=True, help="MLflow experiment name")
    result.add_argument("--tracking-uri", help=store.TRACKING_URI_HELP)
    return result


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def tracking_uri(args: argparse.Namespace) -> str:
    """The store a command reads: --tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    return store.resolve_uri(getattr(args, "tracking_uri", None))


def run(main_body: Callable[[argparse.Namespace], int], argv: Sequence[str] | None,
        arguments: argparse.ArgumentParser) -> int:
    """Parses `argv` and runs `main_body(args)`; bad input -> one stderr line, exit status 2."""
    try:
        args = arguments.parse_args(argv)
    except SystemExit as exit_request:  # --help (0) or a usage error (2), already printed
        return int(exit_request.code or 0)
    try:
        with interrupts.handled(), collector.paused():  # see `collector`: imports, then training
            return main_body(args)
    except (ResultsError, ConfigError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except InfrastructureError as error:  # the store away past the bound, a full disk
        print(f"error: {one_line(error, 1000)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if type(error).__name__ != "MlflowException":
            raise
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
