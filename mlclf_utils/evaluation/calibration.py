"""Per-label calibration of the sigmoid outputs, fitted on validation.

``pos_weight`` moves every weighted label's probabilities up (03 derives by how much), so the
raw outputs over-state how often a label applies. A per-label map ``sigmoid(a * logit + b)``
(Platt scaling; temperature scaling is the special case ``b = 0``) fitted by maximum likelihood
on validation brings them back. The map is strictly increasing (``a > 0``), so it reorders
nothing: ROC-AUC and average precision do not move, and a threshold tuned on calibrated
validation probabilities makes exactly the decisions the same F1-optimal cut made before.

A label with fewer than ``min_support`` validation positives cannot support a fit of its own;
it gets the map fitted to all pooled (text, label) pairs. Isotonic regression is not offered:
with the handful of positives most labels have, its steps are fitted to noise, and a
piecewise-constant map would tie scores that thresholds must separate.

Applying a fitted map lives in ``calibration_maps`` (numpy only), because it runs wherever a
bundle predicts; its names are importable from here too, where 04 looks for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlclf_utils.artifacts import write_json
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.evaluation.calibration_maps import (METHODS, apply_calibration,
                                                     check_calibration_labels, load_calibration,
                                                     logit, sigmoid)
from mlclf_utils.evaluation.metrics import check_inputs

__all__ = ["METHODS", "SOURCE_OWN", "SOURCE_POOLED", "apply_calibration", "calibrate_splits",
           "check_calibration_labels", "fit_calibration", "load_calibration", "logit",
           "save_calibration"]

SOURCE_OWN, SOURCE_POOLED = "own fit", "pooled: support < min_support"


def _loss(z: np.ndarray, y: np.ndarray, a: float, b: float, ridge: float) -> float:
    x = a * z + b
    # mean of log(1 + e^x) - y x, written stably, plus the ridge
    return float(np.mean(np.logaddexp(0.0, x) - y * x) + ridge / 2 * ((a - 1) ** 2 + b ** 2))


def _fit_one(z: np.ndarray, y: np.ndarray, method: str, iterations: int = 100) -> tuple[float, float]:
    """Newton's method with backtracking on the mean log-loss of ``sigmoid(a z + b)``, which is
    convex in (a, b); plain Newton overshoots from far away and must not be trusted alone.

    A small ridge on ``a - 1`` and ``b`` keeps the fit finite when the classes separate
    perfectly (the likelihood then grows without bound)."""
    ridge = 1e-3
    a, b = 1.0, 0.0
    current = _loss(z, y, a, b, ridge)
    for _ in range(iterations):
        q = sigmoid(a * z + b)
        r = q - y
        w = q * (1 - q)
        grad_a = np.mean(r * z) + ridge * (a - 1)
        hess_aa = np.mean(w * z * z) + ridge
        if method == "temperature":
            step_a, step_b = grad_a / hess_aa, 0.0
        else:
            grad_b = np.mean(r) + ridge * b
            hess_ab, hess_bb = np.mean(w * z), np.mean(w) + ridge
            det = hess_aa * hess_bb - hess_ab ** 2
            step_a = (hess_bb * grad_a - hess_ab * grad_b) / det
            step_b = (hess_aa * grad_b - hess_ab * grad_a) / det
        scale = 1.0
        while scale > 1e-8:
            new_a, new_b = max(a - scale * step_a, 1e-3), b - scale * step_b  # increasing only
            new = _loss(z, y, new_a, new_b, ridge)
            if new <= current:
                break
            scale /= 2
        else:
            break  # no step lowers the loss: at the optimum, up to rounding
        moved = abs(new_a - a) + abs(new_b - b)
        a, b, current = new_a, new_b, new
        if moved < 1e-10:
            break
    return float(a), float(b)


def fit_calibration(y_true_val, probs_val, labels, *, method: str = "platt",
                    min_support: int = 5) -> dict:
    """One map per label, fitted on validation; JSON-ready (see :func:`save_calibration`)."""
    if method not in METHODS:
        raise ParameterError("calibration", method, f"choose one of {list(METHODS)} or None")
    if isinstance(min_support, bool) or not isinstance(min_support, int) or min_support < 1:
        raise ParameterError("min_support", min_support, "must be an integer >= 1")
    y, p, names = check_inputs(y_true_val, probs_val, labels)
    z = logit(p)
    y = y.astype(np.float64)
    if not y.any() or y.all():
        raise DataError("the validation targets are all negative or all positive: there is "
                        "nothing to calibrate against")
    pooled = _fit_one(z.ravel(), y.ravel(), method)
    support = y.sum(axis=0).astype(int)
    a, b, source = [], [], []
    for j in range(len(names)):
        negatives = len(y) - support[j]
        if support[j] >= min_support and negatives >= min_support:
            aj, bj = _fit_one(z[:, j], y[:, j], method)
            source.append(SOURCE_OWN)
        else:
            aj, bj = pooled
            source.append(SOURCE_POOLED)
        a.append(aj)
        b.append(bj)
    return {"method": method, "fitted_on": "validation", "min_support": min_support,
            "labels": names, "a": a, "b": b, "pooled": {"a": pooled[0], "b": pooled[1]},
            "source": source, "validation_support": support.tolist()}


def save_calibration(calibration: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, calibration)


def calibrate_splits(y: dict, probs: dict, labels, *, method: str | None,
                     min_support: int = 5, fit_on: str = "validation"):
    """For 04: fit on ``fit_on``, apply to every split, and measure the expected calibration
    error (ECE) of each split before and after. ``method=None`` keeps the raw outputs.

    Returns ``(calibration or None, calibrated probs by split, ECE table)``."""
    import pandas as pd

    from mlclf_utils.evaluation.plots import expected_calibration_error

    calibration = (fit_calibration(y[fit_on], probs[fit_on], labels, method=method,
                                   min_support=min_support) if method is not None else None)
    calibrated = {name: apply_calibration(calibration, p, labels) for name, p in probs.items()}
    table = pd.DataFrame({
        "ECE raw": {name: expected_calibration_error(y[name], probs[name]) for name in probs},
        "ECE calibrated": {name: expected_calibration_error(y[name], calibrated[name])
                           for name in probs},
    }).rename_axis("split")
    if calibration is not None:
        table.attrs["labels with their own fit"] = calibration["source"].count(SOURCE_OWN)
    return calibration, calibrated, table
