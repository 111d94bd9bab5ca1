"""Is the winner really better (vggsweep.tracking.agreement): which validation images a trial got
right, recorded compactly in tags, and the best compared with another trial by McNemar's test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vggsweep.tracking import agreement
from vggsweep.tracking.store import VAL_CORRECT

LABELS = np.arange(216) % 10


def _correct(wrong, n: int = 216) -> np.ndarray:
    correct = np.ones(n, dtype=bool)
    correct[list(wrong)] = False
    return correct


def test_a_record_round_trips_through_tags_and_stays_small():
    correct = np.random.default_rng(0).random(6000) < 0.98  # MNIST's validation split
    tags = agreement.encode(correct, np.arange(6000) % 10)
    assert list(tags) == [VAL_CORRECT] and len(tags[VAL_CORRECT]) < 1500
    record = agreement.decode(tags)
    assert record.correct.dtype == bool and np.array_equal(record.correct, correct)


def test_a_long_record_continues_in_numbered_tags():
    correct = np.random.default_rng(1).random(100_000) < 0.5  # incompressible
    tags = agreement.encode(correct, np.zeros(100_000, dtype=int))
    assert len(tags) > 1 and all(len(value) <= agreement.CHUNK for value in tags.values())
    assert f"{VAL_CORRECT}.1" in tags
    assert np.array_equal(agreement.decode(tags).correct, correct)
    assert agreement.decode({VAL_CORRECT: tags[VAL_CORRECT]}) is None  # a chunk missing


@pytest.mark.parametrize("tags", [{}, {VAL_CORRECT: "garbage"}, {VAL_CORRECT: "v9:3:abc:AAAA"}])
def test_missing_or_unreadable_records_are_none(tags):
    assert agreement.decode(tags) is None


def test_the_margin_counts_images_and_tests_the_disagreements():
    best = agreement.decode(agreement.encode(_correct([0, 1]), LABELS))
    other = agreement.decode(agreement.encode(_correct([2, 3, 4, 5, 6, 7, 8]), LABELS))
    margin = agreement.compare(best, other)
    assert (margin.images, margin.total, margin.only_a, margin.only_b) == (5, 216, 7, 2)
    assert margin.p_value == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue)
    assert margin.within_noise
    assert margin.describe("cnn-relu/trial-2") == (
        "5 of 216 validation images more than cnn-relu/trial-2 (7 vs 2 where they disagree; "
        f"McNemar p = {margin.p_value:.2g}: within noise)")
    assert agreement.compare(other, best).images == -5


def test_a_clear_margin_is_called_significant():
    best = agreement.decode(agreement.encode(_correct([]), LABELS))
    other = agreement.decode(agreement.encode(_correct(range(20)), LABELS))
    margin = agreement.compare(best, other)
    assert margin.p_value < 1e-5 and not margin.within_noise
    assert "significant at 0.05" in margin.describe("x")
    assert margin.metrics("margin_runner_up") == {"margin_runner_up_images": 20.0,
                                                  "margin_runner_up_p": margin.p_value}


def test_identical_predictions_are_noise_and_other_splits_are_not_compared():
    same = agreement.decode(agreement.encode(_correct([3]), LABELS))
    assert agreement.compare(same, same).p_value == 1.0
    elsewhere = agreement.decode(agreement.encode(_correct([3]), LABELS[::-1]))
    assert agreement.compare(same, elsewhere) is None
    assert agreement.compare(same, None) is None
