"""Stage 05: integrated gradients, over-fitted tokens, hard negatives and the retrain."""

from __future__ import annotations

from mlclf_utils import artifacts
from mlclf_utils.errors import check_positive_int

STAGE = artifacts.EXPLAIN


def check(params: dict) -> None:
    for name in ("n_classes", "n_per_kind", "n_steps", "internal_batch_size", "max_pairs",
                 "oversample_factor"):
        if name in params:
            check_positive_int(name, params[name])
