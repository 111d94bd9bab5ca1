"""`python -m vggsweep.summary`: parameter counts, forward FLOPs, block sizes, one-line errors."""

import subprocess
import sys

import pytest

from vggsweep import config, models, summary

# Multiply-adds of S3's CNN at 28x28: conv 28*28*9*1*32 + 26*26*9*32*32 + 13*13*9*32*64
# + 11*11*9*64*64, dense 1600*512 + 512*10.
S3_FLOPS = 2 * (225_792 + 6_230_016 + 3_115_008 + 4_460_544 + 819_200 + 5_120)


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vggsweep.summary", *overrides], text=True,
                          capture_output=True, timeout=300, cwd=config.PACKAGE_DIR.parent)


def test_forward_flops_count_conv_and_dense_multiply_adds_twice():
    assert summary.forward_flops(models.build_model("cnn", {})) == S3_FLOPS == 29_711_360
    assert summary.forward_flops(models.build_model("mlp", {})) == 2 * (784 * 500 + 500 * 10)


def test_summary_of_the_default_cnn(capsys):
    assert summary.main(["model=cnn", "activation=tanh"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 889,834" in out
    assert f"FLOPs per image (forward): {S3_FLOPS:,}" in out
    assert "block2   5x5x64" in out and "activation=tanh" in out


@pytest.mark.parametrize("overrides, fragment", [
    (["model=vgg16", "model.pooling=valid"], "vgg16: block 5 pool 2x2 on a 1x1 feature map"),
    (["model=cnn", "model.units=5"], "model.units"),
    (["model=vgg16,cnn"], "sweep 2 combinations; give one value per key"),
])
def test_bad_input_exits_2_with_one_line(overrides, fragment, capsys):
    assert summary.main(overrides) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and fragment in captured.err


@pytest.mark.subprocess
def test_cli_unknown_model_is_one_line_and_exit_2():
    result = run_cli("model=vgg17")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "vgg17" in lines[0] and "vgg16" in lines[0], result.stderr
    assert result.stdout == ""


@pytest.mark.subprocess
@pytest.mark.slow  # a subprocess that imports TensorFlow and builds a 134M-parameter model
def test_cli_prints_s2s_vgg16_parameter_count():
    result = run_cli("model=vgg16", "data.image_size=224", "model.batch_norm=false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parameters: 134,300,362" in result.stdout
    assert "block5   7x7x512" in result.stdout
    assert "FLOPs per image (forward): 30,816,813,056" in result.stdout
