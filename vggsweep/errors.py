"""Every user-facing exception of vggsweep, and the exit code each one means.

This module imports nothing from the package, so any module may raise these without an import
cycle. A message is the one line the user sees after `error: `; it names what is wrong and what
is valid.
"""

from __future__ import annotations

#: Exit codes of every command: all done, some job failed, bad input, interrupted.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
#: A job's worker process stopped by the infrastructure (its trial runs again): its chief stops.
EXIT_INFRASTRUCTURE = 75


class VggsweepError(Exception):
    """Base of the errors below; `str(error)` is one line."""


class ConfigError(VggsweepError, ValueError):
    """Bad user input: a config key or value, an override, a CLI argument."""


class SpecError(ConfigError):
    """A search spec that does not follow the fixed-or-searched grammar."""


class ModelConfigError(ConfigError):
    """A model configuration that cannot be built (a value, or a map that does not fit)."""


class DataError(ConfigError):
    """Data that cannot be found, read, or used (shape, dtype, labels)."""


class StateError(ConfigError):
    """A job's saved tuner state cannot be read."""


class StoreError(ConfigError):
    """A tracking URI that is unknown, unreachable or unusable."""


class ResultsError(VggsweepError, ValueError):
    """Bad input to the results commands: unknown store, experiment, sweep, metric, column."""


class TrialError(VggsweepError, RuntimeError):
    """A trial that failed in a way the search expects (recorded, then the search goes on)."""


class NonFiniteLoss(TrialError):
    """Training diverged: the loss became NaN or infinite."""


class InfrastructureError(VggsweepError, RuntimeError):
    """The infrastructure failed a job, not its trials (the tracking store is unreachable, a
    disk is full): the trial under way is left to run again when the sweep is rerun."""


class TrackingUnavailable(InfrastructureError):
    """The tracking store did not answer within `tracking.outage_s`."""


class DiskFull(InfrastructureError):
    """A write failed for lack of space; the message names the path and the space needed."""


class SweepStopped(BaseException):
    """Raised by a job run in the launching process after an `InfrastructureError`, through
    Hydra's launcher, so that no further job starts (a BaseException: Hydra catches the
    others and goes on with the next job)."""

    def __init__(self, cause: InfrastructureError, line: str = "", index: int = 1):
        super().__init__(line or str(cause))
        self.cause, self.line, self.index = cause, line or str(cause), index


def exit_code(error: BaseException) -> int:
    """The exit code that `error` means for a command."""
    if isinstance(error, (KeyboardInterrupt,)):
        return EXIT_INTERRUPTED
    if isinstance(error, (ConfigError, ResultsError)):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def one_line(error: BaseException, limit: int = 500) -> str:
    """The first meaningful line of an error (its type when it has no message), shortened."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:limit]
