"""One decision threshold per label, tuned on validation.

A fixed 0.5 is the classic multi-label failure: with many rare labels their probabilities seldom
reach 0.5 and the model predicts almost nothing. Each label with enough validation positives gets
the threshold that maximises its F1, found by an exact search over the distinct validation
probabilities; the others share one fallback threshold, because a threshold fitted to two
positives is fitted to noise.

Threshold convention: for the best cut "predict the texts scored >= s", the returned threshold
is the midpoint between s and the next lower distinct score (0 when s is the lowest). Every
threshold in that interval gives the same validation F1; the midpoint leaves the widest margin on
both sides for unseen texts. When rounding would push the midpoint onto the lower score, s itself
is returned, so ``probs >= threshold`` always reproduces the reported F1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.evaluation.metrics import as_probabilities, as_targets, check_inputs, check_labels
from mlclf_utils.artifacts import read_json, write_json

SOURCE_TUNED = "tuned"
SOURCE_LOW_SUPPORT = "fallback: support < min_support"
SOURCE_NO_POSITIVES = "fallback: no positives"
DEFAULT_GRID = np.linspace(0.01, 0.99, 99)
# Where a smoothed F1 curve is evaluated: fine enough that the grid is not the noise.
SMOOTHING_GRID = np.linspace(0.0025, 0.9975, 399)


def _column_pair(y_true_col, probs_col) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true_col)
    p = np.asarray(probs_col)
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise DataError(
            f"y_true_col and probs_col must be 1-d and of equal length; got shapes {y.shape} "
            f"and {p.shape}"
        )
    y = as_targets(y[:, None], "y_true_col")[:, 0]
    return y, as_probabilities(p[:, None], "probs_col")[:, 0]


def _best_cut(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Exact F1-optimal threshold for 1-d bool y (with a positive) and float p: O(n log n)."""
    order = np.argsort(-p, kind="stable")
    scores = p[order]
    tp = np.cumsum(y[order], dtype=np.int64)
    rank = np.arange(1, len(scores) + 1, dtype=np.int64)  # texts predicted when cutting here
    # Cut only after the last text of each run of equal scores: ">= s" takes all of them.
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    positives = int(tp[-1])
    f1 = 2 * tp[ends] / (rank[ends] + positives)
    best = int(np.argmax(f1))  # first maximum = highest threshold = fewest predictions
    score = float(scores[ends[best]])
    lower = float(scores[ends[best] + 1]) if best + 1 < len(ends) else 0.0
    threshold = lower + (score - lower) / 2
    if not lower < threshold <= score:
        threshold = score
    return threshold, float(f1[best])


def best_f1_threshold(y_true_col, probs_col) -> tuple[float, float]:
    """(threshold, F1) maximising F1 for one label; ties go to the highest threshold.

    Sorts once and counts true/false positives cumulatively, so every distinct score is tried
    in O(n log n). See the module docstring for where in the optimal interval the threshold
    sits. A label without positives has no F1 to maximise and raises DataError.
    """
    y, p = _column_pair(y_true_col, probs_col)
    if not y.any():
        raise DataError("y_true_col has no positives: F1 is undefined for every threshold")
    return _best_cut(y, p)


def _f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    pred = p >= threshold
    support = int(y.sum())
    if support == 0:
        return float("nan")
    return 2 * int(np.count_nonzero(y & pred)) / (support + int(np.count_nonzero(pred)))


def check_fallback(fallback, name: str = "fallback") -> str | float:
    if isinstance(fallback, str):
        if fallback != "global":
            raise ParameterError(name, fallback, 'must be "global" or a number in [0, 1]')
        return fallback
    if isinstance(fallback, (bool, np.bool_)) or not isinstance(fallback, (int, float, np.number)):
        raise ParameterError(name, fallback, 'must be "global" or a number in [0, 1]')
    if not 0 <= float(fallback) <= 1:
        raise ParameterError(name, fallback, "a fixed fallback threshold must be in [0, 1]")
    return float(fallback)


def check_smoothing(smoothing, name: str = "smoothing") -> float:
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) \
            or not math.isfinite(smoothing) or not 0 <= smoothing <= 0.5:
        raise ParameterError(name, smoothing,
                             "must be a bandwidth in [0, 0.5] (0: the exact F1 optimum)")
    return float(smoothing)


def smoothed_f1_thresholds(y: np.ndarray, p: np.ndarray, bandwidth: float,
                           grid=SMOOTHING_GRID) -> np.ndarray:
    """Per column, the grid threshold where F1 averaged over a Gaussian window of the
    threshold (sd ``bandwidth``) is highest: the middle of a broad plateau rather than the top
    of a spike a few validation texts made. Columns without positives get NaN."""
    g = np.asarray(grid, dtype=np.float64)
    f1 = _f1_grid(y, p, g)
    weights = np.exp(-0.5 * ((g[:, None] - g[None, :]) / bandwidth) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)  # near 0 and 1 the window is cut, not padded
    smoothed = np.nan_to_num(f1) @ weights.T
    # Ties go to the highest threshold, as in the exact search: fewest predictions.
    best = len(g) - 1 - np.argmax(smoothed[:, ::-1], axis=1)
    return np.where(y.any(axis=0), g[best], np.nan)


def check_shrinkage(shrinkage, name: str = "shrinkage") -> float:
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) \
            or not math.isfinite(shrinkage) or shrinkage < 0:
        raise ParameterError(name, shrinkage, "must be a number >= 0 (0: no shrinkage)")
    return float(shrinkage)


def tune_thresholds(
    y_true_val, probs_val, labels, *, min_support: int = 5, fallback: str | float = "global",
    shrinkage: float = 0.0, smoothing: float = 0.0,
) -> pd.DataFrame:
    """Per-label thresholds; a table indexed by label, with how each one was chosen.

    Columns: support, threshold, f1_tuned (validation F1 at the threshold actually used, also
    for fallback labels; NaN without positives), f1_at_0_5, source. ``fallback="global"`` is the
    one threshold shared by all labels that maximises micro-F1 over the whole validation matrix;
    a number is used as it is. ``table.attrs`` keeps min_support, fallback, shrinkage and
    global_threshold for save_thresholds.

    ``shrinkage`` k pulls each tuned threshold toward the fallback in proportion to how little
    validation support it has: ``(n t + k t_fallback) / (n + k)`` for a label with n positives.
    A threshold tuned on a few hundred validation texts is partly fitted to their noise; k = 0
    trusts it fully, and as k grows every label tends to the shared threshold.

    ``smoothing`` h > 0 tunes each label on its F1 curve smoothed over thresholds (a Gaussian
    window of sd h, ``smoothed_f1_thresholds``) instead of at the exact optimum; shrinkage, if
    any, then applies to that threshold.
    """
    if isinstance(min_support, (bool, np.bool_)) or not isinstance(min_support, (int, np.integer)) \
            or min_support < 1:
        raise ParameterError("min_support", min_support, "must be an integer >= 1")
    fallback = check_fallback(fallback)
    shrinkage = check_shrinkage(shrinkage)
    smoothing = check_smoothing(smoothing)
    y, p, names = check_inputs(y_true_val, probs_val, labels)
    global_threshold = None
    if fallback == "global":
        if not y.any():
            raise DataError(
                "y_true_val has no positives at all: there is nothing to tune thresholds on"
            )
        # A shared threshold's micro-F1 is the F1 of all (text, label) pairs pooled.
        global_threshold, _ = _best_cut(y.ravel(), p.ravel())
        fallback_value = global_threshold
    else:
        fallback_value = fallback

    support = y.sum(axis=0).astype(np.int64)
    smoothed = smoothed_f1_thresholds(y, p, smoothing) if smoothing > 0 else None
    rows = []
    for j, name in enumerate(names):
        col_y, col_p = y[:, j], p[:, j]
        if support[j] >= min_support:
            threshold, f1 = _best_cut(col_y, col_p)
            source = SOURCE_TUNED
            if smoothed is not None:
                threshold = float(smoothed[j])
                f1 = _f1_at(col_y, col_p, threshold)
            if shrinkage > 0:
                n = float(support[j])
                threshold = (n * threshold + shrinkage * fallback_value) / (n + shrinkage)
                f1 = _f1_at(col_y, col_p, threshold)
        else:
            threshold = fallback_value
            f1 = _f1_at(col_y, col_p, threshold)
            source = SOURCE_NO_POSITIVES if support[j] == 0 else SOURCE_LOW_SUPPORT
        rows.append((int(support[j]), float(threshold), f1, _f1_at(col_y, col_p, 0.5), source))
    table = pd.DataFrame.from_records(
        rows,
        columns=["support", "threshold", "f1_tuned", "f1_at_0_5", "source"],
        index=pd.Index(names, name="label"),
    )
    table.attrs.update(
        min_support=int(min_support), fallback=fallback, global_threshold=global_threshold,
        shrinkage=float(shrinkage), smoothing=float(smoothing),
    )
    return table


def thresholds_array(table, labels) -> np.ndarray:
    """(K,) thresholds in the order of ``labels``, from a tune_thresholds table or a dict.

    Refuses a table whose labels differ from ``labels``: thresholds made for another label map
    would be applied to the wrong columns.
    """
    if isinstance(table, pd.DataFrame):
        if "threshold" not in table.columns:
            raise DataError("the table has no 'threshold' column", column="threshold")
        mapping = dict(zip(map(str, table.index), table["threshold"].tolist()))
    elif isinstance(table, Mapping):
        mapping = {str(k): v for k, v in table.items()}
    else:
        raise ParameterError("table", type(table).__name__, "must be a DataFrame or a dict")
    labels = list(labels) if not isinstance(labels, str) else labels
    names = check_labels(labels, len(labels))
    missing = [x for x in names if x not in mapping]
    extra = [x for x in mapping if x not in set(names)]
    if missing or extra:
        raise DataError(
            f"thresholds and labels do not match: missing {missing[:10]}, unexpected {extra[:10]}",
            hint="tune the thresholds with the label map of this model",
        )
    values = np.array([mapping[x] for x in names], dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        raise DataError(f"threshold of {names[int(np.argmax(bad))]!r} is not in [0, 1]")
    return values


def _json_number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def save_thresholds(table: pd.DataFrame, path) -> Path:
    """JSON with the thresholds in label order and how they were made (from ``table.attrs``)."""
    if not isinstance(table, pd.DataFrame) or "threshold" not in table.columns:
        raise ParameterError("table", type(table).__name__, "must be a tune_thresholds table")
    names = [str(x) for x in table.index]
    values = thresholds_array(table, names)
    payload = {
        "labels": names,
        "thresholds": dict(zip(names, values.tolist())),
        "min_support": table.attrs.get("min_support"),
        "fallback": table.attrs.get("fallback"),
        "global_threshold": table.attrs.get("global_threshold"),
        "shrinkage": table.attrs.get("shrinkage", 0.0),
    }
    if table.attrs.get("smoothing"):  # only when used: the files 04 writes today are unchanged
        payload["smoothing"] = table.attrs["smoothing"]
    if "source" in table.columns:
        payload["source"] = dict(zip(names, table["source"].astype(str).tolist()))
    if "support" in table.columns:
        payload["validation_support"] = dict(zip(names, table["support"].astype(int).tolist()))
    if "f1_tuned" in table.columns:
        payload["validation_f1"] = dict(
            zip(names, [_json_number(float(v)) for v in table["f1_tuned"]])
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, payload)


def load_thresholds(path) -> dict[str, float]:
    """label -> threshold, in the saved label order; refuses files that are not thresholds."""
    path = Path(path)
    data = read_json(path, what="thresholds")
    if not isinstance(data, dict) or not isinstance(data.get("thresholds"), dict):
        raise DataError('expected an object with "thresholds": {label: value}', file=str(path))
    out = {}
    for name, value in data["thresholds"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 <= value <= 1:
            raise DataError(f"threshold of {name!r} is {value!r}, not in [0, 1]", file=str(path))
        out[name] = float(value)
    order = data.get("labels", list(out))
    if sorted(order) != sorted(out):
        raise DataError('"labels" and "thresholds" name different labels', file=str(path))
    return {name: out[name] for name in order}


def f1_threshold_curves(y_true, probs, labels, grid=DEFAULT_GRID) -> pd.DataFrame:
    """Long table (label, threshold, f1): each label's F1 at every grid threshold.

    Vectorised: one searchsorted places every probability between grid points, per-label
    histograms are counted with one bincount, and reverse cumulative sums give the predicted
    and true-positive counts at every threshold. F1 is NaN for labels without positives.
    """
    y, p, names = check_inputs(y_true, probs, labels)
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or len(g) == 0 or not np.isfinite(g).all() or g.min() < 0 or g.max() > 1 \
            or (np.diff(g) <= 0).any():
        raise ParameterError("grid", f"array of shape {g.shape}",
                             "must be a non-empty, strictly increasing 1-d array in [0, 1]")
    return pd.DataFrame({
        "label": np.repeat(np.array(names, dtype=object), len(g)),
        "threshold": np.tile(g, y.shape[1]),
        "f1": _f1_grid(y, p, g).ravel(),
    })


def _f1_grid(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(K, G) F1 of every column of bool ``y`` at every threshold of the increasing grid ``g``."""
    n_grid, k = len(g), y.shape[1]
    # count[i, j] = number of grid values <= p[i, j]: predicted at grid index t iff t < count.
    count = np.searchsorted(g, p, side="right")
    flat = (np.arange(k)[None, :] * (n_grid + 1) + count).ravel()
    size = k * (n_grid + 1)
    hist_all = np.bincount(flat, minlength=size).reshape(k, n_grid + 1)
    hist_pos = np.bincount(flat[y.ravel()], minlength=size).reshape(k, n_grid + 1)
    # at_least[:, c] = texts with count >= c; predicted at grid index t = at_least[:, t + 1].
    predicted = np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1][:, 1:]
    tp = np.cumsum(hist_pos[:, ::-1], axis=1)[:, ::-1][:, 1:]
    support = y.sum(axis=0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 2 * tp / (support + predicted), np.nan)
