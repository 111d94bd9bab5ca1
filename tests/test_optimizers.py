"""Optimizers and learning-rate schedules."""

import keras
import pytest

from vggsweep.models import optimizers


def _rate(optimizer, step):
    schedule = optimizer.learning_rate if not hasattr(optimizer, "_learning_rate") else \
        optimizer._learning_rate
    return float(schedule(step)) if callable(schedule) else float(schedule)


def test_cosine_decays_to_zero_over_the_whole_run():
    optimizer = optimizers.build_optimizer("adam", learning_rate=1e-3, schedule="cosine",
                                           total_steps=100)
    assert _rate(optimizer, 0) == pytest.approx(1e-3)
    assert _rate(optimizer, 50) == pytest.approx(5e-4, rel=1e-3)
    assert _rate(optimizer, 100) == pytest.approx(0.0, abs=1e-9)


def test_exponential_decay_per_epoch_follows_the_data_size():
    optimizer = optimizers.build_optimizer("sgd", learning_rate=0.1, schedule="exponential",
                                           decay_epochs=1, decay_rate=0.5, staircase=True,
                                           steps_per_epoch=10)
    assert _rate(optimizer, 9) == pytest.approx(0.1) and _rate(optimizer, 10) == pytest.approx(0.05)
    s4 = optimizers.build_optimizer("adam", learning_rate=0.1, schedule="exponential",
                                    decay_steps=1000, decay_rate=0.8, staircase=True, ema=True)
    assert _rate(s4, 1000) == pytest.approx(0.08) and s4.use_ema


def test_constant_rate_and_bad_input():
    assert _rate(optimizers.build_optimizer("adam", learning_rate=3e-4), 10_000) == \
        pytest.approx(3e-4)
    with pytest.raises(ValueError, match="needs the run's total number of steps"):
        optimizers.build_optimizer("adam", schedule="cosine")
    with pytest.raises(ValueError, match="not both"):
        optimizers.build_optimizer("adam", schedule="exponential", decay_epochs=1,
                                   decay_steps=5, steps_per_epoch=3)
    assert isinstance(optimizers.build_optimizer("sgd"), keras.optimizers.SGD)


def test_builder_params_are_the_config_keys():
    keys = set(optimizers.builder_params())
    assert {"learning_rate", "schedule", "decay_epochs", "ema"} <= keys
    assert not {"name", "steps_per_epoch", "total_steps"} & keys
