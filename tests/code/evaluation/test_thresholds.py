"""Tests for mlclf_utils.evaluation.thresholds: exact F1 search, fallbacks, saved files, F1 curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.evaluation import thresholds as th
from mlclf_utils.errors import DataError, ParameterError


def f1_at(y, p, t) -> float:
    y = np.asarray(y, bool)
    pred = np.asarray(p) >= t
    return 2 * np.sum(y & pred) / (y.sum() + pred.sum())


def test_known_optimum_lies_between_the_classes():
    # Positives in [0.6, 1], negatives in [0, 0.4] plus three confident negatives above 0.6.
    # Cutting anywhere in (max low negative, min positive] keeps every positive and only the
    # three stray negatives: F1 = 2*50 / (50 + 53) = 100/103; any higher cut loses positives,
    # and a cut into the low negatives only adds false positives.
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 1.0, 50)
    neg = np.r_[rng.uniform(0.0, 0.4, 200), 0.7, 0.8, 0.9]
    y = np.r_[np.ones(50), np.zeros(203)]
    p = np.r_[pos, neg]
    threshold, f1 = th.best_f1_threshold(y, p)
    assert f1 == pytest.approx(100 / 103, abs=1e-15)
    low = neg[neg < 0.6].max()
    assert threshold == pytest.approx((low + pos.min()) / 2, abs=1e-15)
    assert low < threshold <= pos.min()
    assert f1_at(y, p, threshold) == f1


def test_tie_goes_to_the_highest_threshold():
    # pos {0.9, 0.3}, neg {0.6, 0.5}
    #   >= 0.9: tp 1 fp 0 -> 2/(1+2) = 2/3      >= 0.6: tp 1 fp 1 -> 2/4
    #   >= 0.5: tp 1 fp 2 -> 2/5                >= 0.3: tp 2 fp 2 -> 4/6 = 2/3 (tie)
    # The first cut wins; the threshold is the midpoint of 0.9 and 0.6.
    threshold, f1 = th.best_f1_threshold([1, 0, 0, 1], [0.9, 0.6, 0.5, 0.3])
    assert f1 == 2 / 3 and threshold == pytest.approx(0.75)


def test_equal_scores_and_lowest_cut():
    # One distinct score: the only cut predicts everything; the threshold is halfway to 0.
    threshold, f1 = th.best_f1_threshold([1, 0, 1], [0.5, 0.5, 0.5])
    assert threshold == 0.25 and f1 == pytest.approx(0.8)


def test_adjacent_floats_still_reproduce_the_f1():
    hi = 0.5
    lo = np.nextafter(hi, 0.0)
    threshold, f1 = th.best_f1_threshold([1, 0], [hi, lo])
    assert f1 == 1.0 and lo < threshold <= hi
    threshold, f1 = th.best_f1_threshold([1, 0], [5e-324, 0.0])
    assert f1 == 1.0 and threshold == 5e-324


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), decimals=st.sampled_from([1, 2, 8]))
def test_search_is_exact_and_reproducible(seed, n, decimals):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    y[0] = True
    p = np.round(rng.random(n) * 0.5 + 0.5 * y * rng.random(n), decimals)
    threshold, f1 = th.best_f1_threshold(y, p)
    assert f1_at(y, p, threshold) == f1  # predicting >= threshold gives the reported F1
    brute = max(f1_at(y, p, s) for s in np.unique(p))
    assert f1 == brute
    # Ties go to the highest threshold: no higher distinct score reaches the same F1.
    cut = np.unique(p)[np.unique(p) >= threshold].min()
    assert all(f1_at(y, p, s) < f1 for s in np.unique(p) if s > cut)


def test_best_f1_threshold_refuses_a_column_without_positives():
    with pytest.raises(DataError, match="no positives"):
        th.best_f1_threshold([0, 0], [0.2, 0.3])
    with pytest.raises(DataError, match="equal length"):
        th.best_f1_threshold([0, 1], [0.2, 0.3, 0.4])


def _validation(seed: int = 0):
    """Label a: 40 positives, separable; b: 2 positives; c: none."""
    rng = np.random.default_rng(seed)
    n = 120
    y = np.zeros((n, 3), dtype=int)
    y[:40, 0] = 1
    y[[5, 70], 1] = 1
    p = rng.uniform(0.0, 0.3, (n, 3))
    p[:40, 0] = rng.uniform(0.2, 0.5, 40)
    p[[5, 70], 1] = [0.25, 0.6]
    return y, p, ["a", "b", "c"]


def test_min_support_falls_back_to_the_global_threshold():
    y, p, labels = _validation()
    table = th.tune_thresholds(y, p, labels, min_support=5)
    assert table["source"].tolist() == ["tuned", "fallback: support < min_support",
                                        "fallback: no positives"]
    assert table["support"].tolist() == [40, 2, 0]
    g = table.attrs["global_threshold"]
    assert table.loc["b", "threshold"] == g and table.loc["c", "threshold"] == g
    assert table.attrs["min_support"] == 5 and table.attrs["fallback"] == "global"
    t_a, f1_a = th.best_f1_threshold(y[:, 0], p[:, 0])
    assert table.loc["a", "threshold"] == t_a and table.loc["a", "f1_tuned"] == f1_a
    assert table.loc["b", "f1_tuned"] == f1_at(y[:, 1], p[:, 1], g)
    assert np.isnan(table.loc["c", "f1_tuned"]) and np.isnan(table.loc["c", "f1_at_0_5"])
    assert table.loc["a", "f1_at_0_5"] == f1_at(y[:, 0], p[:, 0], 0.5)
    # With min_support=2, label b is tuned on its two positives.
    assert th.tune_thresholds(y, p, labels, min_support=2).loc["b", "source"] == "tuned"


def test_global_fallback_maximises_micro_f1_against_brute_force():
    y, p, labels = _validation(1)
    g = th.tune_thresholds(y, p, labels).attrs["global_threshold"]
    micro = f1_at(y.ravel(), p.ravel(), g)
    candidates = np.r_[np.linspace(0, 1, 1001), np.unique(p)]
    assert micro >= max(f1_at(y.ravel(), p.ravel(), t) for t in candidates) - 1e-15


def test_fixed_fallback_and_parameter_errors():
    y, p, labels = _validation()
    table = th.tune_thresholds(y, p, labels, fallback=0.3)
    assert table.loc["b", "threshold"] == 0.3 and table.attrs["global_threshold"] is None
    for bad in ({"min_support": 0}, {"min_support": 2.5}, {"fallback": "median"},
                {"fallback": 1.5}, {"fallback": True}):
        with pytest.raises(ParameterError):
            th.tune_thresholds(y, p, labels, **bad)


def test_thresholds_array_follows_labels_and_refuses_other_label_maps():
    y, p, labels = _validation()
    table = th.tune_thresholds(y, p, labels)
    values = th.thresholds_array(table, ["c", "a", "b"])
    assert values.tolist() == table.loc[["c", "a", "b"], "threshold"].tolist()
    assert th.thresholds_array({"a": 0.1, "b": 0.2}, ["b", "a"]).tolist() == [0.2, 0.1]
    with pytest.raises(DataError, match="missing"):
        th.thresholds_array(table, ["a", "b", "c", "d"])
    with pytest.raises(DataError, match="unexpected"):
        th.thresholds_array(table, ["a", "b"])


def test_save_and_load_round_trip(tmp_path):
    y, p, labels = _validation()
    table = th.tune_thresholds(y, p, labels, min_support=3)
    path = th.save_thresholds(table, tmp_path / "out" / "thresholds.json")
    loaded = th.load_thresholds(path)
    assert list(loaded) == labels
    assert list(loaded.values()) == table["threshold"].tolist()
    saved = json.loads(path.read_text())
    assert saved["min_support"] == 3 and saved["fallback"] == "global"
    assert saved["global_threshold"] == table.attrs["global_threshold"]
    assert saved["source"]["c"] == "fallback: no positives" and saved["validation_f1"]["c"] is None

    (tmp_path / "bad.json").write_text('{"thresholds": {"a": 1.7}}')
    with pytest.raises(DataError, match="not in"):
        th.load_thresholds(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not found"):
        th.load_thresholds(tmp_path / "missing.json")


def test_f1_curves_match_a_loop():
    rng = np.random.default_rng(4)
    y = (rng.random((50, 3)) < 0.3).astype(int)
    y[:, 2] = 0
    p = np.round(rng.random((50, 3)), 2)  # values on the grid test the ">=" edge
    grid = np.linspace(0.01, 0.99, 99)
    curves = th.f1_threshold_curves(y, p, ["a", "b", "c"], grid)
    assert list(curves.columns) == ["label", "threshold", "f1"] and len(curves) == 3 * 99
    for j, name in enumerate(["a", "b"]):
        got = curves.loc[curves["label"] == name, "f1"].to_numpy()
        expected = [f1_at(y[:, j], p[:, j], t) for t in grid]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert curves.loc[curves["label"] == "c", "f1"].isna().all()
    with pytest.raises(ParameterError, match="grid"):
        th.f1_threshold_curves(y, p, ["a", "b", "c"], [0.5, 0.2])


# --- Found by mutation testing (docs/mutation.md): changes no test above noticed.

def test_a_probability_exactly_at_the_threshold_counts_as_predicted():
    """``probs >= threshold``, as predict_with_thresholds uses: F1 at 0.5 and the fallback's."""
    y = np.array([[1], [0], [0], [0]])
    p = np.array([[0.5], [0.2], [0.1], [0.3]])
    table = th.tune_thresholds(y, p, ["rare"], min_support=5, fallback=0.5)
    assert table.loc["rare", "source"] == th.SOURCE_LOW_SUPPORT
    assert table.loc["rare", "f1_at_0_5"] == 1.0
    assert table.loc["rare", "f1_tuned"] == 1.0


# --- issue 18: tests for the survivors of the mutation run "after" -----------------------


def _two_labels():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0], [0, 1]])
    p = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4], [0.7, 0.1], [0.2, 0.9]])
    return y, p, ["a", "b"]


def test_thresholds_array_accepts_the_bounds_and_refuses_just_outside():
    assert th.thresholds_array({"a": 0.0, "b": 1.0}, ["a", "b"]).tolist() == [0.0, 1.0]
    for bad in (-0.25, 1.5, float("nan")):
        with pytest.raises(DataError, match="'b' is not in"):  # names the label, not the first
            th.thresholds_array({"a": 0.5, "b": bad}, ["a", "b"])


def test_thresholds_array_is_float_and_takes_any_iterable_of_labels():
    values = th.thresholds_array({"a": 0, "b": 1}, iter(["b", "a"]))
    assert values.dtype == np.float64 and values.tolist() == [1.0, 0.0]


def test_thresholds_array_refuses_one_string_as_the_labels():
    with pytest.raises(ParameterError) as exc:  # "ab" is not the labels ["a", "b"]
        th.thresholds_array({"a": 0.5, "b": 0.5}, "ab")
    assert exc.value.name == "labels"


def test_thresholds_array_errors_name_the_parameter_and_column():
    with pytest.raises(ParameterError, match="DataFrame or a dict") as exc:
        th.thresholds_array([0.5, 0.5], ["a", "b"])
    assert (exc.value.name, exc.value.value) == ("table", "list")
    with pytest.raises(DataError, match="no 'threshold' column") as exc:
        th.thresholds_array(pd.DataFrame({"t": [0.5]}, index=["a"]), ["a"])
    assert exc.value.column == "threshold"
    with pytest.raises(DataError, match="do not match") as exc:
        th.thresholds_array({"a": 0.5}, ["a", "b"])
    assert "label map" in exc.value.hint


def test_save_thresholds_round_trip_keeps_every_field(tmp_path):
    y, p, labels = _two_labels()
    y = np.c_[y, np.zeros(len(y), dtype=int)]  # a third label without positives: F1 is NaN
    p = np.c_[p, np.full(len(p), 0.3)]
    table = th.tune_thresholds(y, p, labels + ["c"], min_support=2)
    path = tmp_path / "deep" / "er" / "thresholds.json"  # parents are created
    th.save_thresholds(table, path)
    th.save_thresholds(table, path)  # and an existing folder is fine
    saved = json.loads(path.read_text())
    assert saved["labels"] == ["a", "b", "c"]
    assert saved["validation_support"] == {"a": 3, "b": 3, "c": 0}
    assert all(type(v) is int for v in saved["validation_support"].values())
    assert saved["validation_f1"]["c"] is None  # NaN is written as null, not as NaN
    assert saved["validation_f1"]["a"] == pytest.approx(table.loc["a", "f1_tuned"])
    assert saved["validation_f1"]["a"] == 1.0
    assert saved["source"] == {"a": th.SOURCE_TUNED, "b": th.SOURCE_TUNED,
                               "c": th.SOURCE_NO_POSITIVES}
    assert saved["min_support"] == 2 and saved["fallback"] == "global"
    assert saved["global_threshold"] == table.attrs["global_threshold"]
    assert th.load_thresholds(path) == dict(zip(table.index, table["threshold"]))


def test_save_thresholds_refuses_what_is_not_a_thresholds_table(tmp_path):
    for bad in ({"a": 0.5}, pd.DataFrame({"support": [1]}, index=["a"])):
        with pytest.raises(ParameterError, match="tune_thresholds table") as exc:
            th.save_thresholds(bad, tmp_path / "t.json")
        assert (exc.value.name, exc.value.value) == ("table", type(bad).__name__)


def _write(tmp_path, document, name="thresholds.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_load_thresholds_accepts_the_bounds_and_keeps_the_saved_order(tmp_path):
    path = _write(tmp_path, {"labels": ["b", "a"], "thresholds": {"a": 0, "b": 1}})
    loaded = th.load_thresholds(path)
    assert list(loaded) == ["b", "a"] and loaded == {"a": 0.0, "b": 1.0}
    # Without "labels" the order of "thresholds" is kept.
    assert list(th.load_thresholds(_write(tmp_path, {"thresholds": {"b": 0.2, "a": 0.1}}))) \
        == ["b", "a"]


@pytest.mark.parametrize("document", [
    ["not", "an", "object"],
    {"thresholds": [0.5]},
    {"thresholds": {"a": True}},
    {"thresholds": {"a": "0.5"}},
    {"thresholds": {"a": -0.01}},
    {"thresholds": {"a": 1.01}},
    {"labels": ["a", "b"], "thresholds": {"a": 0.5}},
])
def test_load_thresholds_refuses_bad_files_and_names_them(tmp_path, document):
    path = _write(tmp_path, document)
    with pytest.raises(DataError) as exc:
        th.load_thresholds(path)
    assert exc.value.file == str(path)
    assert exc.value.message and exc.value.message != "None"


def test_load_thresholds_says_which_kind_of_file_is_missing(tmp_path):
    with pytest.raises(DataError, match="thresholds not found"):
        th.load_thresholds(tmp_path / "missing.json")


def test_check_fallback_accepts_0_and_1_and_names_the_parameter():
    assert th.check_fallback(0) == 0.0 and th.check_fallback(1) == 1.0
    for bad, value in (("local", "local"), (True, True), (1.5, 1.5), ([0.5], [0.5])):
        with pytest.raises(ParameterError, match="must") as exc:
            th.check_fallback(bad)
        assert (exc.value.name, exc.value.value) == ("fallback", value)
        assert "None" not in str(exc.value)


def test_tune_thresholds_min_support_bounds_default_and_index():
    y, p, labels = _two_labels()
    table = th.tune_thresholds(y, p, labels, min_support=1)  # 1 is allowed
    assert (table["source"] == th.SOURCE_TUNED).all()
    assert table.index.name == "label"
    # The default min_support is 5: a label with exactly 5 positives is tuned.
    y5 = np.array([[1]] * 5 + [[0]] * 5)
    p5 = np.linspace(0.9, 0.1, 10)[:, None]
    assert th.tune_thresholds(y5, p5, ["a"])["source"].tolist() == [th.SOURCE_TUNED]
    with pytest.raises(ParameterError, match="integer >= 1") as exc:
        th.tune_thresholds(y, p, labels, min_support=0)
    assert (exc.value.name, exc.value.value) == ("min_support", 0)
    with pytest.raises(DataError, match="no positives"):
        th.tune_thresholds(np.zeros_like(y), p, labels)


def test_best_f1_threshold_errors_name_the_argument():
    with pytest.raises(DataError, match="probs_col"):
        th.best_f1_threshold([1, 0], [0.5, 1.5])
    with pytest.raises(DataError, match="y_true_col"):
        th.best_f1_threshold([1, 2], [0.5, 0.5])


def test_f1_threshold_curves_grid_validation_at_its_edges():
    y, p, labels = _two_labels()
    for good in ([0.0, 1.0], [0.5]):
        assert len(th.f1_threshold_curves(y, p, labels, grid=good)) == 2 * len(good)
    for bad in ([0.5, 1.5], [-0.5, 0.5], [0.1, float("nan")], [[0.1, 0.2]], [0.2, 0.2], []):
        with pytest.raises(ParameterError, match="strictly increasing") as exc:
            th.f1_threshold_curves(y, p, labels, grid=bad)
        assert exc.value.name == "grid" and exc.value.value.startswith("array of shape")


def test_f1_threshold_curves_edge_labels(recwarn):
    # All probabilities below the top of the grid; one label with a single positive, one
    # without any: F1 is a number for the first and NaN for the second, without a warning.
    y = np.array([[1, 0], [0, 0], [0, 0]])
    p = np.full((3, 2), 0.5)
    curves = th.f1_threshold_curves(y, p, ["one", "none"])
    one = curves[curves["label"] == "one"].set_index("threshold")["f1"]
    assert one.loc[0.5] == pytest.approx(0.5) and one.iloc[-1] == 0.0
    assert curves.loc[curves["label"] == "none", "f1"].isna().all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_shrinkage_pulls_tuned_thresholds_toward_the_fallback_by_support():
    rng = np.random.default_rng(7)
    y = (rng.random((300, 3)) < [0.5, 0.1, 0.03]).astype(int)
    p = np.clip(y * 0.35 + rng.random((300, 3)) * 0.6, 0, 1)
    labels = ["many", "some", "few"]
    plain = th.tune_thresholds(y, p, labels, min_support=1, fallback=0.5)
    k = 20.0
    shrunk = th.tune_thresholds(y, p, labels, min_support=1, fallback=0.5, shrinkage=k)
    n = plain["support"].to_numpy(float)
    expected = (n * plain["threshold"] + k * 0.5) / (n + k)
    np.testing.assert_allclose(shrunk["threshold"], expected)
    # The label with the least support moves most of the way; the frequent one barely moves.
    moved = (shrunk["threshold"] - plain["threshold"]).abs() / (0.5 - plain["threshold"]).abs()
    assert moved["few"] > moved["some"] > moved["many"]
    assert shrunk.attrs["shrinkage"] == k
    for label in labels:  # the reported F1 is the F1 at the threshold actually used
        got = shrunk.loc[label, "f1_tuned"]
        j = labels.index(label)
        pred = p[:, j] >= shrunk.loc[label, "threshold"]
        tp = (pred & (y[:, j] == 1)).sum()
        assert got == pytest.approx(2 * tp / (pred.sum() + y[:, j].sum()))
    huge = th.tune_thresholds(y, p, labels, min_support=1, fallback=0.5, shrinkage=1e9)
    np.testing.assert_allclose(huge["threshold"], 0.5, atol=1e-6)


@pytest.mark.parametrize("bad", [-1, float("nan"), True, "20"])
def test_shrinkage_must_be_a_number_at_least_zero(bad):
    with pytest.raises(ParameterError, match="shrinkage"):
        th.tune_thresholds(np.eye(3, dtype=int), np.eye(3) * 0.9, ["a", "b", "c"],
                                   shrinkage=bad)


# --- a smoothed F1 curve (issue 12, item 6) ------------------------------------------------------

def _hemmed_in():
    """Five positives at 0.6, five negatives at 0.2 and one at 0.58: F1 is 1 only on the narrow
    band (0.58, 0.6] and 10/11 on the broad band (0.2, 0.58]."""
    p = np.array([0.6] * 5 + [0.2] * 5 + [0.58])
    y = np.array([1] * 5 + [0] * 6)
    return y, p


def test_the_exact_search_takes_the_narrow_band_and_smoothing_the_broad_one():
    y, p = _hemmed_in()
    exact, f1 = th.best_f1_threshold(y, p)
    assert 0.58 < exact <= 0.6 and f1 == 1.0
    table = th.tune_thresholds(y[:, None], p[:, None], ["a"], min_support=1, smoothing=0.05)
    smoothed = table.loc["a", "threshold"]
    assert 0.2 < smoothed < 0.5, smoothed  # well inside the band one text cannot close
    assert table.loc["a", "f1_tuned"] == pytest.approx(10 / 11)  # the F1 at the threshold used
    assert table.loc["a", "source"] == th.SOURCE_TUNED and table.attrs["smoothing"] == 0.05


def test_smoothed_thresholds_match_a_loop_over_the_grid():
    rng = np.random.default_rng(3)
    y = (rng.random((80, 3)) < [0.4, 0.1, 0.0]).astype(bool)
    p = np.round(rng.random((80, 3)), 2)
    grid, h = np.linspace(0.01, 0.99, 50), 0.08
    got = th.smoothed_f1_thresholds(y, p, h, grid)
    for j in range(2):
        f1 = np.array([f1_at(y[:, j], p[:, j], t) for t in grid])
        window = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / h) ** 2)
        smooth = (window @ f1) / window.sum(axis=1)
        best = np.flatnonzero(np.isclose(smooth, smooth.max(), rtol=0, atol=1e-12)).max()
        assert got[j] == grid[best]
    assert np.isnan(got[2])  # no positives: nothing to tune


def test_a_tiny_bandwidth_lands_next_to_the_exact_optimum():
    y, p, labels = _validation()
    exact = th.tune_thresholds(y, p, labels, min_support=1)
    smooth = th.tune_thresholds(y, p, labels, min_support=1, smoothing=1e-4)
    # The highest grid point that still predicts the exact cut's texts, with the same F1.
    step = th.SMOOTHING_GRID[1] - th.SMOOTHING_GRID[0]
    for j, label in enumerate(("a", "b")):
        lowest_taken = p[p[:, j] >= exact.loc[label, "threshold"], j].min()
        assert lowest_taken - step < smooth.loc[label, "threshold"] <= lowest_taken
        assert smooth.loc[label, "f1_tuned"] == pytest.approx(exact.loc[label, "f1_tuned"])


def test_smoothing_then_shrinkage_and_only_labels_with_support_are_smoothed():
    y, p, labels = _validation()
    smooth = th.tune_thresholds(y, p, labels, min_support=5, smoothing=0.05)
    both = th.tune_thresholds(y, p, labels, min_support=5, smoothing=0.05, shrinkage=40.0)
    g = smooth.attrs["global_threshold"]
    assert both.loc["a", "threshold"] == pytest.approx((40 * smooth.loc["a", "threshold"] + 40 * g) / 80)
    assert smooth.loc["b", "threshold"] == g and smooth.loc["c", "threshold"] == g  # fallbacks


def test_smoothing_is_saved_only_when_used(tmp_path):
    y, p, labels = _validation()
    th.save_thresholds(th.tune_thresholds(y, p, labels), tmp_path / "plain.json")
    th.save_thresholds(th.tune_thresholds(y, p, labels, smoothing=0.1), tmp_path / "smooth.json")
    assert "smoothing" not in json.loads((tmp_path / "plain.json").read_text())
    assert json.loads((tmp_path / "smooth.json").read_text())["smoothing"] == 0.1


@pytest.mark.parametrize("bad", [-0.01, 0.6, float("nan"), True, "0.1"])
def test_smoothing_must_be_a_bandwidth_in_0_to_a_half(bad):
    with pytest.raises(ParameterError, match="smoothing"):
        th.tune_thresholds(np.eye(3, dtype=int), np.eye(3) * 0.9, ["a", "b", "c"], smoothing=bad)
