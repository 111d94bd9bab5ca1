"""The input pipelines that feed Keras: training, validation and prediction batches.

On TensorFlow, vggsweep feeds its own `tf.data` pipelines with autotuning off (`training_batches`
says why); on the other backends, the NumPy arrays themselves.
"""

from __future__ import annotations

import math

from vggsweep.runtime.accelerator import backend


def training_batches(x, y, batch_size: int, steps_per_execution: int = 1) -> dict:
    """The `model.fit` keywords that feed the training split: every epoch a new permutation, in
    batches of `batch_size` (the last one partial), as Keras shuffles arrays.

    On TensorFlow, one `tf.data` pipeline repeated for the whole fit (`steps_per_epoch`), with
    tf.data's autotuning off. Keras feeds NumPy arrays through an autotuned pipeline and builds
    a new iterator at every epoch; measured here (S3's CNN, 9,000 MNIST images, batch 64,
    2 cores), ending such an iterator often stalled the training, CPU idle: 2.8 to 4.3 s at the
    start of an epoch, up to 20 s at the end of a fit. The permutation shuffles indices (the
    images are gathered per batch: no shuffle buffer of images), seeded like every other random
    draw by `keras.utils.set_random_seed`. With several steps per execution (the GPU path) the
    pipeline ends with each epoch instead: Keras' last execution of an epoch would otherwise run
    past the epoch's end into the next permutation. On the other backends: the arrays themselves.
    """
    if backend() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    if steps_per_execution > 1:
        return {"x": _batches(x, y, batch_size, shuffle=True), "shuffle": False}
    return {"x": _batches(x, y, batch_size, shuffle=True, repeat=True), "shuffle": False,
            "steps_per_epoch": math.ceil(int(x.shape[0]) / batch_size)}


def validation_batches(x, y, batch_size: int) -> dict:
    """The `model.fit` keywords that feed the validation split (in order, every epoch)."""
    if backend() != "tensorflow":
        return {"validation_data": (x, y), "validation_batch_size": batch_size}
    return {"validation_data": _batches(x, y, batch_size)}


def prediction_batches(x, batch_size: int) -> dict:
    """The `model.predict` keywords that feed `x` in order."""
    if backend() != "tensorflow":
        return {"x": x, "batch_size": batch_size}
    return {"x": _batches(x, None, batch_size)}


def _batches(x, y, batch_size: int, *, shuffle: bool = False, repeat: bool = False):
    """tf.data batches of `x` (and `y`), gathered at batches of indices: in order, or a new
    permutation every epoch (`shuffle`); ending with the epoch, or repeated for the whole fit;
    two prefetched, no autotuning (`training_batches` says why)."""
    import tensorflow as tf

    count = int(x.shape[0])
    order = tf.data.Dataset.range(count)
    if shuffle:
        order = order.shuffle(count, reshuffle_each_iteration=True)
    order = order.batch(batch_size)
    if repeat:
        order = order.repeat()
    arrays = tf.data.Dataset.from_tensors((x,) if y is None else (x, y)).repeat()
    pick = ((lambda index, xs: tf.gather(xs[0], index)) if y is None else
            (lambda index, xy: (tf.gather(xy[0], index), tf.gather(xy[1], index))))
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.zip((order, arrays)).map(pick).prefetch(2).with_options(options)
