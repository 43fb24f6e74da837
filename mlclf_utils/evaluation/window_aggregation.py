"""A text's probabilities from the probabilities of its token windows (``long_text="chunks"``).

A text longer than ``max_length`` is read as overlapping windows (``mlclf_utils.data.windows``);
each window gets its own sigmoid outputs, and a text's probability for a label is:

``max`` (the default)
    the highest of its windows: a label whose evidence sits in one paragraph of a long text
    is found wherever that paragraph is, which is what multi-label tagging asks for. It can only
    raise a text's probabilities, so the thresholds 04 tunes on aggregated probabilities
    absorb that shift.
``mean``
    the windows' average: less eager on texts with many windows, better when a label is a
    property of the whole text rather than of one passage.

Numpy only: the SageMaker container imports this module beside ``serving.predict``.
"""

from __future__ import annotations

import numpy as np

from mlclf_utils.errors import ParameterError
from mlclf_utils.evaluation.calibration_maps import logit, sigmoid

AGGREGATIONS = ("max", "mean")


def check_aggregation(how) -> str:
    if how not in AGGREGATIONS:
        raise ParameterError("window_aggregation", how, f"choose one of {list(AGGREGATIONS)}")
    return how


def check_owners(owners, n_windows: int, n_texts: int | None = None) -> tuple[np.ndarray, int]:
    """``owners[i]`` is the text (0-based) of window ``i``; every text needs one window at least,
    and windows come grouped by text in text order (as ``data.windows`` makes them)."""
    owners = np.asarray(owners)
    if owners.ndim != 1 or len(owners) != n_windows:
        raise ParameterError("owners", f"shape {owners.shape}",
                             f"need one text index per window ({n_windows} windows)")
    if n_windows == 0:
        raise ParameterError("owners", "no windows", "need at least one window")
    if not np.issubdtype(owners.dtype, np.integer):
        raise ParameterError("owners", str(owners.dtype), "must be integer text indices")
    n_texts = int(owners.max()) + 1 if n_texts is None else int(n_texts)
    if owners.min() < 0 or owners.max() >= n_texts:
        raise ParameterError("owners", f"{owners.min()}..{owners.max()}",
                             f"text indices must lie in 0..{n_texts - 1}")
    if np.any(np.diff(owners) < 0):
        raise ParameterError("owners", "not sorted", "windows must come grouped by text, in "
                             "text order")
    missing = np.setdiff1d(np.arange(n_texts), owners)
    if len(missing):
        raise ParameterError("owners", f"texts {missing[:10].tolist()}", "have no window")
    return owners, n_texts


def aggregate(window_probs, owners, n_texts: int | None = None, how: str = "max") -> np.ndarray:
    """(n_texts, K) from (n_windows, K): one row per text, in text order."""
    probs = np.asarray(window_probs)
    if probs.ndim != 2:
        raise ParameterError("window_probs", f"shape {probs.shape}", "must be (windows, labels)")
    owners, n_texts = check_owners(owners, len(probs), n_texts)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    if check_aggregation(how) == "max":
        return np.maximum.reduceat(probs, starts, axis=0)
    counts = np.diff(np.r_[starts, len(probs)])[:, None]
    return (np.add.reduceat(probs.astype(np.float64), starts, axis=0) / counts).astype(probs.dtype)


def decisive_windows(window_probs, owners, label_index: int, n_texts: int | None = None
                     ) -> np.ndarray:
    """Per text, the index (into the windows) of its window with the highest probability for
    ``label_index``: the one that carries a ``max`` decision, which 05 explains."""
    probs = np.asarray(window_probs)
    owners, n_texts = check_owners(owners, len(probs), n_texts)
    column = probs[:, label_index]
    best = np.empty(n_texts, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    ends = np.r_[starts[1:], len(probs)]
    for text, (start, end) in enumerate(zip(starts, ends)):
        best[text] = start + int(np.argmax(column[start:end]))
    return best


def first_rows(owners) -> np.ndarray:
    """The position of each text's first window: the rows that stand for the texts."""
    owners = np.asarray(owners)
    return np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]]) if len(owners) else owners


def per_text_metrics(compute_metrics, owners, how: str = "max"):
    """``compute_metrics`` for a Trainer whose validation rows are windows: the logits are
    aggregated per text (through probabilities, so ``mean`` means what it means in 04) and
    each text's labels taken from its first window, so the best checkpoint is chosen on texts."""
    from types import SimpleNamespace

    owners = np.asarray(owners)
    check_aggregation(how)

    def per_text(eval_pred):
        logits = np.asarray(eval_pred.predictions, dtype=np.float64)
        probs = aggregate(sigmoid(logits), owners, how=how)
        labels = np.asarray(eval_pred.label_ids)[first_rows(owners)]
        return compute_metrics(SimpleNamespace(predictions=logit(probs), label_ids=labels))

    return per_text
