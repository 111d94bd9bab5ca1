"""The fixed-or-searched grammar."""

import keras_tuner as kt
import pytest

from vggsweep.config import space


def test_plain_values_are_fixed_and_specs_are_searched():
    fixed, specs = space.split({"filters": 32, "dropout": {"min": 0.0, "max": 0.5, "step": 0.1}})
    assert fixed == {"filters": 32}
    assert specs == {"dropout": {"min": 0.0, "max": 0.5, "step": 0.1}}


@pytest.mark.parametrize(
    "spec, kind, points",
    [
        ({"choice": [16, 32, 64]}, int, [16, 32, 64]),
        ({"min": 1, "max": 3, "step": 1}, int, [1, 2, 3]),
        ({"min": 1, "max": 3}, int, [1, 2, 3]),
        ({"min": 0.0, "max": 0.2, "step": 0.1}, float, [0.0, 0.1, 0.2]),
        ({"min": 1e-4, "max": 1e-2, "sampling": "log"}, float, None),
        ({"choice": ["relu", "tanh"]}, str, ["relu", "tanh"]),
        ({"choice": [False, True]}, bool, [False, True]),
    ],
)
def test_spec_types_and_points(spec, kind, points):
    assert space.spec_type(space.check_spec("x", spec)) is kind
    assert space.spec_values(spec) == points


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"choice": []}, "non-empty list"),
        ({"min": 3, "max": 1}, "greater than max"),
        ({"min": 0.0, "max": 1.0, "sampling": "log"}, "needs min > 0"),
        ({"min": 1, "max": 2, "sampling": "cubic"}, "sampling must be one of"),
        ({"mn": 1, "max": 2}, "unknown search-spec key"),
        ({"max": 2}, "needs 'choice"),
        ({"choice": [1, "a"]}, "one type"),
    ],
)
def test_bad_specs_give_one_line(spec, message):
    with pytest.raises(space.SpecError, match=message) as info:
        space.check_spec("model.filters", spec)
    assert "\n" not in str(info.value) and str(info.value).startswith("model.filters")


def test_declare_fixes_plain_values_and_searches_specs():
    hp = kt.HyperParameters()
    space.declare(hp, {
        "filters": {"choice": [16, 32], "default": 32},
        "conv_blocks": {"min": 1, "max": 3},
        "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
        "batch_norm": False,
        "stages": [2, 2, 3],  # a list: passed through, not a keras-tuner hyperparameter
    })
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"batch_norm": "Fixed", "filters": "Choice", "conv_blocks": "Int",
                     "learning_rate": "Float"}
    assert hp.values["filters"] == 32 and hp.values["batch_norm"] is False


def test_values_resolve_trial_values_with_the_config_types():
    params = {"batch_norm": {"choice": [False, True]}, "dropout": {"min": 0.0, "max": 0.5,
              "step": 0.1}, "stages": [1, 2], "filters": 8}
    resolved = space.values({"batch_norm": 1, "dropout": 0.30000000000000004}, params)
    assert resolved == {"batch_norm": True, "dropout": 0.3, "stages": [1, 2], "filters": 8}
    assert resolved["batch_norm"] is True
    assert space.values(None, params)["batch_norm"] is False  # default point: first choice


def test_a_later_spec_replaces_the_one_it_overrides():
    # Hydra merges dicts: a study's {choice} over a model's {min, max, default} arrives merged.
    merged = {"min": 1, "max": 3, "step": 1, "default": 1, "choice": [2, 3]}
    assert space.normalize(merged) == {"choice": [2, 3]}
    merged = {"choice": [16, 32], "default": 32, "min": 4, "max": 8}
    assert space.normalize(merged) == {"min": 4, "max": 8}


def test_grid_size_of_s3_grid():
    grid = {k: {"choice": [a, b]} for k, (a, b) in {
        "conv_blocks": (2, 3), "filters": (32, 64), "kernel_size": (3, 5), "pool_size": (2, 3),
        "dense_layers": (1, 2), "dense_units": (256, 512)}.items()}
    assert space.grid_size(grid) == 64
    assert space.grid_size({"lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"}}) is None
