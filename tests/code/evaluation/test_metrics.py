"""Tests for mlclf_utils.evaluation.metrics: hand-worked numbers, sklearn agreement, undefined labels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlclf_utils.evaluation import metrics
from mlclf_utils.errors import DataError, ParameterError

# Hand-worked 4 x 3 example, threshold 0.5.
#
#            y_true      probs              predicted (>= 0.5)
#   text     a  b  c     a    b    c        a  b  c
#   0        1  0  1     .9   .2   .4       1  0  0
#   1        0  1  0     .6   .7   .1       1  1  0
#   2        1  1  0     .3   .8   .05      0  1  0
#   3        0  0  0     .1   .55  .6       0  1  1
#
#   a: tp 1 fp 1 fn 1 tn 1 -> P 1/2, R 1/2, F1 1/2
#   b: tp 2 fp 1 fn 0 tn 1 -> P 2/3, R 1,   F1 4/5
#   c: tp 0 fp 1 fn 1 tn 2 -> P 0,   R 0,   F1 0
#   micro: tp 3, fp 3, fn 2 -> P 1/2, R 3/5, F1 6/11
#   macro: F1 (1/2 + 4/5 + 0)/3 = 13/30, P (1/2 + 2/3 + 0)/3 = 7/18, R (1/2 + 1 + 0)/3 = 1/2
#   weighted F1 (support 2, 2, 1): (2*1/2 + 2*4/5 + 0)/5 = 13/25
#   samples F1: texts 0-2 each 2*1/(2+1) = 2/3, text 3 0/(0+2) = 0 -> mean 1/2
#   subset accuracy: no text is exactly right -> 0; Hamming: 1+1+1+2 wrong of 12 -> 5/12
#   ROC-AUC: a pos {.9,.3} vs neg {.6,.1}: 3 of 4 pairs -> 3/4; b: 4 of 4 -> 1;
#            c pos {.4} vs neg {.1,.05,.6}: 2 of 3 -> 2/3; macro (3/4 + 1 + 2/3)/3 = 29/36
#   AP: a ranked .9P .6N .3P .1N -> 1/2*1 + 1/2*2/3 = 5/6; b -> 1; c ranked .6N .4P -> 1/2
#       macro (5/6 + 1 + 1/2)/3 = 7/9
HAND_Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
HAND_P = np.array([[0.9, 0.2, 0.4], [0.6, 0.7, 0.1], [0.3, 0.8, 0.05], [0.1, 0.55, 0.6]])
LABELS = ["a", "b", "c"]


def test_hand_worked_report():
    r = metrics.multilabel_report(HAND_Y, HAND_P, LABELS, 0.5)
    expected = {
        "micro_f1": 6 / 11, "macro_f1": 13 / 30, "weighted_f1": 13 / 25, "samples_f1": 1 / 2,
        "micro_precision": 1 / 2, "micro_recall": 3 / 5, "macro_precision": 7 / 18,
        "macro_recall": 1 / 2, "subset_accuracy": 0.0, "hamming_loss": 5 / 12,
        "macro_roc_auc": 29 / 36, "macro_average_precision": 7 / 9,
    }
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, abs=1e-12), key
    assert (r["n_texts"], r["n_labels"], r["n_labels_evaluated"]) == (4, 3, 3)
    assert r["labels_without_positives"] == [] and r["note"] == ""


def test_hand_worked_per_class_table():
    table = metrics.per_class_table(HAND_Y, HAND_P, LABELS, 0.5)
    assert list(table.index) == LABELS and table.index.name == "label"
    counts = table[["support", "predicted", "tp", "fp", "fn", "tn"]].to_numpy().tolist()
    assert counts == [[2, 2, 1, 1, 1, 1], [2, 3, 2, 1, 0, 1], [1, 1, 0, 1, 1, 2]]
    np.testing.assert_allclose(table["precision"], [1 / 2, 2 / 3, 0])
    np.testing.assert_allclose(table["recall"], [1 / 2, 1, 0])
    np.testing.assert_allclose(table["f1"], [1 / 2, 4 / 5, 0])
    np.testing.assert_allclose(table["roc_auc"], [3 / 4, 1, 2 / 3])
    np.testing.assert_allclose(table["average_precision"], [5 / 6, 1, 1 / 2])
    assert (table["status"] == "ok").all() and (table["threshold"] == 0.5).all()


def test_predict_with_thresholds_is_greater_or_equal_per_column():
    probs = np.array([[0.5, 0.2], [0.49, 0.3]])
    pred = metrics.predict_with_thresholds(probs, [0.5, 0.3])
    assert pred.dtype == bool and pred.tolist() == [[True, False], [False, True]]
    assert metrics.predict_with_thresholds(probs, 0.25).tolist() == [[True, False], [True, True]]


def _random_case(seed: int, n: int, k: int, decimals: int):
    """Random labels with a positive and a negative in every column; rounding makes ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.1, 0.6, size=k)).astype(np.int64)
    y[0, :], y[1, :] = 1, 0
    p = np.clip(np.round(0.35 * y + 0.65 * rng.random((n, k)), decimals), 0, 1)
    return y, p


def _sklearn_report(y, p, pred) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {f"{avg}_f1": skm.f1_score(y, pred, average=avg, zero_division=0)
               for avg in ("micro", "macro", "weighted")}
        out["samples_f1"] = skm.f1_score(y, pred, average="samples", zero_division=1.0)
        for avg in ("micro", "macro"):
            out[f"{avg}_precision"] = skm.precision_score(y, pred, average=avg, zero_division=0)
            out[f"{avg}_recall"] = skm.recall_score(y, pred, average=avg, zero_division=0)
            out[f"{avg}_roc_auc"] = skm.roc_auc_score(y, p, average=avg)
            out[f"{avg}_average_precision"] = skm.average_precision_score(y, p, average=avg)
        out["subset_accuracy"] = skm.accuracy_score(y, pred)
        out["hamming_loss"] = skm.hamming_loss(y, pred)
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), k=st.integers(2, 6),
       decimals=st.sampled_from([1, 2, 6]), per_class=st.booleans())
def test_report_equals_sklearn_when_every_label_has_positives(seed, n, k, decimals, per_class):
    y, p = _random_case(seed, n, k, decimals)
    rng = np.random.default_rng(seed + 1)
    thresholds = np.round(rng.uniform(0.05, 0.95, size=k), 2) if per_class else 0.5
    labels = [f"l{j}" for j in range(k)]
    report = metrics.multilabel_report(y, p, labels, thresholds)
    expected = _sklearn_report(y, p, metrics.predict_with_thresholds(p, thresholds))
    for key, value in expected.items():
        assert abs(report[key] - value) <= 1e-12, (key, report[key], value)
    assert report["labels_without_positives"] == [] and report["note"] == ""


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 50), k=st.integers(1, 5),
       decimals=st.sampled_from([0, 1, 2, 6]), block=st.sampled_from([1, 7, 2_000_000]))
def test_per_class_ranking_scores_equal_sklearn_with_ties(seed, n, k, decimals, block):
    """The vectorised AUC/AP, in column blocks of any size, against sklearn column by column."""
    y, p = _random_case(seed, n, k, decimals)
    original = metrics.RANKING_BLOCK_CELLS
    metrics.RANKING_BLOCK_CELLS = block
    try:
        table = metrics.per_class_table(y, p, [f"l{j}" for j in range(k)], 0.5)
    finally:
        metrics.RANKING_BLOCK_CELLS = original
    for j in range(k):
        assert abs(table["roc_auc"].iloc[j] - skm.roc_auc_score(y[:, j], p[:, j])) <= 1e-12
        ap = skm.average_precision_score(y[:, j], p[:, j])
        assert abs(table["average_precision"].iloc[j] - ap) <= 1e-12


def test_label_without_positives_is_named_and_left_out_of_macro_averages():
    y, p = _random_case(7, 60, 5, 3)
    y[:, 2] = 0
    p[:, 2] *= 0.4
    p[:5, 2] = 0.9  # five confident false positives on the empty label
    labels = ["a", "b", "c", "d", "e"]
    report = metrics.multilabel_report(y, p, labels, 0.5)
    assert report["labels_without_positives"] == ["c"] and report["n_labels_evaluated"] == 4
    assert "'c'" in report["note"] and "left out of the macro averages" in report["note"]

    keep = [0, 1, 3, 4]
    pred = p >= 0.5
    on_kept = _sklearn_report(y[:, keep], p[:, keep], pred[:, keep])
    for key in ("macro_f1", "macro_precision", "macro_recall", "macro_roc_auc",
                "macro_average_precision", "weighted_f1"):
        assert abs(report[key] - on_kept[key]) <= 1e-12, key
    # Micro averages and per-text metrics still count the false positives on "c".
    on_all = _sklearn_report(y, p, pred)
    for key in ("micro_f1", "micro_precision", "samples_f1", "hamming_loss", "subset_accuracy",
                "micro_roc_auc", "micro_average_precision"):
        assert abs(report[key] - on_all[key]) <= 1e-12, key
    assert report["micro_precision"] < on_kept["micro_precision"]

    table = metrics.per_class_table(y, p, labels, 0.5)
    row = table.loc["c"]
    assert row["status"] == "no positives in this split"
    assert row["support"] == 0 and row["fp"] == 5 and row["precision"] == 0.0
    assert np.isnan([row["recall"], row["f1"], row["roc_auc"], row["average_precision"]]).all()
    assert (table.drop(index="c")["status"] == "ok").all()


def test_label_without_negatives_is_left_out_of_macro_roc_auc_only():
    y, p = _random_case(3, 30, 3, 3)
    y[:, 1] = 1
    report = metrics.multilabel_report(y, p, ["a", "b", "c"], 0.5)
    assert report["labels_without_positives"] == [] and report["n_labels_evaluated"] == 3
    expected = skm.roc_auc_score(y[:, [0, 2]], p[:, [0, 2]], average="macro")
    assert abs(report["macro_roc_auc"] - expected) <= 1e-12
    assert "no negatives" in report["note"] and "'b'" in report["note"]
    table = metrics.per_class_table(y, p, ["a", "b", "c"], 0.5)
    assert table.loc["b", "status"] == "no negatives in this split"
    assert np.isnan(table.loc["b", "roc_auc"]) and table.loc["b", "average_precision"] == 1.0


def test_never_predicted_label_is_nan_in_table_and_zero_in_macro_precision():
    y = np.array([[1, 1], [0, 1], [1, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.2], [0.8, 0.3]])
    table = metrics.per_class_table(y, p, ["a", "b"], 0.5)
    assert table.loc["b", "predicted"] == 0 and np.isnan(table.loc["b", "precision"])
    assert table.loc["b", "recall"] == 0 and table.loc["b", "f1"] == 0
    report = metrics.multilabel_report(y, p, ["a", "b"], 0.5)
    assert report["macro_precision"] == 0.5  # (1 + 0) / 2, as sklearn's zero_division=0


def test_all_zero_predictions_score_zero_not_nan():
    """The peers' failure mode (nothing crosses 0.5) must look bad, not undefined."""
    y, p = _random_case(1, 20, 4, 3)
    report = metrics.multilabel_report(y, p * 0.4, ["a", "b", "c", "d"], 0.5)
    assert report["micro_f1"] == 0 and report["macro_f1"] == 0 and report["micro_precision"] == 0


def test_text_without_labels_and_predictions_counts_as_right_in_samples_f1():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.9, 0.1], [0.1, 0.1]])
    assert metrics.multilabel_report(y, p, ["a", "b"])["samples_f1"] == 1.0


@pytest.mark.parametrize(
    ("y", "p", "labels", "thresholds", "error", "words"),
    [
        (np.ones((2, 2)), np.ones((2, 3)) / 2, ["a", "b"], 0.5, DataError, "probs has shape"),
        (np.ones((2, 2)), np.array([[0.5, 2.0], [0.1, 0.1]]), ["a", "b"], 0.5, DataError,
         "sigmoid"),
        (np.array([[0, 2], [1, 0]]), np.ones((2, 2)) / 2, ["a", "b"], 0.5, DataError,
         "y_true must hold only 0 and 1"),
        (np.ones((2, 2)), np.full((2, 2), np.nan), ["a", "b"], 0.5, DataError, "probs"),
        (np.ones((2, 2)), np.ones((2, 2)) / 2, ["a"], 0.5, DataError, "labels has 1 names"),
        (np.ones((2, 2)), np.ones((2, 2)) / 2, ["a", "a"], 0.5, DataError, "unique"),
        (np.ones((2, 2)), np.ones((2, 2)) / 2, ["a", "b"], [0.5, 0.5, 0.5], ParameterError,
         "thresholds"),
        (np.ones((2, 2)), np.ones((2, 2)) / 2, ["a", "b"], 1.5, ParameterError, "[0, 1]"),
        (np.ones(2), np.ones(2) / 2, ["a"], 0.5, DataError, "2-d"),
    ],
)
def test_bad_inputs_name_the_argument(y, p, labels, thresholds, error, words):
    with pytest.raises(error) as info:
        metrics.multilabel_report(y, p, labels, thresholds)
    assert words in str(info.value)


def test_compare_reports_gives_reference_minus_other_and_direction():
    ours = {"micro_f1": 0.8, "hamming_loss": 0.02, "n_texts": 10, "n_labels": 3}
    base = {"micro_f1": 0.7, "hamming_loss": 0.03, "n_texts": 10, "n_labels": 3}
    table = metrics.compare_reports({"ours": ours, "tfidf": base}, reference="ours",
                                    metrics=("micro_f1", "hamming_loss"))
    assert list(table.columns) == ["ours", "tfidf", "Δ vs tfidf", "better"]
    assert table.loc["micro_f1", "Δ vs tfidf"] == pytest.approx(0.1)
    assert table.loc["hamming_loss", "Δ vs tfidf"] == pytest.approx(-0.01)
    assert table["better"].tolist() == ["higher", "lower"]
    with pytest.raises(ParameterError, match="reference"):
        metrics.compare_reports({"ours": ours}, reference="theirs")
    with pytest.raises(DataError, match="different data"):
        metrics.compare_reports({"ours": ours, "b": {**base, "n_texts": 11}}, reference="ours",
                                metrics=("micro_f1",))
    with pytest.raises(DataError, match="macro_f1"):
        metrics.compare_reports({"ours": ours, "b": base}, reference="ours", metrics=("macro_f1",))


def test_compare_reports_accepts_full_reports():
    a = metrics.multilabel_report(HAND_Y, HAND_P, LABELS, 0.5)
    b = metrics.multilabel_report(HAND_Y, HAND_P, LABELS, 0.3)
    table = metrics.compare_reports({"tuned": b, "0.5": a}, reference="tuned")
    assert list(table.index) == list(metrics.REPORT_METRICS)
    assert isinstance(table, pd.DataFrame) and table["Δ vs 0.5"].notna().all()


# --- Found by mutation testing (docs/mutation.md): changes no test above noticed.

def test_a_split_without_any_positive_gives_nan_not_a_crash_or_zero():
    y = np.zeros((3, 2), dtype=int)
    p = np.array([[0.7, 0.1], [0.2, 0.2], [0.1, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = metrics.multilabel_report(y, p, ["a", "b"])
    for key in ("micro_recall", "micro_f1", "weighted_f1", "macro_f1"):
        assert np.isnan(report[key]), key
    assert report["micro_precision"] == 0.0 and report["n_labels_evaluated"] == 0
    assert "2 of 2 labels have no positives" in report["note"]


def test_the_note_counts_the_labels_left_out_against_all_labels():
    y = np.array([[1, 0, 1], [0, 0, 1]])
    p = np.array([[0.9, 0.1, 0.8], [0.2, 0.3, 0.7]])
    note = metrics.multilabel_report(y, p, ["a", "b", "c"])["note"]
    assert note.startswith("1 of 3 labels has no positives") and "'b'" in note
    assert "1 label has no negatives" in note and "'c'" in note


# --- issue 18: tests for the survivors of the mutation run "after" -----------------------


def test_threshold_vector_accepts_the_bounds_and_converts_to_float():
    out = metrics.threshold_vector(np.array([0, 1]), 2)
    assert out.dtype == np.float64 and out.tolist() == [0.0, 1.0]
    assert metrics.threshold_vector(0.0, 3).tolist() == [0.0, 0.0, 0.0]
    assert metrics.threshold_vector(1, 2).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("thresholds, shown, message", [
    (True, True, "a number in [0, 1] or one per label"),
    (np.bool_(False), np.bool_(False), "a number in [0, 1] or one per label"),
    ("0.5", "0.5", "a number in [0, 1] or one per label"),
    (np.array(["a", "b"]), "array of shape (2,)", "a number in [0, 1] or one per label"),
    (np.array([True, False]), "array of shape (2,)", "a number in [0, 1] or one per label"),
    (np.array([0.5, 0.5, 0.5]), "array of shape (3,)", "an array of shape (2,)"),
    (1.5, 1.5, "column 0 is 1.5"),
    (-0.5, -0.5, "column 0 is -0.5"),
    (np.array([0.5, 1.25]), "array of shape (2,)", "column 1 is 1.25"),
    (np.array([-0.25, 0.5]), "array of shape (2,)", "column 0 is -0.25"),
    (np.array([0.5, np.nan]), "array of shape (2,)", "column 1 is nan"),
])
def test_threshold_vector_errors_name_the_parameter_and_show_the_value(thresholds, shown, message):
    with pytest.raises(ParameterError) as exc:
        metrics.threshold_vector(thresholds, 2, name="cut")
    assert exc.value.name == "cut" and exc.value.value == shown
    assert message in str(exc.value)


def test_check_labels_refuses_a_string_and_a_non_iterable():
    for bad in ("ab", 5):
        with pytest.raises(ParameterError, match="list of label names") as exc:
            metrics.check_labels(bad, 2, name="names")
        assert (exc.value.name, exc.value.value) == ("names", bad)


def test_check_inputs_row_count_edges_and_labels_optional():
    y, p, names = metrics.check_inputs([[1, 0]], [[0.9, 0.1]])  # one row is enough
    assert y.shape == (1, 2) and names is None
    with pytest.raises(DataError, match="no rows"):
        metrics.check_inputs(np.zeros((0, 2)), np.zeros((0, 2)))


def test_as_probabilities_and_as_targets_name_the_argument_rows_and_hint():
    p = [[0.1, 0.2], [0.3, 0.4], [0.5, 1.5]]
    with pytest.raises(DataError, match="scores must be probabilities") as exc:
        metrics.as_probabilities(p, "scores")
    assert exc.value.rows == [2] and "sigmoid" in exc.value.hint
    with pytest.raises(DataError, match="probs must be probabilities") as exc:
        metrics.as_probabilities([[0.1, np.nan], [0.2, 0.3]])
    assert exc.value.rows == [0] and exc.value.hint is None  # NaN is no logit: no sigmoid hint
    for bad in ([["a", "b"]], [0.1, 0.2]):  # strings; a 1-d vector
        with pytest.raises(DataError, match="^probs must"):
            metrics.as_probabilities(bad)
    with pytest.raises(DataError, match="y_true must hold only 0 and 1") as exc:
        metrics.as_targets([[0, 1], [1, 0], [0, 2]])
    assert exc.value.rows == [2]
    with pytest.raises(DataError, match="y_true must be numeric"):
        metrics.as_targets([["0", "1"]])


def _report(**values):
    base = {m: 0.5 for m in metrics.REPORT_METRICS}
    base.update(n_texts=10, n_labels=3)
    base.update(values)
    return base


def test_compare_reports_validation_names_the_parameter():
    reports = {"model": _report(), "baseline": _report(micro_f1=0.25)}
    cases = [
        (dict(reports={}, reference="model"), "reports", {}),
        (dict(reports=[("model", _report())], reference="model"), "reports",
         [("model", _report())]),
        (dict(reports=reports, reference="other"), "reference", "other"),
        (dict(reports=reports, reference="model", metrics="micro_f1"), "metrics", "micro_f1"),
        (dict(reports=reports, reference="model", metrics=[]), "metrics", []),
    ]
    for kwargs, name, value in cases:
        with pytest.raises(ParameterError, match="must") as exc:
            metrics.compare_reports(**kwargs)
        assert (exc.value.name, exc.value.value) == (name, value)
        assert not str(exc.value).endswith("None")


@pytest.mark.parametrize("key", ["n_texts", "n_labels"])
def test_compare_reports_refuses_reports_on_different_data(key):
    reports = {"model": _report(), "baseline": _report(**{key: 99})}
    with pytest.raises(DataError, match=f"different data \\({key}"):
        metrics.compare_reports(reports, "model")


def test_compare_reports_table_structure():
    reports = {"model": _report(micro_f1=0.75), "baseline": _report(micro_f1=0.25)}
    table = metrics.compare_reports(reports, "model", metrics=["micro_f1", "hamming_loss"])
    assert table.index.name == "metric" and table.index.tolist() == ["micro_f1", "hamming_loss"]
    assert table.columns.tolist() == ["model", "baseline", "Δ vs baseline", "better"]
    assert table.loc["micro_f1", "Δ vs baseline"] == 0.5
    assert table["better"].tolist() == ["higher", "lower"]
