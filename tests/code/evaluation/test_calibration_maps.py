"""Applying a calibration with numpy alone, as an endpoint does: the same numbers as 04's fit."""

import json

import numpy as np
import pytest
from scipy.special import expit

from mlclf_utils.errors import DataError
from mlclf_utils.evaluation import calibration, calibration_maps


def test_sigmoid_agrees_with_scipy_to_rounding_without_overflow_warnings():
    x = np.concatenate([np.linspace(-800, 800, 4001), [-np.inf, np.inf, 0.0, -0.0, 1e-300]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        ours = calibration_maps.sigmoid(x)
    assert np.allclose(ours, expit(x), rtol=1e-15, atol=1e-300)
    assert ours[-5] == 0.0 and ours[-4] == 1.0 and ours[-3] == 0.5


def test_applied_map_is_the_fitted_map():
    rng = np.random.default_rng(0)
    y = rng.random((400, 2)) < 0.3
    probs = np.clip(np.where(y, 0.7, 0.4) + rng.normal(0, 0.15, y.shape), 0.01, 0.99)
    fitted = calibration.fit_calibration(y, probs, ["a", "b"])
    applied = calibration_maps.apply_calibration(fitted, probs, ["a", "b"])
    a, b = np.asarray(fitted["a"]), np.asarray(fitted["b"])
    assert np.allclose(applied, expit(a * calibration_maps.logit(probs) + b), rtol=0, atol=1e-15)


@pytest.mark.parametrize("labels", [["a", "a"], ["a", ""], "ab", None, []])
def test_a_file_with_bad_label_names_is_refused_naming_it(tmp_path, labels):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"method": "platt", "labels": labels, "a": [1.0, 1.0],
                                "b": [0.0, 0.0]}))
    with pytest.raises(DataError, match="calibration.json"):
        calibration_maps.load_calibration(path)


def test_the_fitting_module_still_offers_the_applying_names():
    """04's notebook and stage module use calibration.apply_calibration and friends."""
    for name in ("apply_calibration", "load_calibration", "check_calibration_labels", "logit"):
        assert getattr(calibration, name) is getattr(calibration_maps, name)
