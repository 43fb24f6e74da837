"""The integration rules of explain/quadrature.py: Captum's Gauss-Legendre node for node,
and the transplanted rule a valid rule on the path that wins where the integrand turns."""

from __future__ import annotations

import numpy as np
import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.explain import quadrature


def test_gauss_legendre_is_captums_rule():
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("gausslegendre")
    for n in (1, 7, 50):
        nodes, weights = quadrature.gauss_legendre(n)
        np.testing.assert_allclose(nodes, alphas(n), rtol=0, atol=1e-12)
        np.testing.assert_allclose(weights, step_sizes(n), rtol=0, atol=1e-12)
        assert weights.sum() == pytest.approx(1.0)
        # exact for polynomials of degree 2n - 1: the integral of a^(2n-1) on [0, 1]
        assert (weights * nodes ** (2 * n - 1)).sum() == pytest.approx(1 / (2 * n))


def _bump(x, centre=0.45, slope=40.0):
    """What a fine-tuned model's IG integrand looks like: the derivative of a sigmoid that turns
    mid-path. Its integral over [0, 1] is known exactly."""
    s = 1 / (1 + np.exp(-slope * (x - centre)))
    return slope * s * (1 - s)


def _bump_integral(centre=0.45, slope=40.0):
    sig = lambda x: 1 / (1 + np.exp(-slope * (x - centre)))  # noqa: E731
    return sig(1.0) - sig(0.0)


@pytest.mark.parametrize("n", [1, 2, 8, 40, 50, 200])
def test_the_transplanted_rule_is_a_rule_on_the_path(n):
    nodes, weights = quadrature.transplanted(n)
    assert len(nodes) == len(weights) == n
    assert ((nodes > 0) & (nodes < 1)).all() and (np.diff(nodes) > 0).all()
    assert (weights > 0).all()
    np.testing.assert_allclose(nodes, 1 - nodes[::-1], atol=1e-12)  # symmetric, as the map is
    # the map's own error (module doc): constants integrate to 1 within exp(-16) from 24 nodes
    if n >= 24:
        assert abs(weights.sum() - 1) < 1e-6


def test_the_transplanted_rule_converges_to_the_integral():
    exact = _bump_integral()
    errors = [abs((w * _bump(x)).sum() - exact) for x, w in map(quadrature.transplanted,
                                                                 (10, 20, 40, 80))]
    assert errors[-1] < 1e-9
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


@pytest.mark.parametrize("n", [30, 40, 50])
def test_the_transplanted_rule_beats_gauss_legendre_on_a_mid_path_bump(n):
    # why it is the default: the same nodes, spread toward the middle, where the bump is
    exact = _bump_integral()
    transplanted = abs((lambda x, w: (w * _bump(x)).sum())(*quadrature.transplanted(n)) - exact)
    gauss = abs((lambda x, w: (w * _bump(x)).sum())(*quadrature.gauss_legendre(n)) - exact)
    assert transplanted < gauss / 3


def test_few_nodes_are_almost_gauss_legendre():
    # a = sech(8 / n) -> 0 as n falls: a small n must not pay for the map's singularity
    assert quadrature.map_parameter(2) < 0.04
    np.testing.assert_allclose(quadrature.transplanted(2)[0], quadrature.gauss_legendre(2)[0],
                               atol=2e-4)


def test_an_unknown_rule_or_step_count_names_the_parameter():
    with pytest.raises(ParameterError, match="quadrature.*must be one of"):
        quadrature.nodes_and_weights("riemann_trapezoid", 10)
    with pytest.raises(ParameterError, match="n_steps"):
        quadrature.nodes_and_weights("transplanted", 0)
