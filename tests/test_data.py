"""Data loading: IDX files (gzipped or not), npz, the bundled digits, splits and errors."""

import gzip
import struct

import numpy as np
import pytest
from conftest import SHARED_MNIST, needs_mnist
from omegaconf import OmegaConf

from vggsweep import data


def _write_idx(path, array, compress):
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(
        struct.pack(">I", n) for n in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(directory, compress, n_train=300, n_test=100):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        _write_idx(directory / (name + (".gz" if compress else "")), array, compress)
    return arrays


def _cfg(**overrides):
    base = {"source": "mnist", "name": None, "path": None, "image_size": None,
            "train_samples": None, "test_samples": None, "val_fraction": 0.1, "split_seed": 0,
            "download": False}
    return OmegaConf.create({**base, **overrides})


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_loads_with_a_validation_carve(tmp_path, compress):
    arrays = _fake_mnist(tmp_path, compress)
    splits = data.load(_cfg(path=str(tmp_path)))
    assert splits.x_train.shape[1:] == (28, 28, 1) and splits.x_train.dtype == np.float32
    assert 0.0 <= splits.x_train.min() and splits.x_train.max() <= 1.0
    assert len(splits.y_train) + len(splits.y_val) == 300 and len(splits.y_val) == 30
    assert len(splits.y_test) == 100
    np.testing.assert_allclose(splits.x_test[0, ..., 0], arrays["t10k-images-idx3-ubyte"][0] / 255)


def test_npz_file_loads(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
             y_train=np.arange(200) % 10, x_test=rng.integers(0, 256, (50, 28, 28),
                                                              dtype=np.uint8),
             y_test=np.arange(50) % 10)
    splits = data.load(_cfg(path=str(tmp_path / "mnist.npz")))
    assert len(splits.y_test) == 50 and splits.num_classes == 10


def test_train_samples_subsample_is_stratified_and_counts_training_images(tmp_path):
    _fake_mnist(tmp_path, True, n_train=1000)
    splits = data.load(_cfg(path=str(tmp_path), train_samples=200, test_samples=50))
    assert len(splits.y_train) == 200 and len(splits.y_test) == 50
    assert np.bincount(splits.y_train, minlength=10).min() >= 18  # about 20 of each class
    assert not set(map(bytes, splits.x_val.reshape(len(splits.y_val), -1)[:5])) & set(
        map(bytes, splits.x_train.reshape(len(splits.y_train), -1)))


def test_digits_are_real_handwriting_at_28x28():
    splits = data.load(_cfg(source="digits"))
    assert splits.x_train.shape[1:] == (28, 28, 1)
    assert splits.x_train[:, :4].max() == 0  # centred like MNIST: a 4-pixel empty border
    assert len(splits.y_test) == 360 and splits.num_classes == 10


def test_loading_is_cached_per_process(tmp_path):
    _fake_mnist(tmp_path, True)
    assert data.load(_cfg(path=str(tmp_path))) is data.load(_cfg(path=str(tmp_path)))


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "missing train-images-idx3-ubyte"),
    (lambda p: (p / "mnist.npz").write_bytes(b"not a zip"), "not a readable .npz"),
])
def test_bad_paths_say_what_is_missing(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(data.DataError, match=message):
        data.load(_cfg(path=str(tmp_path), split_seed=7))


def test_truncated_idx_file_is_named(tmp_path):
    _fake_mnist(tmp_path, False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="truncated"):
        data.load(_cfg(path=str(tmp_path), split_seed=3))


def test_offline_without_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(data.DataError) as info:
        data.load(_cfg(download=False, split_seed=5))
    message = str(info.value)
    assert str(tmp_path / "keras") in message and "data=digits" in message
    assert "\n" not in message


@needs_mnist
def test_real_mnist_from_the_shared_folder():
    splits = data.load(_cfg(path=str(SHARED_MNIST)))
    assert len(splits.y_test) == 10_000
    assert len(splits.y_train) + len(splits.y_val) == 22_699
