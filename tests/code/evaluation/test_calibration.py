"""Per-label calibration: it must undo a known distortion, never reorder, and round-trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.evaluation import calibration, thresholds
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.evaluation.plots import expected_calibration_error

LABELS = ["frequent", "middle", "rare"]


def _distorted(seed=0, n=4000, a=(2.0, 0.5, 1.5), b=(1.5, -1.0, 0.5), rates=(0.4, 0.2, 0.01)):
    """Targets drawn from true probabilities q; the "model" reports sigmoid(a * logit(q) + b),
    which is what an over-confident or pos_weight-shifted head looks like."""
    rng = np.random.default_rng(seed)
    base = np.log(np.asarray(rates) / (1 - np.asarray(rates)))
    true_logit = base + rng.normal(0, 1.5, size=(n, 3))
    q = 1 / (1 + np.exp(-true_logit))
    y = (rng.random((n, 3)) < q).astype(np.int8)
    reported = 1 / (1 + np.exp(-(np.asarray(a) * true_logit + np.asarray(b))))
    return y, reported, q


def test_platt_scaling_undoes_a_known_distortion_where_there_is_support():
    y, reported, q = _distorted()
    fitted = calibration.fit_calibration(y, reported, LABELS, min_support=5)
    calibrated = calibration.apply_calibration(fitted, reported, LABELS)
    # The two supported labels get their own fit and come back close to the truth ...
    assert fitted["source"][:2] == [calibration.SOURCE_OWN] * 2
    np.testing.assert_allclose(fitted["a"][:2], [1 / 2.0, 1 / 0.5], rtol=0.15)
    for j in (0, 1):
        assert np.abs(calibrated[:, j] - q[:, j]).mean() < 0.02 < np.abs(reported[:, j] - q[:, j]).mean()
    # ... and the whole matrix is better calibrated on fresh data from the same process.
    y2, reported2, _ = _distorted(seed=1)
    after = expected_calibration_error(y2, calibration.apply_calibration(fitted, reported2, LABELS))
    assert after < 0.5 * expected_calibration_error(y2, reported2)


def test_a_label_with_too_few_positives_takes_the_pooled_map():
    y, reported, _ = _distorted(n=600)
    assert y[:, 2].sum() < 40
    fitted = calibration.fit_calibration(y, reported, LABELS, min_support=40)
    assert fitted["source"][2] == calibration.SOURCE_POOLED
    assert (fitted["a"][2], fitted["b"][2]) == (fitted["pooled"]["a"], fitted["pooled"]["b"])


def test_temperature_scaling_moves_no_intercept():
    y, reported, _ = _distorted()
    fitted = calibration.fit_calibration(y, reported, LABELS, method="temperature")
    assert fitted["b"] == [0.0, 0.0, 0.0] and all(a > 0 for a in fitted["a"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), slope=st.floats(0.2, 4.0), shift=st.floats(-3, 3))
def test_the_map_never_reorders_texts_so_ranking_and_tuned_f1_stay(seed, slope, shift):
    y, reported, _ = _distorted(seed=seed, n=800, a=(slope,) * 3, b=(shift,) * 3,
                                rates=(0.3, 0.2, 0.1))
    fitted = calibration.fit_calibration(y, reported, LABELS)
    calibrated = calibration.apply_calibration(fitted, reported, LABELS)
    for j in range(3):
        order = np.argsort(reported[:, j], kind="stable")
        assert np.all(np.diff(calibrated[order, j]) >= -1e-12)
    # Tuned on either, the best validation F1 of a label is the same cut of the same texts.
    raw = thresholds.tune_thresholds(y, reported, LABELS, min_support=1)
    cal = thresholds.tune_thresholds(y, calibrated, LABELS, min_support=1)
    np.testing.assert_allclose(raw["f1_tuned"], cal["f1_tuned"], atol=1e-12)


def test_none_returns_the_probabilities_unchanged():
    p = np.array([[0.2, 0.7, 0.01]])
    assert calibration.apply_calibration(None, p) is not None
    np.testing.assert_array_equal(calibration.apply_calibration(None, p), p)


def test_save_and_load_round_trip(tmp_path):
    y, reported, _ = _distorted(n=500)
    fitted = calibration.fit_calibration(y, reported, LABELS)
    path = calibration.save_calibration(fitted, tmp_path / "calibration.json")
    loaded = calibration.load_calibration(path)
    np.testing.assert_allclose(calibration.apply_calibration(loaded, reported, LABELS),
                               calibration.apply_calibration(fitted, reported, LABELS))


@pytest.mark.parametrize(("change", "words"), [
    ({"method": "isotonic"}, "method must be one of"),
    ({"a": [1.0, 1.0]}, '"a" must hold one finite number per label'),
    ({"b": [0.0, float("nan"), 0.0]}, '"b" must hold one finite number'),
    ({"a": [1.0, -0.5, 1.0]}, "may not reorder"),
    ({"a": [1.0, True, 1.0]}, '"a" must hold'),
])
def test_load_refuses_a_broken_file_naming_it(tmp_path, change, words):
    good = {"method": "platt", "labels": LABELS, "a": [1.0] * 3, "b": [0.0] * 3}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(good | change))
    with pytest.raises(DataError, match=words) as caught:
        calibration.load_calibration(path)
    assert str(path) in str(caught.value)


def test_a_calibration_for_other_labels_is_refused():
    fitted = {"method": "platt", "labels": LABELS, "a": [1.0] * 3, "b": [0.0] * 3}
    with pytest.raises(DataError, match="other labels"):
        calibration.apply_calibration(fitted, np.full((2, 3), 0.5), ["rare", "middle", "frequent"])
    with pytest.raises(DataError, match="3 columns"):
        calibration.apply_calibration(fitted, np.full((2, 2), 0.5))


def test_bad_arguments_name_the_parameter():
    y, reported, _ = _distorted(n=200)
    with pytest.raises(ParameterError, match="calibration"):
        calibration.fit_calibration(y, reported, LABELS, method="isotonic")
    with pytest.raises(ParameterError, match="min_support"):
        calibration.fit_calibration(y, reported, LABELS, min_support=0)
    with pytest.raises(DataError, match="nothing to calibrate"):
        calibration.fit_calibration(np.zeros_like(y), reported, LABELS)


def test_calibrate_splits_measures_ece_before_and_after():
    y, reported, _ = _distorted(n=1500)
    y2, reported2, _ = _distorted(seed=3, n=1500)
    fitted, calibrated, table = calibration.calibrate_splits(
        {"validation": y, "test": y2}, {"validation": reported, "test": reported2}, LABELS,
        method="platt")
    assert fitted["fitted_on"] == "validation" and set(calibrated) == {"validation", "test"}
    assert table.loc["test", "ECE calibrated"] < table.loc["test", "ECE raw"]
    off, same, table_off = calibration.calibrate_splits(
        {"test": y2}, {"test": reported2}, LABELS, method=None, fit_on="test")
    assert off is None and np.array_equal(same["test"], reported2)
    assert table_off.loc["test", "ECE calibrated"] == table_off.loc["test", "ECE raw"]
