"""The plots (vggsweep.outputs.plots): Pareto fronts, which columns vary and how they are drawn,
learning curves, importance, the best model's pictures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # finds results_fixtures in any import mode
from results_fixtures import record_sweep

from vggsweep.outputs import plots
from vggsweep.tracking import results

SWEEP_PLOTS = {"accuracy_vs_time", "isolation", "learning_curves", "parallel_coordinates",
               "importance"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return record_sweep(tmp_path_factory.mktemp("recorded"))


@pytest.fixture(scope="module")
def trials(sweep):
    return results.load_trials(sweep.tracking_uri, sweep.experiment)


def assert_png_not_blank(path) -> np.ndarray:
    """Opens a PNG and checks it holds more than one colour; returns the pixels."""
    from matplotlib.image import imread

    pixels = imread(Path(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 0.01 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 2
    return pixels


def test_pareto_front_keeps_only_undominated_points():
    times = [1.0, 2.0, 3.0, 4.0, 3.0]
    scores = [0.5, 0.4, 0.7, 0.6, 0.7]
    assert plots.pareto_front(times, scores).tolist() == [True, False, True, False, False]


def test_varying_columns_skip_constants(trials):
    columns = plots.varying_columns(plots.finished_trials(trials))
    assert columns[:2] == ["model", "activation"]
    assert {"filters", "dropout", "learning_rate"} <= set(columns)
    assert not {"epochs", "seed", "batch_size", "pool_size"} & set(columns)


@pytest.mark.parametrize(
    ("values", "continuous"),
    [
        (pd.Series([1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 1e-2]), True),  # a sampled learning rate
        (pd.Series([0.0, 0.25, 0.5, 0.25]), False),  # a few dropout choices
        (pd.Series([16, 32, 64, 128, 256, 512], dtype="Int64"), False),  # filter choices
        (pd.Series([True, False] * 5, dtype="boolean"), False),
    ],
)
def test_which_hyperparameters_get_a_numeric_axis(values, continuous):
    assert plots.common.is_continuous(values) is continuous


def test_learning_curves_from_mlflow_histories(sweep, trials, tmp_path):
    from mlflow import MlflowClient

    labels = plots.top_trial_labels(trials, k=3)
    assert list(labels.values())[0] == "#1 vgg16-searched/trial-2"  # the run's name
    histories = results.load_histories(MlflowClient(sweep.tracking_uri), labels)
    curves = plots.learning_curves_png({labels[r]: h for r, h in histories.items()},
                                       tmp_path / "c.png")
    assert_png_not_blank(curves)


def _synthetic_trials(n: int) -> pd.DataFrame:
    """Trials whose validation accuracy depends on `dropout` only; `filters` is noise."""
    rng = np.random.default_rng(1)
    dropout = np.tile([0.0, 0.25, 0.5], n)[:n]
    return pd.DataFrame({
        "rank": pd.array(range(1, n + 1), dtype="Int64"), "model": "cnn", "activation": "relu",
        "dropout": dropout, "filters": pd.array(rng.choice([16, 32, 64], n), dtype="Int64"),
        "val_accuracy": 0.9 + 0.1 * dropout + rng.normal(0, 0.002, n),
        "train_time_s": rng.uniform(1, 10, n), "status": "FINISHED", "trial_id": "00",
    })


def test_importance_credits_the_hyperparameter_that_matters():
    importance = plots.hyperparameter_importance(_synthetic_trials(12))
    assert importance.index[0] == "dropout" and importance["dropout"] > 0.9
    assert importance.get("filters", 0.0) < 0.1
    assert ((importance >= 0) & (importance <= 1)).all()


def test_importance_with_too_few_trials_says_so(tmp_path):
    few = _synthetic_trials(3)
    assert plots.hyperparameter_importance(few).empty
    assert plots.importance_note(few) == ("Hyperparameter importance needs at least 4 finished "
                                          "trials; 3 trials finished so far.")
    assert_png_not_blank(plots.importance_png(few, tmp_path / "importance.png"))


def test_importance_within_noise_says_so():
    """Six trials whose differences no hyperparameter explains: every estimate clips to 0."""
    noise = _synthetic_trials(6).assign(
        dropout=[0.0, 0.0, 0.25, 0.25, 0.5, 0.5],
        filters=pd.array([16, 32, 16, 32, 16, 32], dtype="Int64"),
        val_accuracy=[0.90, 0.95, 0.95, 0.90, 0.90, 0.95])
    assert (plots.hyperparameter_importance(noise) == 0).all()
    assert "no hyperparameter explains more" in plots.importance_note(noise)
    assert plots.importance_note(_synthetic_trials(12)) is None  # dropout matters there


def test_plots_that_cannot_say_anything_yet_are_a_sentence_each(trials, tmp_path):
    empty = trials.iloc[0:0]
    notes = plots.plot_notes(empty, {})
    assert set(notes) == SWEEP_PLOTS and all(n.endswith(".") for n in notes.values())
    (tmp_path / "importance.png").write_bytes(b"an older figure")
    assert plots.sweep_plots(empty, {}, tmp_path, skip=notes) == {}
    assert not list(tmp_path.glob("*.png"))  # the older figure went with it
    written = plots.sweep_plots(empty, {}, tmp_path)  # asked for anyway: figures saying why
    assert set(written) == SWEEP_PLOTS
    for path in written.values():
        assert_png_not_blank(path)


def test_accuracy_against_time_needs_two_trials_and_a_trade_off(tmp_path):
    one = _synthetic_trials(1)
    assert "needs two finished trials; 1 trial finished" in plots.accuracy_vs_time_note(one)
    two = _synthetic_trials(2).assign(train_time_s=[1.0, 2.0], val_accuracy=[0.9, 0.8])
    assert plots.accuracy_vs_time_note(two) is None
    assert_png_not_blank(plots.accuracy_vs_time_png(two, tmp_path / "a.png"))


def test_confusion_counts_and_matrix(tmp_path):
    y_true = np.array([0, 1, 2, 2, 1])
    y_pred = np.array([0, 2, 2, 2, 1])
    counts = plots.confusion_counts(y_true, y_pred)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    one_hot = np.eye(3)[y_pred]  # probability/one-hot rows are accepted too
    assert plots.confusion_counts(y_true, one_hot).tolist() == counts.tolist()
    path = plots.confusion_matrix_png(y_true, one_hot, tmp_path / "cm.png",
                                      class_names=["a", "b", "c"])
    assert_png_not_blank(path)


@pytest.mark.parametrize("shape", [(30, 28, 28), (30, 28, 28, 1)])
def test_misclassified_and_samples_grids(tmp_path, shape):
    rng = np.random.default_rng(0)
    images = rng.random(shape)
    y_true = rng.integers(0, 10, 30)
    y_pred = np.where(np.arange(30) % 3 == 0, (y_true + 1) % 10, y_true)
    four = plots.misclassified_png(images, y_true, y_pred, tmp_path / "4.png", max_images=4)
    nine = plots.misclassified_png(images, y_true, y_pred, tmp_path / "9.png", max_images=9)
    assert assert_png_not_blank(four).shape[0] < assert_png_not_blank(nine).shape[0]  # 2x2 < 3x3
    assert_png_not_blank(plots.samples_png(images, y_true, tmp_path / "s.png"))


def test_misclassified_without_mistakes_says_so(tmp_path):
    images = np.zeros((4, 28, 28))
    labels = np.arange(4)
    assert_png_not_blank(plots.misclassified_png(images, labels, labels, tmp_path / "m.png"))
