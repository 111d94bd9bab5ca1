"""Progress lines: one per job and per trial, readable in a terminal and in a CI log."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Prints `[job i/N name] trial j/M ...` lines with elapsed time, best so far and ETA."""

    def __init__(self, job_index: int, job_total: int | None, name: str, max_trials: int | None,
                 verbose: int = 1, stream=None, worker: str | None = None):
        total = job_total or "?"
        self.prefix = f"[job {job_index}/{total} {name}{' ' + worker if worker else ''}]"
        self.max_trials = max_trials
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()
        self.done = 0
        self.best = None
        self.trial_started = self.started

    def _print(self, text: str, level: int = 1) -> None:
        if self.verbose >= level:
            print(f"{self.prefix} {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        self._print(text, level=0)

    def trial_begin(self, trial_id: str, values: dict) -> None:
        self.trial_started = time.perf_counter()
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if not k.startswith("tuner/"))
        self._print(f"trial {self._position(trial_id)} started: {shown}")

    def _position(self, trial_id: str) -> str:
        total = self.max_trials or "?"
        return f"{int(trial_id) + 1}/{total}"

    def trial_end(self, trial_id: str, val_accuracy: float, test_accuracy: float,
                  train_time_s: float, note: str | None = None) -> None:
        self.done += 1
        self.best = val_accuracy if self.best is None else max(self.best, val_accuracy)
        elapsed = time.perf_counter() - self.started
        eta = ""
        if self.max_trials:
            remaining = max(self.max_trials - int(trial_id) - 1, 0)
            eta = f", eta {_clock(elapsed / self.done * remaining)}"
        why = f" ({note})" if note else ""
        self._print(
            f"trial {self._position(trial_id)} done in {train_time_s:.1f}s{why}: val_accuracy "
            f"{val_accuracy:.4f} (best {self.best:.4f}), test_accuracy {test_accuracy:.4f}; "
            f"elapsed {_clock(elapsed)}{eta}"
        )

    def trial_failed(self, trial_id: str, reason: str) -> None:
        self._print(f"trial {self._position(trial_id)} FAILED: {reason}", level=0)

    def job_end(self, completed: int, failed: int, best_val: float | None,
                best_test: float | None, pruned: int = 0) -> None:
        best = "" if best_val is None else (
            f"; best val_accuracy {best_val:.4f}, its test_accuracy {best_test:.4f}")
        of_them = f" ({pruned} pruned)" if pruned else ""
        self._print(
            f"finished in {_clock(time.perf_counter() - self.started)}: {completed} trials "
            f"completed{of_them}, {failed} failed{best}", level=0)
