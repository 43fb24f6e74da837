"""The formulas behind 03's walkthrough, checked on random inputs and on small probes."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from mlclf_utils.teaching import bce
from mlclf_utils.modeling.loss import bce_with_logits

probabilities = st.floats(0.01, 0.99)
weights = st.floats(0.05, 50.0)


def _expected_loss(logit, q, p):
    """E[weighted BCE] for one group of texts of which a share q has the label, in float64."""
    x = torch.tensor([[logit, logit]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    per = bce_with_logits(x, y, pos_weight=torch.tensor([p, p], dtype=torch.float64), reduction="none")
    return q * per[0, 0].item() + (1 - q) * per[0, 1].item()


@settings(deadline=None, max_examples=60)
@given(q=probabilities, p=weights)
def test_the_weighted_minimiser_has_p_times_the_odds(q, p):
    best = minimize_scalar(lambda x: _expected_loss(x, q, p), bounds=(-30, 30), method="bounded",
                           options={"xatol": 1e-10})
    s = 1 / (1 + math.exp(-best.x))
    assert s / (1 - s) == pytest.approx(p * q / (1 - q), rel=1e-4)
    assert bce.weighted_minimiser(q, p) == pytest.approx(s, abs=1e-6)


@settings(deadline=None, max_examples=200)
@given(q=probabilities, p=weights)
def test_half_on_the_weighted_model_is_one_over_one_plus_p_on_the_unweighted(q, p):
    threshold = float(bce.implied_threshold(p))
    if abs(q - threshold) < 1e-9:  # on the boundary both sides are exact ties
        return
    assert (bce.weighted_minimiser(q, p) >= 0.5) == (q >= threshold)


def test_the_float32_cliff_is_where_one_plus_exp_minus_x_rounds_to_one():
    cliff = bce.sigmoid_cliff()
    assert 16.5 < cliff < 16.7
    assert cliff == pytest.approx(24 * math.log(2), abs=1e-3)
    below = torch.nextafter(torch.tensor(cliff), torch.tensor(0.0))
    assert torch.sigmoid(below) < 1 and torch.sigmoid(torch.tensor(cliff)) == 1


def test_the_table_shows_naive_inf_past_the_cliff_and_the_stable_forms_exact():
    table = bce.float32_table((10, 16, 16.6, 16.7, 20, 50))
    past = table["x"] >= bce.sigmoid_cliff()
    assert past.any() and (~past).any()
    assert np.isinf(table.loc[past, "naive"]).all()
    assert np.isfinite(table.loc[~past, "naive"]).all()
    for column in ("stable (softplus)", "PyTorch kernel"):
        assert np.allclose(table[column], table["exact (float64)"], rtol=1e-6)
    assert table["sigmoid(x) == 1"].tolist() == past.tolist()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), k=st.integers(1, 5))
def test_a_weight_of_two_is_a_duplicated_row_and_zero_removes_the_entry(seed, n, k):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=generator, dtype=torch.float64) * 5
    targets = (torch.rand(n, k, generator=generator) > 0.5).double()
    table = bce.sample_weight_demo(logits, targets)
    assert table["equal"].tolist()[:2] == [True, True]
    assert table["equal"].iloc[3]
    # reduction="mean" with weights divides by N*K, so it is (N+1)/N times the duplicated mean
    assert table["b"].iloc[2] * n / (n + 1) == pytest.approx(table["a"].iloc[2], rel=1e-9)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_the_sum_gradient_is_n_k_times_the_mean_gradient(seed, k):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(64, 7, generator=generator)
    targets = (torch.rand(64, k, generator=generator) > 0.7).float()
    table = bce.gradient_norms(features, targets, (4, 16, 64), repeats=2, seed=seed)
    assert np.allclose(table["sum / mean"], table["entries (N*K)"], rtol=1e-4)
    assert np.allclose(table["lr for sum = 1e-4 for mean"] * table["entries (N*K)"], 1e-4, rtol=1e-4)


def test_default_batch_sizes_fit_the_rows():
    table = bce.gradient_norms(torch.randn(40, 3), torch.ones(40, 2), repeats=1)
    assert table["batch_size"].tolist() == [8, 16, 32]


def test_the_floor_caps_the_implied_threshold():
    table = bce.floor_table((0.5, 0.9, 0.99), floor=0.5)
    assert np.allclose(table["reads_at (ratio)"], table["share_of_texts"])  # 1/(1+r) = f
    assert (table["reads_at (floor 0.5)"] <= 2 / 3 + 1e-12).all()


@pytest.fixture(scope="module")
def toy_probe():
    """Two features that fix the label's probability: q = 0.1 or 0.6, 400 texts each."""
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 400)
    y = (rng.random(800) < np.where(group == 1, 0.6, 0.1)).astype(np.float32)
    x = torch.tensor(np.eye(2)[group], dtype=torch.float32)
    targets = torch.tensor(y[:, None])
    return bce.ProbeData(x, targets, x, targets, ["label"])


def test_the_binned_check_trains_to_the_formula(toy_probe):
    table = bce.binned_odds_check(toy_probe, "label", 4.0, bins=2)
    assert len(table) == 2 and table["texts"].sum() == 800
    assert table["abs diff"].max() < 1e-3
    assert (table["says yes at 0.5"] == table["q >= 1/(1+p)"]).all()


def test_lowering_pos_weight_never_predicts_more_positives(toy_probe):
    table = bce.pos_weight_sweep(toy_probe, "label", [0.1, 0.5, 1, 4], steps=200)
    assert table["predicted_positive"].is_monotonic_increasing
    assert table.attrs["validation_positives"] == int(toy_probe.y_val.sum())


def test_sweep_evidence_says_where_its_numbers_come_from(tmp_path, monkeypatch):
    from mlclf_utils.runner import sweep

    monkeypatch.setattr(sweep, "find_sweep", lambda run_dir, sweep_dir=None: None)
    table, source = bce.sweep_evidence(tmp_path)
    if bce.BENCHMARK_QUALITY.exists():
        assert "not this run's" in source and "docs/benchmarks.md" in source
        assert {"ratio", "sqrt", "damped"} <= set(table["pos_weight_strategy"])
    monkeypatch.setattr(bce, "BENCHMARK_QUALITY", tmp_path / "missing.json")
    table, source = bce.sweep_evidence(tmp_path)
    assert table is None and "sweep" in source


def test_strategy_weights_read_the_rarest_labels_lowest():
    y = torch.tensor(np.array([[1, 0, 0]] * 50 + [[0, 1, 0]] * 5 + [[0, 0, 1]] * 20, dtype=np.float32))
    data = bce.ProbeData(torch.zeros(75, 1), y, torch.zeros(1, 1), y[:1], ["a", "b", "c"])
    table = bce.strategy_weights(data, rarest=1)
    assert table.index[0] == "b (rarest)"
    assert table["reads_at (ratio)"].iloc[0] == pytest.approx(1 / (1 + 70 / 5))
    assert (table["reads_at (ratio)"] <= table["reads_at (sqrt)"]).all()
    assert isinstance(table, pd.DataFrame)


def test_sweep_evidence_ignores_a_sweep_that_did_not_vary_the_strategy(monkeypatch, tmp_path):
    """A sweep over, say, learning rates says nothing about damping: fall back to the benchmark."""
    import pandas as pd

    from mlclf_utils.runner import sweep

    found = tmp_path / "sweeps" / "s1"
    monkeypatch.setattr(sweep, "find_sweep", lambda run_dir, sweep_dir=None: found)
    table = pd.DataFrame({"learning_rate": [1e-4], "status": ["ok"], "validation_macro_f1": [0.5]},
                         index=pd.Index(["c01"], name="combination"))
    monkeypatch.setattr(sweep, "load", lambda path: (table, {"sweep_id": "s1"}))
    evidence, source = bce.sweep_evidence(tmp_path / "run")
    assert "committed benchmark" in source and "s1" not in source
    assert evidence is not None and "pos_weight_strategy" in evidence.columns
