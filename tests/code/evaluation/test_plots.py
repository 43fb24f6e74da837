"""Tests for mlclf_utils.evaluation.plots: ECE and label confusion by hand, every figure saves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from mlclf_utils.evaluation import plots as ep
from mlclf_utils.evaluation import metrics, thresholds
from mlclf_utils.errors import DataError, ParameterError


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# Seven (text, label) pairs, ten bins:
#   bin 0 [0, .1):  p .05, .05    y 0, 0       share 0,   gap .05, weight 2/7
#   bin 1 [.1, .2): p .15         y 1          share 1,   gap .85, weight 1/7
#   bin 9 [.9, 1]:  p .95 x 4     y 1, 1, 1, 0 share .75, gap .20, weight 4/7
#   ECE = (2 * .05 + .85 + 4 * .20) / 7 = 1.75 / 7 = .25
ECE_Y = np.array([[0], [0], [1], [1], [1], [1], [0]])
ECE_P = np.array([[0.05], [0.05], [0.15], [0.95], [0.95], [0.95], [0.95]])


def test_ece_on_hand_worked_numbers():
    assert ep.expected_calibration_error(ECE_Y, ECE_P, 10) == pytest.approx(0.25, abs=1e-12)
    bins = ep.calibration_bins(ECE_Y, ECE_P, 10)
    assert bins["count"].tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 4]
    assert bins.loc[9, "fraction_positive"] == 0.75 and np.isnan(bins.loc[5, "mean_probability"])
    # The same pairs spread over two label columns give the same ECE: it pools all pairs.
    two_cols_y = np.array([[0, 0], [1, 1], [1, 1], [0, 0]])
    two_cols_p = np.array([[0.05, 0.05], [0.15, 0.95], [0.95, 0.95], [0.95, 0.5]])
    # pairs: .05/0 .05/0 .15/1 .95/1 .95/1 .95/1 .95/0 plus .5/0 (bin 5, gap .5)
    expected = (2 * 0.05 + 0.85 + 4 * 0.20 + 0.5) / 8
    assert ep.expected_calibration_error(two_cols_y, two_cols_p) == pytest.approx(expected)


def test_bin_edges_and_perfect_calibration():
    bins = ep.calibration_bins(np.array([[0], [1], [0]]), np.array([[0.0], [1.0], [0.1]]), 10)
    assert bins["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]  # 0.1 opens bin 1, 1.0 in 9
    assert ep.expected_calibration_error(np.array([[0], [1]]), np.array([[0.0], [1.0]])) == 0
    with pytest.raises(ParameterError, match="n_bins"):
        ep.calibration_bins(ECE_Y, ECE_P, 0)


def test_reliability_diagram_returns_figure_and_ece(tmp_path):
    fig, ece = ep.reliability_diagram(ECE_Y, ECE_P, path=tmp_path / "rel.png")
    assert ece == pytest.approx(0.25) and "0.250" in fig.axes[0].get_title()
    assert (tmp_path / "rel.png").exists()


def test_label_confusion_on_a_hand_built_case():
    #   text  y_true a b c   predicted a b c   missed -> wrongly predicted
    #   0     1 0 0          0 1 0             a -> b
    #   1     1 1 0          0 1 1             a -> c        (b is right)
    #   2     0 0 1          1 0 0             c -> a
    #   3     1 0 0          0 1 1             a -> b, a -> c
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    pred = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=bool)
    matrix = ep.label_confusion(y, pred, ["a", "b", "c"])
    assert matrix.to_numpy().tolist() == [[0, 2, 2], [0, 0, 0], [1, 0, 0]]
    assert matrix.index.name == "missed" and matrix.columns.name == "predicted instead"
    top = ep.top_confusions(matrix, top=2)
    assert top.values.tolist() == [["a", "b", 2], ["a", "c", 2]]
    with pytest.raises(DataError, match="predicted has shape"):
        ep.label_confusion(y, pred[:, :2], ["a", "b", "c"])


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    labels = [f"label_{j}" for j in range(8)]
    y = (rng.random((80, 8)) < np.linspace(0.05, 0.5, 8)).astype(int)
    y[:, 0] = 0  # one label without positives
    y[0, 1] = 1
    p = np.clip(0.4 * y + 0.6 * rng.random((80, 8)), 0, 1)
    return y, p, labels


def _is_png(path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 200


@pytest.mark.parametrize("name", ["per_class_f1", "pr_curves", "f1_vs_threshold",
                                  "confusion_counts", "label_confusion"])
def test_every_figure_is_saved_as_png(case, tmp_path, name):
    y, p, labels = case
    path = tmp_path / f"{name}.png"
    tuned = thresholds.tune_thresholds(y, p, labels, min_support=3)
    tuned_values = thresholds.thresholds_array(tuned, labels)
    if name == "per_class_f1":
        fig = ep.plot_per_class_f1(metrics.per_class_table(y, p, labels, 0.5),
                                   metrics.per_class_table(y, p, labels, tuned_values), path)
        assert "1 label without positives" in fig.axes[0].get_title()
    elif name == "pr_curves":
        fig = ep.plot_pr_curves(y, p, labels, n=2, path=path)
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend[0].startswith("label_7 (") and "AP=" in legend[0]
        least = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        assert least[0].startswith("label_1 (n=")  # label_0 has no positives: no curve
    elif name == "f1_vs_threshold":
        curves = thresholds.f1_threshold_curves(y, p, labels)
        fig = ep.plot_f1_vs_threshold(curves, ["label_7", "label_2"], tuned, path)
    elif name == "confusion_counts":
        fig = ep.plot_confusion_counts(metrics.per_class_table(y, p, labels, tuned_values), path,
                                       top=5)
        assert "5 of 8 labels" in fig.axes[0].get_title()
    else:
        matrix = ep.label_confusion(y, metrics.predict_with_thresholds(p, tuned_values), labels)
        fig = ep.plot_label_confusion(matrix, path, top=5)
    assert fig is not None and _is_png(path)


def test_plots_name_bad_arguments(case):
    y, p, labels = case
    curves = thresholds.f1_threshold_curves(y, p, labels)
    with pytest.raises(DataError, match="nope"):
        ep.plot_f1_vs_threshold(curves, ["nope"])
    with pytest.raises(ParameterError, match="which"):
        ep.plot_pr_curves(y, p, labels, which=("middle",))
    empty = ep.label_confusion(y, y.astype(bool), labels)
    assert ep.top_confusions(empty).empty
    ep.plot_label_confusion(empty)  # a figure that says so, not an error


def test_per_class_f1_with_many_labels_uses_dots_and_rolling_means(tmp_path):
    rng = np.random.default_rng(1)
    k = ep.MAX_NAMED_LABELS + 5
    labels = [f"l{j}" for j in range(k)]
    y = (rng.random((40, k)) < 0.3).astype(int)
    y[0] = 1
    p = rng.random((40, k))
    table = metrics.per_class_table(y, p, labels, 0.5)
    fig = ep.plot_per_class_f1(table, table, tmp_path / "many.png")
    assert fig.axes[0].get_xlabel().startswith(f"{k} labels") and _is_png(tmp_path / "many.png")
