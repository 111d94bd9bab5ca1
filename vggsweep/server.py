"""`python -m vggsweep.server` (`make server`): an MLflow tracking server on PostgreSQL (see
`vggsweep.tracking.server`).

    python -m vggsweep.server --port 5055 --dir mlflow_server
"""

from __future__ import annotations

import argparse
import sys

from vggsweep import cli
from vggsweep.tracking import server, store


def _parser() -> argparse.ArgumentParser:
    parser = cli.OneLineErrorParser(prog="python -m vggsweep.server",
                                    description=server.__doc__.splitlines()[0])
    parser.add_argument("--port", type=cli.positive_int, default=5000,
                        help="the tracking server's port on 127.0.0.1")
    parser.add_argument("--dir", default=str(store.launch_dir() / "mlflow_server"),
                        help="PostgreSQL's data, the artifacts and the logs")
    parser.add_argument("--app-name", default=None,
                        help="an MLflow server app, e.g. basic-auth (needs mlflow[auth])")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address the tracking server listens on (PostgreSQL always "
                        "listens on 127.0.0.1); another than 127.0.0.1 needs --allowed-hosts")
    parser.add_argument("--allowed-hosts", default=None,
                        help="MLflow's host protection: the Host headers it accepts, e.g. "
                        "'tracking.lab.example:5000,10.0.0.5:5000'")
    return parser



def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(server.serve, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
