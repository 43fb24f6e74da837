"""A fitted calibration as data: check it, load it, apply it.

``calibration`` fits the per-label maps in 04; this module is the part that runs wherever a
bundle predicts. It needs nothing but numpy, because the SageMaker export copies it into the
container next to ``predict``, and the container has neither scipy nor scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlclf_utils.artifacts import read_json
from mlclf_utils.errors import DataError

METHODS = ("temperature", "platt")
EPS = 1e-15  # keeps logit(p) finite for p of exactly 0 or 1, and ties no float64 scores


def logit(probs) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x) -> np.ndarray:
    """The logistic function without overflow: ``exp`` only ever sees ``-|x|``."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def check_calibration_labels(calibration: dict, labels) -> None:
    """A calibration is per label and in label order; one made for another model must not run."""
    if list(labels) != list(calibration["labels"]):
        raise DataError("the calibration was fitted for other labels (or another order)",
                        hint="fit it with this model's label map")


def apply_calibration(calibration: dict | None, probs, labels=None) -> np.ndarray:
    """Calibrated probabilities, column by column; ``None`` returns them unchanged."""
    p = np.asarray(probs, dtype=np.float64)
    if calibration is None:
        return p
    names = calibration["labels"]
    if labels is not None:
        check_calibration_labels(calibration, labels)
    if p.ndim != 2 or p.shape[1] != len(names):
        raise DataError(f"probabilities of shape {p.shape} do not have {len(names)} columns")
    a, b = np.asarray(calibration["a"]), np.asarray(calibration["b"])
    return sigmoid(logit(p) * a + b)


def load_calibration(path) -> dict:
    """A saved calibration, checked: a broken file must fail here, not as silent garbage."""
    path = Path(path)
    data = read_json(path, what="calibration")
    if not isinstance(data, dict) or data.get("method") not in METHODS:
        raise DataError(f"not a calibration file: method must be one of {list(METHODS)}",
                        file=str(path))
    names = data.get("labels")
    if not isinstance(names, list) or not names or len(set(names)) != len(names) or not all(
            isinstance(x, str) and x.strip() for x in names):
        raise DataError('"labels" must be a list of unique, non-empty label names',
                        file=str(path))
    for key in ("a", "b"):
        values = data.get(key)
        if not isinstance(values, list) or len(values) != len(names) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                for v in values):
            raise DataError(f'"{key}" must hold one finite number per label', file=str(path))
    if min(data["a"]) <= 0:
        raise DataError('"a" must be positive: a calibration map may not reorder texts',
                        file=str(path))
    return data
