"""Is the winner really better? Two trials compared on the same validation images.

Every finished trial records which validation images it classified right, packed into tags of its
run (`vggsweep.val_correct`: one bit per image, zlib-compressed, base64; a few hundred characters
for MNIST's 6,000 validation images). Two trials validated on the same images (the same split:
the fingerprint of its labels is in the tag) are compared image by image: the margin is the
difference in images right, and McNemar's exact test asks whether the images only one of them got
right split more unevenly than chance (a fair coin) would split them. Pure NumPy and SciPy: the
leaderboard, the report and the job's summary use it without TensorFlow.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from vggsweep.tracking.store import VAL_CORRECT

FORMAT = "v1"
#: MLflow keeps at most 8,000 characters per tag; longer records continue in `<tag>.1`, ...
CHUNK = 7_900
#: Trials after the best compared with it in the leaderboard (and every reference trial).
TOP_COMPARED = 10
#: Below this p-value the difference is called real; at or above it, "within noise".
ALPHA = 0.05


def fingerprint(labels) -> str:
    """A short hash of the validation labels, in order: two trials with the same fingerprint
    were validated on the same images."""
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()[:12]


def encode(correct, labels) -> dict[str, str]:
    """The tags that record `correct` (a boolean per validation image) for labels `labels`."""
    correct = np.asarray(correct, dtype=bool)
    packed = base64.b64encode(zlib.compress(np.packbits(correct).tobytes(), 9)).decode("ascii")
    text = f"{FORMAT}:{len(correct)}:{fingerprint(labels)}:{packed}"
    chunks = [text[start:start + CHUNK] for start in range(0, len(text), CHUNK)]
    return {VAL_CORRECT if index == 0 else f"{VAL_CORRECT}.{index}": chunk
            for index, chunk in enumerate(chunks)}


@dataclass(frozen=True)
class Record:
    """Which validation images a trial got right, and on which split."""

    correct: np.ndarray  # bool, one per validation image
    split: str  # the fingerprint of the validation labels


def decode(tags) -> Record | None:
    """The record in a run's tags; None when there is none (pruned, failed, older runs) or it is
    unreadable."""
    text = tags.get(VAL_CORRECT)
    if not text:
        return None
    index = 1
    while f"{VAL_CORRECT}.{index}" in tags:
        text += tags[f"{VAL_CORRECT}.{index}"]
        index += 1
    try:
        version, count, split, packed = text.split(":", 3)
        bits = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8)
        correct = np.unpackbits(bits)[: int(count)].astype(bool)
    except (ValueError, zlib.error):
        return None
    if version != FORMAT or len(correct) != int(count):
        return None
    return Record(correct, split)


@dataclass(frozen=True)
class Margin:
    """How much better trial A did than trial B on the same validation images."""

    images: int  # images A got right minus images B got right
    total: int  # validation images
    only_a: int  # images A got right and B wrong
    only_b: int  # images B got right and A wrong
    p_value: float  # McNemar's exact test, two-sided

    @property
    def within_noise(self) -> bool:
        return not self.p_value < ALPHA

    def metrics(self, prefix: str) -> dict[str, float]:
        """The margin as metrics of a run: `<prefix>_images` and `<prefix>_p`."""
        return {f"{prefix}_images": float(self.images), f"{prefix}_p": self.p_value}

    def describe(self, other: str) -> str:
        """`3 of 216 validation images more than trial-2 (5 vs 2 where they disagree; McNemar
        p = 0.45: within noise)`."""
        return describe(self.images, self.total, self.p_value, other, (self.only_a, self.only_b))


def describe(images: int, total: int | None, p_value: float, other: str,
             disagreements: tuple[int, int] | None = None) -> str:
    """A margin in words: how many validation images more (or fewer) than `other`, and whether
    McNemar's test calls it noise."""
    of = f" of {total}" if total else ""
    noun = "image" if abs(images) == 1 and not total else "images"  # "1 of 216 images"
    lead = (f"as many validation images right as {other}" if images == 0 else
            f"{abs(images)}{of} validation {noun} {'more' if images > 0 else 'fewer'} than "
            f"{other}")
    where = (f"{disagreements[0]} vs {disagreements[1]} where they disagree; "
             if disagreements else "")
    verdict = "within noise" if not p_value < ALPHA else f"significant at {ALPHA:g}"
    return f"{lead} ({where}McNemar p = {p_value:.2g}: {verdict})"


def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the discordant pairs."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    from scipy import stats

    return float(stats.binomtest(only_a, discordant, 0.5).pvalue)


def compare(a: Record | None, b: Record | None) -> Margin | None:
    """A's margin over B; None unless both were recorded on the same validation images."""
    if a is None or b is None or a.split != b.split or len(a.correct) != len(b.correct):
        return None
    only_a = int(np.sum(a.correct & ~b.correct))
    only_b = int(np.sum(b.correct & ~a.correct))
    return Margin(only_a - only_b, len(a.correct), only_a, only_b, mcnemar_p(only_a, only_b))


def mark_behind_best(trials, records: dict):
    """Fills `behind_best_images` and `behind_best_p` of a ranked trial table: how many
    validation images fewer than the best each of the next `TOP_COMPARED` trials (and every
    reference trial) got right, and McNemar's p of that difference. `records`: run id -> Record.
    Rows that cannot be compared (another split, nothing recorded) stay empty."""
    ranked = trials[trials["rank"].notna()]
    best_id = ranked["run_id"].iloc[0] if len(ranked) else None
    best = records.get(best_id)
    if best is None:
        return trials
    trials = trials.copy()
    compared = set(ranked["run_id"].iloc[: TOP_COMPARED + 1])
    compared |= set(trials.loc[trials["reference"].fillna(False).astype(bool), "run_id"])
    for index, run_id in trials["run_id"].items():
        margin = compare(best, records.get(run_id)) if run_id in compared else None
        if margin is not None:
            trials.loc[index, "behind_best_images"] = margin.images
            if run_id != best_id:
                trials.loc[index, "behind_best_p"] = margin.p_value
    return trials
