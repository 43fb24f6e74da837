"""Out-of-fold probabilities for the label audit: every row is scored by a model fitted without
it, the folds are seeded and stratified, and labels the folds cannot support are named."""

from __future__ import annotations

import numpy as np
import pytest

from mlclf_utils.data import out_of_fold
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.evaluation import baselines


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.5, 0.3, 0.2]).astype(np.int8)
    words = np.array(["alpha", "beta", "gamma"])
    texts = [f"row{i} " + " ".join(words[row == 1]) + " filler text" for i, row in enumerate(y)]
    return texts, y, ["a", "b", "c"]


def test_every_row_is_in_exactly_one_fold_seeded_and_stratified():
    _, y, _ = _table(200)
    folds = out_of_fold.assign_folds(y, 5, seed=3)
    assert set(folds) == set(range(5)) and (folds >= 0).all()
    assert np.array_equal(folds, out_of_fold.assign_folds(y, 5, seed=3))
    assert not np.array_equal(folds, out_of_fold.assign_folds(y, 5, seed=4))
    share = y.mean(axis=0)
    for k in range(5):
        assert np.abs(y[folds == k].mean(axis=0) - share).max() < 0.05


def test_a_row_is_never_scored_by_a_model_that_trained_on_it():
    texts, y, names = _table()
    calls = []

    def spy(train_texts, train_targets, predict_texts, *, seed):
        calls.append((set(train_texts), set(predict_texts["held_out"])))
        return baselines.tfidf_logistic(train_texts, train_targets, predict_texts, seed=seed)

    oof = out_of_fold.out_of_fold_probabilities(texts, y, names, folds=4, seed=0, fit=spy)
    assert len(calls) == 4
    for trained, scored in calls:
        assert not trained & scored
    assert set().union(*(scored for _, scored in calls)) == set(texts)  # each row scored once
    assert sum(len(scored) for _, scored in calls) == len(texts)
    for k, (_, scored) in enumerate(calls):
        assert scored == {texts[i] for i in np.flatnonzero(oof.folds == k)}
    assert oof.probabilities.shape == (len(texts), 3)
    assert ((oof.probabilities > 0) & (oof.probabilities < 1)).all()


def test_a_memorising_model_gets_no_credit_out_of_fold():
    """Each text's unique token is its only clue: in fold the model would recall every label,
    out of fold it can only guess. Scoring rows in fold would make every label look right."""
    rng = np.random.default_rng(1)
    y = (rng.random((80, 2)) < 0.5).astype(np.int8)
    texts = [f"token{i} token{i}x shared" for i in range(80)]

    def lookup(train_texts, train_targets, predict_texts, *, seed):
        known = dict(zip(train_texts, train_targets))
        return {"held_out": np.array([known.get(t, [0.5, 0.5]) for t in predict_texts["held_out"]],
                                     dtype=float)}

    oof = out_of_fold.out_of_fold_probabilities(texts, y, ["a", "b"], folds=4, fit=lookup)
    assert (oof.probabilities == 0.5).all()


def test_degenerate_labels_are_excluded_and_named():
    texts, y, _ = _table(40)
    y = np.column_stack([y, np.zeros(40), np.ones(40)]).astype(np.int8)
    y[:2, 3] = 1  # two positives: fewer than the folds
    y[:1, 4] = 0  # one negative
    names = ["a", "b", "c", "rare", "everywhere"]
    oof = out_of_fold.out_of_fold_probabilities(texts, y, names, folds=3, seed=0)
    assert oof.labels == ["a", "b", "c"] and oof.columns == [0, 1, 2]
    assert oof.excluded == {"rare": out_of_fold.TOO_FEW_POSITIVES,
                            "everywhere": out_of_fold.TOO_FEW_NEGATIVES}


def test_very_many_labels_are_capped_to_the_most_frequent_and_said():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 30)) < np.linspace(0.2, 0.8, 30)).astype(np.int8)
    names = [f"l{j:02d}" for j in range(30)]
    columns, excluded = out_of_fold.select_labels(y, names, folds=3, max_labels=10)
    frequency = y.sum(axis=0)
    assert len(columns) == 10 and columns == sorted(columns)
    assert min(frequency[columns]) >= max(frequency[[j for j in range(30) if j not in columns]])
    assert set(excluded.values()) == {"beyond the 10 most frequent labels"}
    assert len(excluded) == 20


def test_no_auditable_label_gives_no_probabilities():
    texts, y, names = _table(10)
    oof = out_of_fold.out_of_fold_probabilities(texts, np.zeros_like(y), names, folds=3)
    assert oof.labels == [] and oof.probabilities.shape == (10, 0)
    assert set(oof.excluded.values()) == {out_of_fold.TOO_FEW_POSITIVES}


def test_bad_folds_and_shapes_are_refused():
    texts, y, names = _table(10)
    with pytest.raises(ParameterError, match="label_audit_folds"):
        out_of_fold.out_of_fold_probabilities(texts, y, names, folds=1)
    with pytest.raises(DataError, match="do not match"):
        out_of_fold.out_of_fold_probabilities(texts[:5], y, names)
    with pytest.raises(DataError, match="3 rows cannot be cut into 5 folds"):
        out_of_fold.assign_folds(y[:3], 5, seed=0)
