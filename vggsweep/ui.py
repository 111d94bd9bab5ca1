"""`python -m vggsweep.ui`: the MLflow UI over a vggsweep store, opening in the model-training view.

    python -m vggsweep.ui                      # ./mlflow.db on http://127.0.0.1:5000
    python -m vggsweep.ui --tracking-uri sqlite:///runs/mlflow.db --port 5001

Prints the link of every experiment's runs (grouped by job, the accuracy columns on), then runs
`mlflow ui` with vggsweep's app plugin (`vggsweep.tracking.ui_app`) until Ctrl-C. Binds
127.0.0.1 unless `--host` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from vggsweep import cli
from vggsweep.errors import EXIT_INTERRUPTED, ResultsError
from vggsweep.tracking import store, ui


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m vggsweep.ui",
                        "The MLflow UI over a vggsweep store, in the model-training view.",
                        experiment=False)
    parser.add_argument("--port", type=cli.positive_int, default=ui.DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    return parser


def command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line (with the app plugin when it is installed)."""
    line = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port), "--workers", "1"]
    return line + (["--app-name", ui.APP_NAME] if ui.app_installed() else [])


def _ui_main(args: argparse.Namespace) -> int:
    uri = cli.tracking_uri(args)
    path = store.local_store_path(uri)
    if path is not None and not path.exists():
        raise ResultsError(f"no MLflow store at {path}; run a sweep first (make demo) or pass "
                           "--tracking-uri")
    base = f"http://{args.host}:{args.port}"
    for line in ui.links(uri, base):
        print(line, flush=True)
    if not ui.app_installed():
        print("warning: vggsweep's MLflow app is not installed (make install): entering from "
              "the home page opens MLflow's GenAI view", file=sys.stderr, flush=True)
    print(f"MLflow UI over {uri} on {base} (Ctrl-C stops it)", flush=True)
    server = subprocess.Popen(command(uri, args.host, args.port), env=os.environ.copy())
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return cli.run(_ui_main, argv, _parser())


if __name__ == "__main__":
    sys.exit(main())
