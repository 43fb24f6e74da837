"""benchmarks/recipes.py's scoring and the table report.py renders from it.

The margin and the bar are what issue 13 is judged by, so they are checked on cases whose
answer is known without the code: a copy of the baseline's predictions has margin zero, a
perfect model against a useless one a large positive margin; the pool's columns say "yes" only
when the interval's lower end clears the bar and micro-F1 holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import recipes  # noqa: E402
import report  # noqa: E402


@pytest.fixture()
def labels_and_truth():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < 0.3).astype(np.int8)
    y[y.sum(1) == 0, 0] = 1  # every text has a label
    return y


def test_paired_bootstrap_of_a_copy_is_exactly_zero(labels_and_truth):
    y = labels_and_truth
    pred = np.roll(y, 1, axis=0)  # some predictions, right or wrong
    boot = recipes.paired_bootstrap(y, pred, pred.copy(), n=200)
    assert boot["margin_points"] == 0 and boot["ci95_low"] == 0 and boot["ci95_high"] == 0


def test_paired_bootstrap_of_a_perfect_model_clears_a_useless_one(labels_and_truth):
    y = labels_and_truth
    boot = recipes.paired_bootstrap(y, y.copy(), np.zeros_like(y), n=200)
    assert boot["margin_points"] == pytest.approx(100.0)
    assert boot["ci95_low"] > 90 and boot["p_margin_le_0"] == 0


def test_tuned_test_reports_the_split_it_is_asked_for(labels_and_truth):
    y = labels_and_truth
    names = [f"l{i}" for i in range(y.shape[1])]
    noisy = np.clip(y + np.random.default_rng(1).normal(0, 0.3, y.shape), 0, 1)
    splits = {"validation": y, "test": y[:150], "pool": y[150:]}
    probs = {"validation": noisy, "test": noisy[:150], "pool": np.zeros((150, y.shape[1]))}
    test_report, _ = recipes.tuned_test(splits, probs, names, calibrate=False)
    pool_report, pool_pred = recipes.tuned_test(splits, probs, names, calibrate=False, on="pool")
    assert test_report["macro_f1"] > 0.5
    assert pool_pred.shape == (150, y.shape[1]) and pool_report["macro_f1"] == 0


def pool_result(low: float, micro: float) -> dict:
    return {"texts": 5974, "micro_vs_tfidf_points": micro,
            "macro_vs_tfidf": {"margin_points": low + 1, "ci95_low": low, "ci95_high": low + 2}}


@pytest.mark.parametrize("low, micro, meets", [(5.0, 0.0, "yes"), (4.9, 3.0, "no"),
                                               (7.0, -0.1, "no")])
def test_pool_cells_apply_issue_13s_bar(low, micro, meets):
    cells = report.pool_cells(pool_result(low, micro))
    assert cells["pool meets bar"] == meets
    assert cells["pool texts"] == 5974
    assert cells["pool macro margin [95% CI]"] == f"{low + 1:+.1f} [{low:+.1f}, {low + 2:+.1f}]"


def test_a_recipe_without_a_pool_score_leaves_the_pool_columns_blank():
    cells = report.pool_cells(None)
    assert set(cells) == set(report.pool_cells(pool_result(1, 1)))
    assert all(value is None for value in cells.values())
