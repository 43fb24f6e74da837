"""Stage 04: probabilities, calibration, thresholds, metrics, baselines and the bundle."""

from __future__ import annotations

from mlclf_utils import artifacts
from mlclf_utils.errors import check_positive_int

STAGE = artifacts.EVALUATE


def check(params: dict) -> None:
    from mlclf_utils.evaluation import thresholds

    for name in ("min_support", "batch_size", "worst_n"):
        if name in params:
            check_positive_int(name, params[name])
    if "threshold_fallback" in params:
        thresholds.check_fallback(params["threshold_fallback"], "threshold_fallback")
    if "threshold_shrinkage" in params:
        thresholds.check_shrinkage(params["threshold_shrinkage"], "threshold_shrinkage")
