"""Per-label positive weights p_c for BCE with logits, from the train split only.

With hundreds of labels most are rare: a tag on 1 text in 500 has 499 negatives for each
positive, so plain BCE learns to answer "no" and gets 99.8% of that label right. ``pos_weight``
multiplies the loss on positives to push back. The counts come from the train split only:
weights taken from validation or test would leak those splits into training.

Strategies, for ratio r = negatives / positives:

- ``none``: 1 (plain BCE).
- ``ratio``: r. Positives and negatives weigh the same in total, but a 1-in-10,000 label gets
  weight ~10,000, whose gradients swamp every other label and flood it with false positives.
- ``sqrt``: sqrt(r), the usual compromise.
- ``damped``: r for r <= 1, 1 + ln r above; see ``damped_weight``.

``floor`` and ``cap`` are applied afterwards; the table says which labels they touched.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.artifacts import read_json

STRATEGIES = ("none", "ratio", "sqrt", "damped")
COLUMNS = ["positives", "negatives", "ratio", "raw_weight", "weight", "clipped"]


def damped_weight(ratio: np.ndarray) -> np.ndarray:
    """r for r <= 1 and 1 + ln r above: the rare tail is pulled in logarithmically.

    Why this form:
    - a balanced label (r = 1) keeps weight 1, and the two pieces meet there with the same
      slope, so the weight is smooth and strictly increasing: the order of the labels is kept;
    - growth is logarithmic, so a 1-in-10,000 label gets ~10 where ``sqrt`` gives ~100 and
      ``ratio`` ~10,000: the spread max/min shrinks the most exactly where labels are rarest;
    - it depends on the label's own counts only, so adding or dropping other labels never
      changes a weight. Shrinking toward the median ratio in log space does not have that
      property, and with exponent 1/2 it is just sqrt(r) times the constant sqrt(median), the
      same spread as ``sqrt``.
    - below r = 1 (labels on most texts) it is r itself, and ``floor`` keeps those usable.
    """
    ratio = np.asarray(ratio, dtype=float)
    return np.where(ratio > 1, 1 + np.log(np.maximum(ratio, 1)), ratio)


def _check_bound(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
            or not math.isfinite(value) or value <= 0:
        raise ParameterError(name, value, "must be a finite number > 0, or None for no bound")
    return float(value)


def _as_targets(train_targets) -> np.ndarray:
    """0/1 matrix as floats; anything else names the first bad rows (of the train split)."""
    if hasattr(train_targets, "detach"):  # a torch tensor from an earlier stage
        train_targets = train_targets.detach().cpu().numpy()
    array = np.asarray(train_targets)
    if array.ndim != 2:
        raise ParameterError("train_targets", f"array of shape {array.shape}",
                             "must be a 2-D (N, C) multi-hot matrix of the train split")
    if array.dtype == bool:
        return array.astype(float)
    if not (np.issubdtype(array.dtype, np.number)):
        raise ParameterError("train_targets", f"array of dtype {array.dtype}",
                             "must hold numbers 0/1 (multi-hot)")
    bad_rows = np.flatnonzero(~np.isin(array, (0, 1)).all(axis=1))
    if bad_rows.size:
        found = np.unique(array[bad_rows][~np.isin(array[bad_rows], (0, 1))])[:5]
        raise DataError(f"train_targets must be 0/1 multi-hot; found values {found.tolist()}",
                        rows=bad_rows.tolist(), hint="rows count from 0 within the train split")
    return array.astype(float)


def compute_pos_weight(train_targets: np.ndarray, labels: Sequence[str], *, strategy: str = "sqrt",
                       floor: float | None = 0.5, cap: float | None = None) -> pd.DataFrame:
    """One row per label: counts, ratio, the strategy's weight and the final (clipped) weight.

    ``floor`` defaults to 0.5 because below that a label's positives get so little gradient
    that the weight stops the model from learning the label instead of helping it. Pass the
    train split only: validation or test counts would leak into training.
    """
    if strategy not in STRATEGIES:
        raise ParameterError("pos_weight_strategy", strategy, f"must be one of {list(STRATEGIES)}")
    floor = _check_bound("pos_weight_floor", floor)
    cap = _check_bound("pos_weight_cap", cap)
    if floor is not None and cap is not None and cap < floor:
        raise ParameterError("pos_weight_cap", cap, f"must be >= pos_weight_floor={floor:g}")
    if isinstance(labels, str):
        raise ParameterError("labels", labels, "must be a sequence of label names, not one string")
    labels = [str(label) for label in labels]
    if len(set(labels)) != len(labels):
        repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
        raise ParameterError("labels", repeated[:10], "label names must be unique")
    targets = _as_targets(train_targets)
    if targets.shape[1] != len(labels):
        raise ParameterError("labels", f"{len(labels)} names",
                             f"train_targets has {targets.shape[1]} columns (C); "
                             "there must be one label name per column")

    positives = targets.sum(axis=0).round().astype(np.int64)
    negatives = targets.shape[0] - positives
    missing = [label for label, count in zip(labels, positives) if count == 0]
    if missing:
        names = ", ".join(repr(label) for label in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        subject = f"label {names}" if len(missing) == 1 else f"labels {names}{more}"
        verb = "has" if len(missing) == 1 else "have"
        raise DataError(f"{subject} {verb} no positive example in the train split; "
                        "pos_weight is undefined",
                        hint="drop the label, lower its frequency threshold, or re-split so "
                             "train holds at least one positive")

    ratio = negatives / positives
    raw = {"none": np.ones_like(ratio), "ratio": ratio, "sqrt": np.sqrt(ratio),
           "damped": damped_weight(ratio)}[strategy]
    weight = np.clip(raw, floor, cap) if (floor is not None or cap is not None) else raw.copy()
    clipped = np.where(raw < weight, "floor", np.where(raw > weight, "cap", ""))
    table = pd.DataFrame({"positives": positives, "negatives": negatives, "ratio": ratio,
                          "raw_weight": raw, "weight": weight, "clipped": clipped},
                         index=pd.Index(labels, name="label"))
    table.attrs.update(strategy=strategy, floor=floor, cap=cap, n_train=int(targets.shape[0]))
    return table


def _weights(table) -> dict[str, float]:
    """Label -> final weight, from a compute_pos_weight table or a load_pos_weight dict."""
    if isinstance(table, pd.DataFrame):
        if "weight" not in table.columns:
            raise ParameterError("table", f"columns {list(table.columns)}",
                                 "needs a 'weight' column; build it with compute_pos_weight")
        return {str(label): float(w) for label, w in table["weight"].items()}
    if isinstance(table, Mapping):
        return {str(label): float(w) for label, w in table.items()}
    raise ParameterError("table", type(table).__name__,
                         "must be a compute_pos_weight table or a label -> weight dict")


def weights_tensor(table) -> torch.Tensor:
    """float32, in the table's label order (the model's output order), for pos_weight."""
    return torch.tensor(list(_weights(table).values()), dtype=torch.float32)


def save_pos_weight(table, path) -> Path:
    """JSON next to the saved model, in label order, with how the weights were made."""
    weights = _weights(table)
    bad = [label for label, w in weights.items() if not math.isfinite(w) or w < 0]
    if bad:
        raise ParameterError("table", bad[:10], "weights must be finite and non-negative")
    attrs = table.attrs if isinstance(table, pd.DataFrame) else {}
    document = {"strategy": attrs.get("strategy"), "floor": attrs.get("floor"),
                "cap": attrs.get("cap"), "pos_weight": weights}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not artifacts.write_json: it escapes non-ASCII, and label names must stay readable here.
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_pos_weight(path) -> dict[str, float]:
    """Label -> weight in the saved order; a broken file names itself."""
    path = Path(path)
    document = read_json(path, what="pos_weight file",
                              hint="save_pos_weight writes it when the model is saved")
    weights = document.get("pos_weight") if isinstance(document, dict) else None
    if not isinstance(weights, dict):
        raise DataError("expected an object with a 'pos_weight' mapping of label -> weight",
                        file=str(path))
    bad = [label for label, w in weights.items()
           if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0]
    if bad:
        raise DataError(f"weights must be finite numbers >= 0; bad labels {bad[:10]!r}", file=str(path))
    return {label: float(w) for label, w in weights.items()}
