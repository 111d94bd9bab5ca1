"""Quiet by default: libraries' start-up notes and logs kept out of a sweep's output, per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

#: What TensorFlow's native code prints on a CPU-only machine, and is no problem: notes on
#: oneDNN, on missing CUDA drivers, "failed call to cuInit", CPU instruction sets.
BENIGN = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations"
    r"|cudart_stub\.cc|cuda_platform\.cc:\d+\] failed call to cuInit|cuda_executor|"
    r"cpu_feature_guard|To enable the following instructions|rebuild TensorFlow with the "
    r"appropriate compiler flags|computation_placer|TF-TRT Warning|Unable to register cu")


@contextlib.contextmanager
def native_quiet():
    """Hides what native libraries print on stderr meanwhile when it is benign (`BENIGN`);
    anything else still reaches stderr, after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines()
                    if line.strip() and not BENIGN.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Per process (Hydra's parallel launchers start new ones): libraries' logs to warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-creation notes
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one per run
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar
    for name in ("mlflow", "alembic", "tensorflow", "absl", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)
