"""The batched path's bookkeeping, without a model: the quadrature rule and the packing."""

from __future__ import annotations

import numpy as np
import pytest

from mlclf_utils.explain import batched_ig


def test_gauss_legendre_is_captums_rule():
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("gausslegendre")
    for n in (1, 7, 50):
        nodes, weights = batched_ig.gauss_legendre(n)
        np.testing.assert_allclose(nodes, alphas(n), rtol=0, atol=1e-12)
        np.testing.assert_allclose(weights, step_sizes(n), rtol=0, atol=1e-12)
        assert weights.sum() == pytest.approx(1.0)
        # exact for polynomials of degree 2n - 1: the integral of a^(2n-1) on [0, 1]
        assert (weights * nodes ** (2 * n - 1)).sum() == pytest.approx(1 / (2 * n))


def _jobs(lengths):
    return [batched_ig.Job(ids=(1,) * n, baseline_ids=(0,) * n, labels=(0,)) for n in lengths]


def test_packs_hold_similar_lengths_longest_first():
    lengths = [10, 128, 100, 10, 120, 40, 128, 11]
    packs = batched_ig.pack_jobs(_jobs(lengths))
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))  # none lost
    assert [[lengths[i] for i in pack] for pack in packs] == [[128, 128, 120], [100], [40],
                                                               [11, 10, 10]]
    for pack in packs:
        longest = max(lengths[i] for i in pack)
        assert min(lengths[i] for i in pack) >= batched_ig.PACK_LENGTH_RATIO * longest


def test_every_text_alone_at_ratio_one_when_lengths_differ():
    assert batched_ig.pack_jobs(_jobs([3, 5, 4]), ratio=1.0) == [[1], [2], [0]]
    assert batched_ig.pack_jobs([]) == []
