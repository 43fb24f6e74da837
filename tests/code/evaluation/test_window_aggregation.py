"""A text's probabilities from its windows' (issue 12, item 3)."""

from types import SimpleNamespace

import numpy as np
import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.evaluation import window_aggregation as agg


def test_max_and_mean_per_text_with_one_to_n_windows():
    probs = np.array([[0.1, 0.9], [0.2, 0.1], [0.7, 0.3], [0.4, 0.4], [0.6, 0.2], [0.3, 0.5]],
                     dtype=np.float32)
    owners = [0, 1, 1, 2, 2, 2]  # texts of 1, 2 and 3 windows
    np.testing.assert_allclose(agg.aggregate(probs, owners),
                               [[0.1, 0.9], [0.7, 0.3], [0.6, 0.5]])
    np.testing.assert_allclose(agg.aggregate(probs, owners, how="mean"),
                               [[0.1, 0.9], [0.45, 0.2], [13 / 30, 11 / 30]], rtol=1e-6)
    assert agg.aggregate(probs, owners).dtype == np.float32
    np.testing.assert_array_equal(agg.decisive_windows(probs, owners, 0), [0, 2, 4])
    np.testing.assert_array_equal(agg.decisive_windows(probs, owners, 1), [0, 2, 5])
    np.testing.assert_array_equal(agg.first_rows(owners), [0, 1, 3])


def test_one_window_per_text_changes_nothing():
    probs = np.random.default_rng(0).random((5, 3))
    np.testing.assert_array_equal(agg.aggregate(probs, np.arange(5)), probs)
    np.testing.assert_array_equal(agg.aggregate(probs, np.arange(5), how="mean"), probs)


@pytest.mark.parametrize("owners, n_texts, match", [
    ([0, 0, 1], None, "one text index per window"), ([0, 2, 1, 1], None, "grouped by text"),
    ([0, 0, 2, 2], None, "no window"), ([0, 1, 1, 1], 1, "0..0"),
    ([0.0, 1.0, 1.0, 1.0], None, "integer")])
def test_bad_owners_are_refused(owners, n_texts, match):
    with pytest.raises(ParameterError, match=match):
        agg.aggregate(np.zeros((4, 2)), owners, n_texts)


def test_unknown_aggregation_is_named():
    with pytest.raises(ParameterError, match="window_aggregation"):
        agg.aggregate(np.zeros((1, 1)), [0], how="median")


def test_training_metric_is_computed_per_text():
    """The Trainer's validation rows are windows; the metric must see one row per text."""
    seen = {}

    def compute(eval_pred):
        seen["logits"], seen["labels"] = eval_pred.predictions, eval_pred.label_ids
        return {"rows": len(eval_pred.label_ids)}

    logits = np.array([[-3.0, 2.0], [1.0, -2.0], [-1.0, -1.0]])
    labels = np.array([[1, 1], [1, 1], [0, 1]], dtype=np.float32)
    per_text = agg.per_text_metrics(compute, [0, 0, 1])
    assert per_text(SimpleNamespace(predictions=logits, label_ids=labels)) == {"rows": 2}
    np.testing.assert_allclose(seen["logits"], [[1.0, 2.0], [-1.0, -1.0]], atol=1e-9)
    np.testing.assert_array_equal(seen["labels"], [[1, 1], [0, 1]])
