"""Tests for mlclf_utils.thresholds: exact F1 search, fallbacks, saved files, F1 curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils import thresholds as th
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
