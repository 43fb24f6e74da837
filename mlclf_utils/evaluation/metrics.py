"""Multi-label metrics that say what they left out.

A split rarely has a positive for every label. sklearn then scores that label's recall and F1
as 0 (with a warning nobody reads), which drags the macro averages down for a reason that has
nothing to do with the model. Here such a label is NaN in the per-class table, left out of the
macro averages, and named in the report. Everything else matches sklearn exactly; the tests
check that.

Conventions (all documented in the report's docstring as well):

* A prediction is ``probs >= threshold``, per column.
* Micro averages, samples-F1, subset accuracy and Hamming loss pool every (text, label) decision,
  including labels without positives: a false positive on such a label is a real error.
* Precision of a label that is never predicted is undefined. The per-class table shows NaN
  (and ``predicted == 0`` says why); the macro and micro averages count it as 0, as sklearn's
  ``zero_division=0`` does, because leaving it out would reward a model that stays silent on the
  labels it finds hard.
* Samples-F1 scores a text with no true and no predicted label as 1 (it is right), like
  sklearn's ``zero_division=1.0``; texts with at least one label are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.data.label_map import LabelMap

STATUS_OK = "ok"
STATUS_NO_POSITIVES = "no positives in this split"
STATUS_NO_NEGATIVES = "no negatives in this split"

REPORT_METRICS = (
    "micro_f1", "macro_f1", "weighted_f1", "samples_f1",
    "micro_precision", "micro_recall", "macro_precision", "macro_recall",
    "subset_accuracy", "hamming_loss",
    "micro_roc_auc", "macro_roc_auc", "micro_average_precision", "macro_average_precision",
)
# The only report metric where smaller is better; compare_reports says so in its "better" column.
LOWER_IS_BETTER = frozenset({"hamming_loss"})


# --- input checks, shared by thresholds, evaluation_plots and misclassifications -------------

def _shape_text(a: np.ndarray) -> str:
    return f"shape {a.shape}" if a.ndim else "a scalar"


def as_targets(y_true, name: str = "y_true") -> np.ndarray:
    """A 0/1 (N, K) matrix as bool; anything else is a DataError naming the argument."""
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise DataError(f"{name} must be a 2-d (texts, labels) 0/1 matrix; got {_shape_text(y)}")
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{name} must be numeric 0/1; got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{name} must hold only 0 and 1; found {y[bad][0].item()!r} "
            "(rows are 0-based positions)",
            rows=rows.tolist(),
        )
    return y.astype(bool)


def as_probabilities(probs, name: str = "probs") -> np.ndarray:
    """An (N, K) float64 matrix in [0, 1]; logits or NaN are refused, naming the rows."""
    p = np.asarray(probs)
    if p.ndim != 2:
        raise DataError(f"{name} must be a 2-d (texts, labels) matrix; got {_shape_text(p)}")
    if p.dtype == bool or not np.issubdtype(p.dtype, np.number):
        raise DataError(f"{name} must be float probabilities; got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{name} must be probabilities in [0, 1]; found {p[bad][0].item()!r} "
            "(rows are 0-based positions)",
            rows=rows.tolist(),
            hint="apply a sigmoid to the logits first" if np.isfinite(p).all() else None,
        )
    return p


def check_labels(labels, n_columns: int, name: str = "labels") -> list[str]:
    """Unique non-empty names, one per column."""
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise ParameterError(name, labels, "must be a list of label names")
    names = LabelMap(list(labels)).names  # unique, non-empty strings, or DataError
    if len(names) != n_columns:
        raise DataError(f"{name} has {len(names)} names but the matrices have {n_columns} columns")
    return names


def check_inputs(y_true, probs, labels=None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Validate the usual trio; returns (y as bool, probs as float64, labels as list)."""
    y = as_targets(y_true)
    p = as_probabilities(probs)
    if y.shape != p.shape:
        raise DataError(f"probs has shape {p.shape} but y_true has shape {y.shape}")
    if y.shape[0] == 0:
        raise DataError("y_true has no rows: there is nothing to evaluate")
    names = check_labels(labels, y.shape[1]) if labels is not None else None
    return y, p, names


def threshold_vector(thresholds, n_labels: int, name: str = "thresholds") -> np.ndarray:
    """A float or a (K,) array -> (K,) float64, every value in [0, 1]."""
    if isinstance(thresholds, (bool, np.bool_)):
        raise ParameterError(name, thresholds, "must be a number in [0, 1] or one per label")
    t = np.asarray(thresholds)
    shown = thresholds if t.ndim == 0 else f"array of shape {t.shape}"
    if t.dtype == bool or not np.issubdtype(t.dtype, np.number):
        raise ParameterError(name, shown, "must be a number in [0, 1] or one per label")
    if t.ndim == 0:
        t = np.full(n_labels, float(t))
    elif t.shape != (n_labels,):
        raise ParameterError(name, shown, f"must be a number or an array of shape ({n_labels},)")
    t = t.astype(np.float64)
    bad = ~np.isfinite(t) | (t < 0) | (t > 1)
    if bad.any():
        raise ParameterError(
            name, shown, f"every threshold must be in [0, 1]; column {int(np.argmax(bad))} is "
            f"{t[bad][0].item()!r}"
        )
    return t


# --- predictions and counts -------------------------------------------------------------

def predict_with_thresholds(probs, thresholds) -> np.ndarray:
    """Boolean (N, K) predictions, ``probs >= threshold`` column by column."""
    p = as_probabilities(probs)
    return p >= threshold_vector(thresholds, p.shape[1])[None, :]


def _counts(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.count_nonzero(y & pred, axis=0)
    support = np.count_nonzero(y, axis=0)
    predicted = np.count_nonzero(pred, axis=0)
    n = y.shape[0]
    return {
        "support": support, "predicted": predicted, "tp": tp,
        "fp": predicted - tp, "fn": support - tp, "tn": n - support - predicted + tp,
    }


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float, NaN where den is 0 (undefined, not 0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


# Columns are ranked in blocks of about this many cells, to bound memory on big test sets.
RANKING_BLOCK_CELLS = 2_000_000


def _ranking_block(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and AP for every column of a block at once, ties handled as sklearn does.

    One sort per column; each text then looks up the end (and start) of its run of equal
    scores. AP: each positive adds 1/P of recall at the precision reached at the end of its
    run. AUC: each positive wins against the negatives ranked below its run and half-wins
    against the negatives tied with it (Mann-Whitney).
    """
    n = y.shape[0]
    order = np.argsort(-p, axis=0, kind="stable")
    ps = np.take_along_axis(p, order, axis=0)
    ys = np.take_along_axis(y, order, axis=0)
    tp = np.cumsum(ys, axis=0, dtype=np.int64)
    fp = np.arange(1, n + 1, dtype=np.int64)[:, None] - tp
    rows = np.arange(n, dtype=np.int64)[:, None]
    changes = ps[1:] != ps[:-1]
    is_end = np.vstack([changes, np.ones((1, p.shape[1]), dtype=bool)])
    is_start = np.vstack([np.ones((1, p.shape[1]), dtype=bool), changes])
    run_end = np.minimum.accumulate(np.where(is_end, rows, n)[::-1], axis=0)[::-1]
    run_start = np.maximum.accumulate(np.where(is_start, rows, 0), axis=0)
    tp_end = np.take_along_axis(tp, run_end, axis=0)
    fp_end = np.take_along_axis(fp, run_end, axis=0)
    fp_before = np.where(run_start > 0,
                         np.take_along_axis(fp, np.maximum(run_start - 1, 0), axis=0), 0)
    positives = tp[-1]
    negatives = n - positives
    ap_sum = np.where(ys, tp_end / (run_end + 1), 0.0).sum(axis=0)
    wins = np.where(ys, (negatives - fp_end) + 0.5 * (fp_end - fp_before), 0.0).sum(axis=0)
    ap = _divide(ap_sum, positives)
    auc = np.where(negatives > 0, _divide(wins, positives * negatives), np.nan)
    return auc, ap


def _ranking_scores(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ROC-AUC and AP (equal to sklearn's); NaN where a class makes them undefined.

    Vectorised over columns: sklearn's per-column calls cost seconds with hundreds of labels,
    and the notebook computes these for every model it compares.
    """
    n, k = y.shape
    auc = np.full(k, np.nan)
    ap = np.full(k, np.nan)
    step = max(1, RANKING_BLOCK_CELLS // max(n, 1))
    for first in range(0, k, step):
        block = slice(first, min(first + step, k))
        auc[block], ap[block] = _ranking_block(y[:, block], p[:, block])
    return auc, ap


def _status(support: np.ndarray, n: int) -> np.ndarray:
    return np.where(
        support == 0, STATUS_NO_POSITIVES, np.where(support == n, STATUS_NO_NEGATIVES, STATUS_OK)
    )


def per_class_table(y_true, probs, labels, thresholds) -> pd.DataFrame:
    """One row per label: counts, precision/recall/F1 at the thresholds, ROC-AUC, AP, status.

    Undefined values are NaN: precision when the label is never predicted; recall, F1,
    ROC-AUC and AP when it has no positives; ROC-AUC when it has no negatives.
    """
    y, p, names = check_inputs(y_true, probs, labels)
    t = threshold_vector(thresholds, y.shape[1])
    c = _counts(y, p >= t[None, :])
    has_pos = c["support"] > 0
    auc, ap = _ranking_scores(y, p)
    table = pd.DataFrame(c, index=pd.Index(names, name="label"))
    table["precision"] = _divide(c["tp"], c["predicted"])
    table["recall"] = _divide(c["tp"], c["support"])
    table["f1"] = np.where(has_pos, _divide(2 * c["tp"], c["support"] + c["predicted"]), np.nan)
    table["roc_auc"] = auc
    table["average_precision"] = ap
    table["threshold"] = t
    table["status"] = _status(c["support"], y.shape[0])
    return table


def _note(without_pos: list[str], without_neg: list[str], n_labels: int) -> str:
    def quoted(names: list[str]) -> str:
        shown = ", ".join(repr(x) for x in names[:10])
        return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")

    parts = []
    if without_pos:
        one = len(without_pos) == 1
        parts.append(
            f"{len(without_pos)} of {n_labels} labels {'has' if one else 'have'} no positives in "
            f"this split, so {'its' if one else 'their'} recall, F1, ROC-AUC and average "
            f"precision are undefined and {'it is' if one else 'they are'} left out of the macro "
            f"averages: {quoted(without_pos)}."
        )
    if without_neg:
        one = len(without_neg) == 1
        parts.append(
            f"{len(without_neg)} {'label has' if one else 'labels have'} no negatives in this "
            f"split, so {'its' if one else 'their'} ROC-AUC is undefined and "
            f"{'it is' if one else 'they are'} left out of macro_roc_auc: {quoted(without_neg)}."
        )
    return " ".join(parts)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def multilabel_report(y_true, probs, labels, thresholds=0.5) -> dict:
    """Every usual multi-label metric in one dict (plain floats and ints, ready for JSON).

    Macro averages run over the labels with at least one positive in this split (macro
    ROC-AUC also needs a negative); ``labels_without_positives`` and ``note`` say which labels
    were left out. With a positive for every label the numbers equal sklearn's with
    ``zero_division=0`` (samples-F1: ``zero_division=1.0``; see the module docstring).
    """
    y, p, names = check_inputs(y_true, probs, labels)
    n, k = y.shape
    t = threshold_vector(thresholds, k)
    pred = p >= t[None, :]
    c = _counts(y, pred)
    has_pos = c["support"] > 0
    has_neg = c["support"] < n
    auc, ap = _ranking_scores(y, p)

    precision = np.nan_to_num(_divide(c["tp"], c["predicted"]), nan=0.0)[has_pos]
    recall = _divide(c["tp"], c["support"])[has_pos]
    f1 = _divide(2 * c["tp"], c["support"] + c["predicted"])[has_pos]
    support = c["support"][has_pos]

    tp, predicted, positives = int(c["tp"].sum()), int(c["predicted"].sum()), int(support.sum())
    micro_precision = tp / predicted if predicted else 0.0
    micro_recall = tp / positives if positives else float("nan")
    micro_f1 = 2 * tp / (positives + predicted) if positives else float("nan")

    row_tp = np.count_nonzero(y & pred, axis=1)
    row_den = np.count_nonzero(y, axis=1) + np.count_nonzero(pred, axis=1)
    samples_f1 = float(np.mean(np.where(row_den > 0, 2 * row_tp / np.maximum(row_den, 1), 1.0)))

    # Micro ROC-AUC and AP rank all (text, label) pairs as one column, as sklearn does.
    micro_auc, micro_ap = (float(v[0]) for v in _ranking_scores(y.reshape(-1, 1),
                                                                p.reshape(-1, 1)))

    without_pos = [name for name, ok in zip(names, has_pos) if not ok]
    without_neg = [name for name, ok in zip(names, has_neg) if not ok]
    return {
        "micro_f1": float(micro_f1),
        "macro_f1": _mean(f1),
        "weighted_f1": float(np.average(f1, weights=support)) if positives else float("nan"),
        "samples_f1": samples_f1,
        "micro_precision": float(micro_precision),
        "micro_recall": float(micro_recall),
        "macro_precision": _mean(precision),
        "macro_recall": _mean(recall),
        "subset_accuracy": float(np.mean((y == pred).all(axis=1))),
        "hamming_loss": float(np.mean(y != pred)),
        "micro_roc_auc": micro_auc,
        "macro_roc_auc": _mean(auc[has_pos & has_neg]),
        "micro_average_precision": micro_ap,
        "macro_average_precision": _mean(ap[has_pos]),
        "n_texts": int(n),
        "n_labels": int(k),
        "n_labels_evaluated": int(has_pos.sum()),
        "labels_without_positives": without_pos,
        "note": _note(without_pos, without_neg, k),
    }


def compare_reports(
    reports: Mapping[str, Mapping], reference: str, metrics: Sequence[str] = REPORT_METRICS
) -> pd.DataFrame:
    """Metrics side by side, plus ``Δ vs <model>`` = reference minus that model.

    The ``better`` column says whether higher or lower wins, so a positive Δ on Hamming loss
    reads as the reference trailing. Reports on different data are refused: their numbers
    cannot be compared.
    """
    if not isinstance(reports, Mapping) or not reports:
        raise ParameterError("reports", reports, "must be a non-empty dict name -> report")
    if reference not in reports:
        raise ParameterError("reference", reference, f"must be one of {list(reports)}")
    if isinstance(metrics, str) or not metrics:
        raise ParameterError("metrics", metrics, "must be a non-empty list of metric names")
    for key in ("n_texts", "n_labels"):
        seen = {name: r.get(key) for name, r in reports.items() if r.get(key) is not None}
        if len(set(seen.values())) > 1:
            raise DataError(f"the reports were computed on different data ({key}: {seen})")
    columns = {}
    for name, report in reports.items():
        missing = [m for m in metrics if m not in report]
        if missing:
            raise DataError(f"report {name!r} has no metric(s) {missing}")
        columns[name] = [float(report[m]) for m in metrics]
    table = pd.DataFrame(columns, index=pd.Index(list(metrics), name="metric"))
    for name in reports:
        if name != reference:
            table[f"Δ vs {name}"] = table[reference] - table[name]
    table["better"] = ["lower" if m in LOWER_IS_BETTER else "higher" for m in metrics]
    return table
