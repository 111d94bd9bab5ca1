"""The plain-Keras baseline of bench/overhead.py: S3's CNN trained the way a user would write it.

Reads MNIST's IDX files with NumPy, carves the same stratified validation split as vggsweep
(scikit-learn, seed 0), builds S3's model (2 x [conv same, conv valid, pool], dense 512), fits with
Adam, validating every epoch, then evaluates once on validation and once on test. `--input repeated`
feeds tf.data pipelines instead of NumPy arrays, as vggsweep does on TensorFlow. Prints one line
of JSON: the trial's wall time (fit + both evaluations) and the accuracies.

    python bench/plain_keras.py --data-path ../shared/data/mnist --train-samples 9000 --epochs 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(folder: Path, train_samples: int, val_fraction: float):
    from sklearn.model_selection import train_test_split

    x = read_idx(folder / "train-images-idx3-ubyte.gz")
    y = read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int32)
    x_test = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int32)
    pool_size = math.ceil(train_samples / (1 - val_fraction))
    pool, _ = train_test_split(np.arange(len(y)), train_size=pool_size, stratify=y,
                               random_state=0)
    pool = np.sort(pool)
    train, val = train_test_split(pool, test_size=val_fraction, stratify=y[pool],
                                  random_state=0)
    def scale(images):
        return ((images.astype(np.float32) / 255.0)[..., None])
    return (scale(x[train]), y[train]), (scale(x[val]), y[val]), (scale(x_test), y_test)


def batches(x, y, batch_size: int, shuffle: bool):
    """tf.data batches of (x, y) gathered at index batches, tf.data's autotuning off; shuffled:
    a new permutation every epoch, repeated (one iterator serves the whole fit). Written out
    here, not imported, so that the baseline stays independent of vggsweep."""
    import tensorflow as tf

    order = tf.data.Dataset.range(len(y))
    if shuffle:
        order = order.shuffle(len(y), reshuffle_each_iteration=True)
    order = order.batch(batch_size)
    if shuffle:
        order = order.repeat()
    arrays = tf.data.Dataset.from_tensors((x, y)).repeat()
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.zip((order, arrays)).map(
        lambda index, xy: (tf.gather(xy[0], index), tf.gather(xy[1], index))
    ).prefetch(2).with_options(options)


def s3_cnn(keras):
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="valid", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="valid", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(10),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--train-samples", type=int, default=9000)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input", choices=("arrays", "repeated"), default="arrays",
                        help="arrays: NumPy arrays to fit and evaluate (the usual way); repeated: "
                             "tf.data pipelines without autotuning, the training one repeated for "
                             "the whole fit (how vggsweep feeds TensorFlow)")
    args = parser.parse_args()
    train, val, test = load(Path(args.data_path), args.train_samples, args.val_fraction)
    import keras

    keras.utils.set_random_seed(0)
    model = s3_cnn(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.perf_counter()
    if args.input == "arrays":
        model.fit(*train, validation_data=val, epochs=args.epochs, batch_size=args.batch_size,
                  shuffle=True, verbose=0)
        fitted = time.perf_counter()
        _, val_accuracy = model.evaluate(*val, batch_size=512, verbose=0)
        _, test_accuracy = model.evaluate(*test, batch_size=512, verbose=0)
    else:
        model.fit(batches(*train, args.batch_size, shuffle=True),
                  validation_data=batches(*val, args.batch_size, shuffle=False),
                  epochs=args.epochs, verbose=0,
                  steps_per_epoch=math.ceil(len(train[1]) / args.batch_size))
        fitted = time.perf_counter()
        _, val_accuracy = model.evaluate(batches(*val, 512, shuffle=False), verbose=0)
        _, test_accuracy = model.evaluate(batches(*test, 512, shuffle=False), verbose=0)
    done = time.perf_counter()
    print(json.dumps({"trial_s": done - started, "fit_s": fitted - started,
                      "evaluate_s": done - fitted, "val_accuracy": val_accuracy,
                      "test_accuracy": test_accuracy, "train_size": len(train[1])}))


if __name__ == "__main__":
    main()
