"""Progress lines: one per job and per trial, readable in a terminal and in a CI log."""

from __future__ import annotations

import sys
import time

from vggsweep.tracking import store


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
        return f"{store.trial_number(trial_id)}/{self.max_trials or '?'}"

    def trial_end(self, trial_id: str, val_accuracy: float, test_accuracy: float,
                  train_time_s: float, note: str | None = None) -> None:
        self.done += 1
        self.best = val_accuracy if self.best is None else max(self.best, val_accuracy)
        elapsed = time.perf_counter() - self.started
        eta = ""
        if self.max_trials:
            number = store.trial_number(trial_id)
            remaining = max(self.max_trials - number, 0) if isinstance(number, int) else 0
            eta = f", eta {_clock(elapsed / self.done * remaining)}"
        why = f" ({note})" if note else ""
        self._print(
            f"trial {self._position(trial_id)} done in {train_time_s:.1f}s{why}: val_accuracy "
            f"{val_accuracy:.4f} (best {self.best:.4f}), test_accuracy {test_accuracy:.4f}; "
            f"elapsed {_clock(elapsed)}{eta}"
        )

    def trial_failed(self, trial_id: str, reason: str) -> None:
        self._print(f"trial {self._position(trial_id)} FAILED: {reason}", level=0)

    def job_end(self, finished: int, pruned: int, failed: int, best: str = "") -> None:
        """The job's last line: its trials by outcome (a pruned trial is counted as pruned, not
        as finished) and, when one finished, its best trial (`best`)."""
        total = finished + pruned + failed
        self._print(
            f"finished in {_clock(time.perf_counter() - self.started)}: {total} "
            f"{'trial' if total == 1 else 'trials'}: {finished} finished, {pruned} pruned, "
            f"{failed} failed{'; ' + best if best else ''}", level=0)
