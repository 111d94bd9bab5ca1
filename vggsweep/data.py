"""Datasets and splits: MNIST (IDX files, npz, Keras cache, download) and scikit-learn's digits.

Images come out as float32 arrays of shape (n, 28, 28, 1) in [0, 1] and integer labels. The
validation split is carved from the training data (the tuner's objective); the test split is only
ever reported. Loading is cached per process, so the trials and jobs of one process share it.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggsweep.config import ConfigError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DataError(ConfigError):
    """The data cannot be found or read; the message says where we looked and what to do."""


@dataclass
class Splits:
    """Train / validation / test arrays and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    info: dict = field(default_factory=dict)

    def sizes(self) -> dict:
        return {
            "train_size": len(self.y_train),
            "val_size": len(self.y_val),
            "test_size": len(self.y_test),
        }


def keras_cache_file() -> Path:
    """Where Keras caches mnist.npz (honours KERAS_HOME)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "datasets" / "mnist.npz"


def check_source(data_cfg) -> None:
    """Fails fast, before any job starts, when `data.path` cannot hold the data."""
    if data_cfg.name != "mnist" or data_cfg.path is None:
        return
    path = Path(str(data_cfg.path)).expanduser()
    if not path.exists():
        raise DataError(
            f"data.path={data_cfg.path} does not exist; give a directory with the four MNIST IDX "
            "files (gzipped or not) or an mnist.npz, or use data=digits (bundled, offline)"
        )
    _find_files(path)  # raises DataError naming what is missing


def _find_files(path: Path) -> dict | Path:
    """Returns the npz file, or the four IDX files, found at `path`."""
    if path.is_file() and path.suffix == ".npz":
        return path
    if path.is_dir() and (path / "mnist.npz").is_file():
        return path / "mnist.npz"
    found, missing = {}, []
    for key, stem in IDX_FILES.items():
        candidates = [path / f"{stem}.gz", path / stem, path / f"{stem.replace('-idx', '.idx')}"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    if missing:
        raise DataError(
            f"data.path={path}: missing {', '.join(missing)} (.gz or plain) and no mnist.npz; "
            "point data.path at a directory with the four MNIST IDX files, or use data=digits"
        )
    return found


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def load_mnist_arrays(path: str | None, download: bool = True) -> tuple[tuple, str]:
    """Loads (x_train, y_train, x_test, y_test) as uint8, and a description of the source."""
    if path is not None:
        files = _find_files(Path(path).expanduser())
        if isinstance(files, Path):
            return _read_npz(files), str(files)
        arrays = tuple(read_idx(files[key]) for key in IDX_FILES)
        return arrays, str(Path(path).expanduser().resolve())
    cache = keras_cache_file()
    if cache.is_file():
        return _read_npz(cache), str(cache)
    if download:
        try:
            import keras

            arrays = keras.datasets.mnist.load_data()
            return (*arrays[0], *arrays[1]), "keras download"
        except Exception as error:  # noqa: BLE001 - offline, proxy, corrupt download...
            reason = f"the Keras download failed ({type(error).__name__})"
    else:
        reason = "downloads are off (data.download=false)"
    raise DataError(
        f"MNIST not found: no data.path given, no Keras cache at {cache}, and {reason}; "
        "use data.path=/dir/with/mnist-idx-files (or an mnist.npz), or data=digits to run offline"
    )


def _read_npz(path: Path) -> tuple:
    try:
        with np.load(path) as npz:
            return npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(
            f"{path} is not a readable mnist.npz ({error}); it needs x_train, y_train, x_test, "
            "y_test"
        ) from None


def load_digits_arrays(split_seed: int) -> tuple[tuple, str]:
    """scikit-learn's digits, upscaled to 20x20 and centred in 28x28 like MNIST, split 80/20."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = digits.images.astype(np.float32) * (255.0 / 16.0)
    large = np.clip(zoom(small, (1, 2.5, 2.5), order=1), 0, 255)
    images = np.zeros((len(small), 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = np.round(large).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=split_seed
    )
    return (x_train, y_train, x_test, y_test), "sklearn.datasets.load_digits (upscaled to 28x28)"


def stratified_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified random subset of `size` items (all of them if size is None)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    indices, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed
    )
    return np.sort(indices)


def _as_float(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


@functools.lru_cache(maxsize=4)
def _load_cached(name, path, download, train_samples, test_samples, val_fraction, split_seed):
    if name == "digits":
        arrays, source = load_digits_arrays(split_seed)
    else:
        arrays, source = load_mnist_arrays(path, download)
    x_pool, y_pool, x_test, y_test = arrays
    y_pool, y_test = y_pool.astype(np.int32), y_test.astype(np.int32)
    from sklearn.model_selection import train_test_split

    # The pool is sized so that train_samples images remain for training after the carve.
    pool_size = None if train_samples is None else math.ceil(train_samples / (1 - val_fraction))
    pool = stratified_subset(y_pool, pool_size, split_seed)
    train_idx, val_idx = train_test_split(
        pool, test_size=val_fraction, stratify=y_pool[pool], random_state=split_seed
    )
    test_idx = stratified_subset(y_test, test_samples, split_seed)
    return Splits(
        x_train=_as_float(x_pool[train_idx]), y_train=y_pool[train_idx],
        x_val=_as_float(x_pool[val_idx]), y_val=y_pool[val_idx],
        x_test=_as_float(x_test[test_idx]), y_test=y_test[test_idx],
        num_classes=int(max(y_pool.max(), y_test.max()) + 1),
        source=source,
        info={"test_is_full": test_samples is None or test_samples >= len(y_test)},
    )


def load(data_cfg) -> Splits:
    """Loads the splits described by a `data` config subtree (cached per process)."""
    return _load_cached(
        str(data_cfg.name),
        None if data_cfg.path is None else str(data_cfg.path),
        bool(data_cfg.download),
        data_cfg.train_samples,
        data_cfg.test_samples,
        float(data_cfg.val_fraction),
        int(data_cfg.split_seed),
    )
