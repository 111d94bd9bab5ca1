"""Datasets and splits: any image classification set by name, checked when loaded.

`DATASETS` is the one registry of data sources (name -> loader): MNIST (IDX files, npz, Keras
cache, download), scikit-learn's bundled digits, and any dataset given as an npz file or a folder
of IDX files (`data=npz data.name=fashion data.path=fashion.npz`). Every loader returns uint8 or
float arrays; `check_arrays` refuses, in one line naming the file, what a model cannot train on
(shape, dtype, labels, train/test disagreement). Images come out as float32 (n, H, W, C) in [0, 1]
and integer labels 0..K-1; channels and size are the data's own. The validation split is carved
from the training data (the tuner's objective); the test split is only ever reported. Loading is
cached per process, so the trials and jobs of one process share it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggsweep.errors import DataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MIN_CLASSES = 2


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
    name: str = "mnist"
    sha256: str = ""  # of the loaded arrays (before the split), 16 hex digits
    info: dict = field(default_factory=dict)

    def sizes(self) -> dict:
        return {
            "train_size": len(self.y_train),
            "val_size": len(self.y_val),
            "test_size": len(self.y_test),
        }

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


# --------------------------------------------------------------------------------------------
# Files: IDX folders and npz archives.


def find_files(path: Path) -> dict | Path:
    """The npz file, or the four IDX files, found at `path` (DataError naming what is missing)."""
    if path.is_file() and path.suffix == ".npz":
        return path
    if path.is_file():
        raise DataError(f"data.path={path} is a file but not an .npz; give an .npz file or a "
                        "directory with the four IDX files")
    if path.is_dir() and len(list(path.glob("*.npz"))) == 1 and not any(
            (path / f"{stem}.gz").is_file() or (path / stem).is_file()
            for stem in IDX_FILES.values()):
        return next(path.glob("*.npz"))
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
            f"data.path={path}: missing {', '.join(missing)} (.gz or plain) and no .npz file; "
            "point data.path at a directory with the four IDX files or at an .npz file, or use "
            "data=digits"
        )
    return found


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} cannot be read ({type(error).__name__}: {error})") from None
    if len(raw) < 4:
        raise DataError(f"{path} is truncated: no IDX header")
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: incomplete IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def read_npz(path: Path) -> tuple:
    """(x_train, y_train, x_test, y_test) from an npz archive."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; an .npz needs the arrays "
                                f"{', '.join(NPZ_KEYS)} (found: {', '.join(npz.files) or 'none'})")
            return tuple(np.asarray(npz[key]) for key in NPZ_KEYS)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:120]}); it needs the arrays "
                        f"{', '.join(NPZ_KEYS)}") from None


def read_files(path: str | os.PathLike) -> tuple[tuple, str]:
    """The four arrays at `path` (an .npz, or a folder of IDX files), and the source described."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data.path={path} does not exist; give a directory with the four IDX "
                        "files (gzipped or not) or an .npz file, or use data=digits (bundled)")
    files = find_files(path)
    if isinstance(files, Path):
        return read_npz(files), str(files.resolve())
    return tuple(read_idx(files[key]) for key in IDX_FILES), str(path.resolve())


# --------------------------------------------------------------------------------------------
# The registry of sources.


def keras_cache_file() -> Path:
    """Where Keras caches mnist.npz (honours KERAS_HOME)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "datasets" / "mnist.npz"


def load_mnist(data_cfg) -> tuple[tuple, str]:
    """MNIST from data.path, else Keras' cache, else a Keras download (if allowed)."""
    if data_cfg.path is not None:
        return read_files(data_cfg.path)
    cache = keras_cache_file()
    if cache.is_file():
        return read_npz(cache), str(cache)
    if data_cfg.download:
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


def load_digits(data_cfg) -> tuple[tuple, str]:
    """scikit-learn's digits, upscaled to 20x20 and centred in 28x28 like MNIST, split 80/20."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    small = digits.images.astype(np.float32) * (255.0 / 16.0)
    large = np.clip(zoom(small, (1, 2.5, 2.5), order=1), 0, 255)
    images = np.zeros((len(small), 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = np.round(large).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target,
        random_state=data_cfg.split_seed)
    return (x_train, y_train, x_test, y_test), "sklearn.datasets.load_digits (upscaled to 28x28)"


def load_named_files(data_cfg) -> tuple[tuple, str]:
    """Any dataset at data.path: an .npz (x_train, y_train, x_test, y_test) or IDX files."""
    if data_cfg.path is None:
        raise DataError(f"data={data_cfg.source} needs data.path=FILE (.npz) or a directory of "
                        "IDX files, and data.name=NAME")
    return read_files(data_cfg.path)


#: Data source name -> loader(data config) -> ((x_train, y_train, x_test, y_test), description).
DATASETS: dict[str, Callable] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "npz": load_named_files,
    "idx": load_named_files,
}


# --------------------------------------------------------------------------------------------
# Checks, splits, loading.


def check_source(data_cfg) -> None:
    """Fails fast, before any job starts, when `data.path` cannot hold the data."""
    if data_cfg.path is None:
        if data_cfg.source in ("npz", "idx"):
            load_named_files(data_cfg)  # raises the one-line error
        return
    path = Path(str(data_cfg.path)).expanduser()
    if not path.exists():
        raise DataError(
            f"data.path={data_cfg.path} does not exist; give a directory with the four IDX "
            "files (gzipped or not) or an .npz file, or use data=digits (bundled, offline)"
        )
    find_files(path)  # raises DataError naming what is missing


def check_arrays(arrays: tuple, where: str) -> tuple:
    """Checks the four arrays a model will train on; returns them with labels as int32 and
    images as (n, H, W, C). Raises DataError with one line naming `where` and the problem."""
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in arrays)
    for name, images in (("x_train", x_train), ("x_test", x_test)):
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
            raise DataError(f"{where}: {name} has shape {images.shape}; images must be (n, H, W) "
                            "or (n, H, W, C) with C = 1, 3 or 4")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{where}: {name} has dtype {images.dtype}; valid: uint8 (0..255) "
                            "or float (0..1)")
        if np.issubdtype(images.dtype, np.floating) and images.size and (
                not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise DataError(f"{where}: {name} holds floats outside [0, 1] (or NaN); scale them "
                            "to [0, 1] or store uint8 0..255")
    shapes = (x_train.shape[1:] + (1,))[:3] if x_train.ndim == 3 else x_train.shape[1:]
    test_shape = (x_test.shape[1:] + (1,))[:3] if x_test.ndim == 3 else x_test.shape[1:]
    if shapes != test_shape:
        raise DataError(f"{where}: training images are {shapes} but test images are "
                        f"{test_shape}; both splits must have one shape")
    labels = [_check_labels(where, name, y, len(x)) for name, y, x in
              (("y_train", y_train, x_train), ("y_test", y_test, x_test))]
    classes = int(max(labels[0].max(initial=-1), labels[1].max(initial=-1))) + 1
    if classes < MIN_CLASSES or len(np.unique(labels[0])) < MIN_CLASSES:
        raise DataError(f"{where}: the training labels hold {len(np.unique(labels[0]))} class(es);"
                        f" at least {MIN_CLASSES} are needed")
    def shape4(x):
        return (x if x.ndim == 4 else x[..., np.newaxis])
    return shape4(x_train), labels[0], shape4(x_test), labels[1]


def _check_labels(where: str, name: str, labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{where}: {name} has shape {labels.shape} for {count} images; labels "
                        "must be one integer per image")
    if labels.size == 0:
        raise DataError(f"{where}: {name} is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)):
            raise DataError(f"{where}: {name} has dtype {labels.dtype}; labels must be integers "
                            "0..K-1")
    if labels.min() < 0:
        raise DataError(f"{where}: {name} holds the label {int(labels.min())}; labels must be "
                        "integers 0..K-1")
    return labels.astype(np.int32)


def content_hash(arrays: tuple) -> str:
    """A short SHA-256 of the arrays' shapes and bytes: which data a result was measured on."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:16]


def stratified_split(labels: np.ndarray, take: int, seed: int,
                     within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `take` items drawn per class in proportion (largest remainders first), and of
    the rest, both sorted; among `within` (default: every index). NumPy only: scikit-learn's
    `train_test_split` does the same but costs a second of import."""
    pool = np.arange(len(labels)) if within is None else np.asarray(within)
    rng = np.random.RandomState(seed)
    classes, inverse = np.unique(labels[pool], return_inverse=True)
    counts = np.bincount(inverse)
    exact = counts * take / len(pool)
    share = np.floor(exact).astype(int)
    leftover = take - share.sum()
    if leftover > 0:  # the classes with the largest remainders get one more (ties at random)
        order = np.lexsort((rng.random_sample(len(classes)), -(exact - share)))
        share[order[:leftover]] += 1
    taken = [rng.permutation(pool[inverse == index])[:count]
             for index, count in enumerate(share)]
    chosen = np.sort(np.concatenate(taken)) if taken else np.array([], dtype=int)
    return chosen, np.setdiff1d(pool, chosen)


def stratified_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified random subset of `size` items (all of them if size is None)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    return stratified_split(labels, size, seed)[0]


def _as_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32)


def _carve(labels: np.ndarray, pool: np.ndarray, val_fraction: float, seed: int):
    """Train and validation indices of `pool`, stratified by class."""
    n_val = max(1, math.ceil(len(pool) * val_fraction))
    if n_val >= len(pool):
        raise DataError(f"only {len(pool)} training images: too few to carve a validation split "
                        f"of {val_fraction:g}")
    val, train = stratified_split(labels, n_val, seed, within=pool)
    return train, val


@functools.lru_cache(maxsize=4)
def _load_cached(source, name, path, download, train_samples, test_samples, val_fraction,
                 split_seed):
    from omegaconf import OmegaConf

    data_cfg = OmegaConf.create({"source": source, "path": path, "download": download,
                                 "split_seed": split_seed})
    arrays, described = DATASETS[source](data_cfg)
    x_pool, y_pool, x_test, y_test = check_arrays(arrays, described)
    sha256 = content_hash((x_pool, y_pool, x_test, y_test))
    # The pool is sized so that train_samples images remain for training after the carve.
    pool_size = None if train_samples is None else math.ceil(train_samples / (1 - val_fraction))
    pool = stratified_subset(y_pool, pool_size, split_seed)
    train_idx, val_idx = _carve(y_pool, pool, val_fraction, split_seed)
    test_idx = stratified_subset(y_test, test_samples, split_seed)
    return Splits(
        x_train=_as_float(x_pool[train_idx]), y_train=y_pool[train_idx],
        x_val=_as_float(x_pool[val_idx]), y_val=y_pool[val_idx],
        x_test=_as_float(x_test[test_idx]), y_test=y_test[test_idx],
        num_classes=int(max(y_pool.max(), y_test.max()) + 1),
        source=described, name=name, sha256=sha256,
        info={"test_is_full": test_samples is None or test_samples >= len(y_test)},
    )


def dataset_name(data_cfg) -> str:
    """The name results are shown under: data.name, else the source's name."""
    return str(data_cfg.get("name") or data_cfg.source)


def load(data_cfg) -> Splits:
    """Loads and checks the splits described by a `data` config subtree (cached per process).

    Raises:
        DataError: missing, unreadable or unusable data (one line naming the file).
    """
    return _load_cached(
        str(data_cfg.source),
        dataset_name(data_cfg),
        None if data_cfg.path is None else str(Path(str(data_cfg.path)).expanduser()),
        bool(data_cfg.download),
        data_cfg.train_samples,
        data_cfg.test_samples,
        float(data_cfg.val_fraction),
        int(data_cfg.split_seed),
    )
