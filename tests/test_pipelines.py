"""The input pipelines (vggsweep.data.pipelines): a new permutation every epoch from one
iterator, whole epochs with several steps per execution.
"""

from __future__ import annotations

import pytest


def test_training_batches_are_a_new_permutation_every_epoch_from_one_iterator():
    """On TensorFlow the training split is one repeated pipeline: each epoch (steps_per_epoch
    batches, the last one partial) holds every example once, the next epoch another order, and
    the same seed gives the same order; validation and prediction batches keep the order."""
    import numpy as np

    from vggsweep.data import pipelines
    from vggsweep.runtime import accelerator

    if accelerator.backend() != "tensorflow":
        pytest.skip("the repeated pipeline is TensorFlow's (other backends get the arrays)")
    keras = accelerator.keras_module()
    x = np.arange(10, dtype=np.float32).reshape(10, 1) * 10
    y = np.arange(10, dtype=np.int32)

    def two_epochs(seed):
        keras.utils.set_random_seed(seed)
        feed = pipelines.training_batches(x, y, batch_size=4)
        assert feed["steps_per_epoch"] == 3 and feed["shuffle"] is False
        batches = list(feed["x"].take(2 * feed["steps_per_epoch"]).as_numpy_iterator())
        assert [len(labels) for _, labels in batches] == [4, 4, 2, 4, 4, 2]
        for images, labels in batches:
            assert np.array_equal(images[:, 0], labels * 10)  # images stay with their labels
        return [np.concatenate([labels for _, labels in batches[i:i + 3]]) for i in (0, 3)]

    first, second = two_epochs(0)
    assert sorted(first) == sorted(second) == list(range(10))
    assert list(first) != list(second) and list(first) != list(range(10))
    assert [list(e) for e in two_epochs(0)] == [list(first), list(second)]
    keras.utils.set_random_seed(0)
    per_epoch = pipelines.training_batches(x, y, batch_size=4, steps_per_execution=8)
    assert "steps_per_epoch" not in per_epoch  # several steps per execution: ends each epoch
    for _ in range(2):
        epoch = [labels for _, labels in per_epoch["x"].as_numpy_iterator()]
        assert [len(b) for b in epoch] == [4, 4, 2] and sorted(np.concatenate(epoch)) == list(y)
    validation = pipelines.validation_batches(x, y, 4)["validation_data"]
    for _ in range(2):  # in order, every epoch
        assert np.concatenate([b for _, b in validation.as_numpy_iterator()]).tolist() == list(y)
    predicted = pipelines.prediction_batches(x, 4)["x"]
    assert np.array_equal(np.concatenate(list(predicted.as_numpy_iterator())), x)


def test_several_steps_per_execution_train_whole_epochs():
    """The GPU path's steps per execution (here on the CPU): each epoch is its permutation."""
    from vggsweep import config, data
    from vggsweep.config import space
    from vggsweep.models import training

    cfg = config.compose(["model=mlp", "activation=relu", "data=digits",
                          "data.train_samples=100", "data.test_samples=30"])
    splits = data.load(cfg.data)
    model_kwargs, optimizer_kwargs = space.point(cfg.model, cfg.optimizer, cfg.activation)
    trained = training.train_one("mlp", model_kwargs, optimizer_kwargs, splits, image_size=28,
                                 epochs=2, batch_size=16, seed=0,
                                 compile_options={"steps_per_execution": 4})
    assert trained.fit.epochs_run == 2 and 0 <= trained.test["test_accuracy"] <= 1
