"""A model too large for the machine is refused before anything exists: its parameters and the
memory its training needs, counted from its plan without building it (vggsweep.models.footprint),
checked against `budget.max_model_gb` for the largest point of the search space."""

from __future__ import annotations

import pytest
from conftest import run_cli

from vggsweep import config, models
from vggsweep.errors import ConfigError
from vggsweep.job import checks
from vggsweep.models import footprint

POINTS = [
    ("cnn", {}, 28, (28, 28, 1)),  # S3's CNN
    ("cnn", {"batch_norm": True, "conv_blocks": 3, "augment": True}, 32, (28, 28, 1)),
    ("cnn", {"pool_size": 3, "kernel_size": 5, "conv_blocks": 3}, 40, (32, 32, 3)),
    ("vgg", {"width_multiplier": 0.0625}, 32, (28, 28, 1)),
    ("vgg", {"width_multiplier": 0.0625, "batch_norm": False, "stages": [1, 1, 2, 2, 2],
             "pooling": "skip"}, 40, (32, 32, 3)),
    ("mlp", {"hidden_layers": 2, "dropout": 0.2}, 28, (28, 28, 1)),
]


def test_every_family_is_counted():
    assert set(footprint.COUNTERS) == set(models.FAMILIES)


@pytest.mark.parametrize(("family", "params", "image_size", "input_shape"), POINTS)
def test_the_parameter_count_is_keras_own(family, params, image_size, input_shape):
    counted = footprint.footprint(family, params, input_shape=input_shape, num_classes=10,
                                  image_size=image_size)
    built = models.build_model(family, params, input_shape=input_shape, num_classes=10,
                               image_size=image_size)
    assert counted.parameters == built.count_params()
    assert 0 < counted.training_gb(64) < 2


def test_the_references_fit_and_s2s_vgg16_is_counted_without_being_built():
    vgg16 = footprint.footprint("vgg", {"batch_norm": False}, image_size=224)
    assert vgg16.parameters == 134_300_362  # S2's VGG16 (tests/test_models.py builds it)
    assert 5 < vgg16.training_gb(64) < 32  # at 224x224, batch 64: under the default limit
    assert footprint.footprint("cnn", {}).parameters == 889_834


def test_the_largest_point_of_a_space_is_found_and_the_culprit_named():
    cfg = config.compose(["model=cnn"])
    point, size = footprint.largest("cnn", {**cfg.model, "activation": "relu"}, 64)
    assert (point["conv_blocks"], point["filters"], point["batch_norm"]) == (3, 64, True)
    huge = config.compose(["model=cnn", "model.conv_blocks=99"])
    point, size = footprint.largest("cnn", {**huge.model, "activation": "relu"}, 64)
    assert size.training_gb(64) > 1e50 and footprint.approx(size.parameters).endswith("e+64")
    assert footprint.culprits("cnn", point, 32, 64) == ["conv_blocks"]


def test_the_limit_is_a_config_value():
    cfg = config.compose(["model=mlp", "model.hidden_units=4096", "model.hidden_layers=8",
                          "budget.max_model_gb=0.1"])
    with pytest.raises(ConfigError) as refused:
        checks.check_memory(cfg, 28, (28, 28, 1), 10)
    message = str(refused.value)
    assert "model.hidden_units=4096" in message and "budget.max_model_gb=0.1" in message
    assert "\n" not in message
    checks.check_memory(config.compose(["model=mlp", "budget.max_model_gb=null"]), 28,
                        (28, 28, 1), 10)  # no limit
    checks.check_memory(config.compose(["model=mlp"]), 28, (28, 28, 1), 10)  # the default


@pytest.mark.subprocess
def test_a_model_far_too_large_is_refused_before_any_run(tmp_path):
    done = run_cli(["model=cnn", "model.conv_blocks=99", "data=digits", "budget=smoke"],
                   tmp_path, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: model.conv_blocks=99 ")
    assert "budget.max_model_gb=32" in lines[0] and "GB to train" in lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "tuner_state").exists()
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
