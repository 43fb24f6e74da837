"""Out-of-fold probabilities: every row scored by a model that never saw it.

A label audit judges a given label by a model's probability for it. A model that trained on the
row has learned that very label and would confirm its errors, so the rows are cut into K folds
by iterative stratification (seeded), and each fold is scored by the project's TF-IDF +
logistic-regression baseline (``evaluation.baselines.tfidf_logistic``, vectorizer included)
fitted on the other K - 1 folds only.

Degenerate labels are left out of the audit and named, never scored on a guess: a label needs
at least K positives and K negatives (one of each per fold), and every training part of the
folds must hold both. With more than ``MAX_LABELS`` labels only the most frequent are audited
(K logistic regressions per label), and the summary says how many were left out and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlclf_utils.errors import DataError, ParameterError, check_positive_int

# Each audited label costs one logistic regression per fold; 200 labels x 5 folds on the demo's
# 3,600 rows is a few minutes on two cores. Beyond this, the most frequent labels are audited.
MAX_LABELS = 200
TOO_FEW_POSITIVES = "fewer positives than folds"
TOO_FEW_NEGATIVES = "fewer negatives than folds"
BEYOND_CAP = "beyond the {max_labels} most frequent labels"
FOLD_WITHOUT_BOTH = "a training part of the folds lacks a positive or a negative"


def check_folds(folds, name: str = "label_audit_folds") -> int:
    """K for K-fold cross-validation: an integer >= 2 (one fold would train on what it scores)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ParameterError(name, folds, "must be an integer >= 2 (the folds of the "
                             "cross-validation that gives out-of-fold probabilities)")
    return int(folds)


@dataclass
class OutOfFold:
    """Probabilities of the audited labels, the fold each row was held out in, and why the
    other labels were not audited."""

    probabilities: np.ndarray  # (N, A): column a is labels[a]
    folds: np.ndarray  # (N,): the fold whose model scored the row (it was trained without it)
    labels: list[str]  # the audited labels, in the order of the label map
    columns: list[int]  # their columns in the (N, K) targets
    n_folds: int
    seed: int
    excluded: dict[str, str] = field(default_factory=dict)  # label -> why it was not audited

    def summary(self, shown: int = 10) -> dict:
        """Counts and the first few names per reason (50,000 names would drown the report)."""
        by_reason: dict[str, list[str]] = {}
        for label, reason in self.excluded.items():
            by_reason.setdefault(reason, []).append(label)
        return {"rows": int(len(self.folds)), "folds": self.n_folds, "seed": self.seed,
                "labels_audited": len(self.labels), "labels_not_audited": len(self.excluded),
                "not_audited_by_reason": {
                    reason: {"count": len(names), "labels": names[:shown]}
                    for reason, names in by_reason.items()}}


def assign_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each row, stratified on the labels of ``y`` so each fold keeps their shares."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    folds = check_folds(folds)
    y = np.asarray(y)
    if len(y) < folds:
        raise DataError(f"{len(y)} rows cannot be cut into {folds} folds",
                        hint="lower label_audit_folds, or switch label_audit off")
    if y.ndim != 2 or y.shape[1] == 0:
        y = np.zeros((len(y), 1), dtype=np.int8)
    if y.shape[1] == 1:  # iterstrat refuses one column; its complement stratifies the same way
        y = np.column_stack([y[:, 0], 1 - y[:, 0]])
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.full(len(y), -1, dtype=np.int64)
    for k, (_, held) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
        out[held] = k
    return out


def select_labels(y, names: Sequence[str], folds: int,
                  max_labels: int = MAX_LABELS) -> tuple[list[int], dict[str, str]]:
    """``(columns to audit, {label: why not})``: enough positives and negatives for the folds,
    at most ``max_labels`` of them, the most frequent first (returned in label-map order).
    ``y`` may be a scipy sparse matrix (50,000 labels do not fit densely)."""
    check_positive_int("max_labels", max_labels)
    positives = np.asarray(y.sum(axis=0)).ravel()
    negatives = y.shape[0] - positives
    excluded: dict[str, str] = {}
    eligible = []
    for j, name in enumerate(names):
        if positives[j] < folds:
            excluded[name] = TOO_FEW_POSITIVES
        elif negatives[j] < folds:
            excluded[name] = TOO_FEW_NEGATIVES
        else:
            eligible.append(j)
    by_frequency = sorted(eligible, key=lambda j: (-positives[j], j))
    reason = BEYOND_CAP.format(max_labels=max_labels)
    for j in by_frequency[max_labels:]:
        excluded[names[j]] = reason
    return sorted(by_frequency[:max_labels]), excluded


def out_of_fold_probabilities(texts: Sequence[str], y: np.ndarray, names: Sequence[str], *,
                              folds: int = 5, seed: int = 42, max_labels: int = MAX_LABELS,
                              fit: Callable | None = None, progress: bool = False) -> OutOfFold:
    """Each row's probabilities from the fold model that did not train on it.

    ``y``: (N, K) 0/1 targets, dense or scipy sparse (only the audited columns are made dense).
    ``fit(train_texts, train_targets, {"held_out": texts}, seed=seed)`` returns ``{"held_out":
    (n, A) probabilities}``; by default the project's TF-IDF + logistic-regression baseline.
    """
    from scipy import sparse

    from mlclf_utils.evaluation import baselines

    folds = check_folds(folds)
    texts = [str(t) for t in texts]
    y = y if sparse.issparse(y) else np.asarray(y, dtype=np.int8)
    if y.ndim != 2 or y.shape[0] != len(texts) or len(names) != y.shape[1]:
        raise DataError(f"{len(texts)} texts, targets of shape {y.shape} and {len(names)} label "
                        "names do not match")
    fit = fit or baselines.tfidf_logistic
    columns, excluded = select_labels(y, names, folds, max_labels)
    audited = y[:, columns]
    audited = np.asarray(audited.toarray() if sparse.issparse(audited) else audited, dtype=np.int8)
    fold_of = assign_folds(audited, folds, seed)
    keep = [a for a, j in enumerate(columns)
            if all(len(set(audited[fold_of != k, a])) == 2 for k in range(folds))]
    for a in sorted(set(range(len(columns))) - set(keep)):
        excluded[names[columns[a]]] = FOLD_WITHOUT_BOTH
    columns, audited = [columns[a] for a in keep], audited[:, keep]
    probabilities = np.zeros((len(texts), len(columns)), dtype=np.float64)
    if columns:
        _score_folds(texts, audited, fold_of, folds, probabilities, fit, seed, progress)
    return OutOfFold(probabilities=probabilities, folds=fold_of,
                     labels=[names[j] for j in columns], columns=columns, n_folds=folds,
                     seed=seed, excluded=excluded)


def _score_folds(texts, y, fold_of, folds, out, fit, seed, progress) -> None:
    """Fill ``out`` fold by fold, BLAS on one thread: lbfgs's many small dense steps make
    OpenBLAS threads contend; on a busy two-core machine one fold of the demo took 330 s with
    the default threads and 18 s with one (scikit-learn's threadpoolctl sets the limit)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for k in _progress(range(folds), progress):
            train, held = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
            scored = fit([texts[i] for i in train], y[train],
                         {"held_out": [texts[i] for i in held]}, seed=seed)["held_out"]
            out[held] = np.asarray(scored, dtype=np.float64).reshape(len(held), -1)


def _progress(iterable, show: bool):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="label audit: out-of-fold TF-IDF + LR", unit="fold")
