"""Where integrated gradients evaluates the model along the path, and with which weights.

Integrated gradients is an integral over the path from the baseline (alpha = 0) to the text
(alpha = 1), computed as a weighted sum of gradients at a few nodes. Each node costs a forward
and a backward pass, so the rule decides the price of an explanation at a given accuracy.

* ``gausslegendre``: Captum's default. Its nodes crowd toward both ends of the path, where
  the probability of a fine-tuned classifier hardly moves, and are sparsest in the middle,
  where it turns: on 03's model the integrand (the gradient along the path) is a bump in the
  middle of the path, and a narrow one on the pairs that converge slowest.
* ``transplanted`` (the default of the batched path): the same Gauss-Legendre nodes pushed
  through Kosloff and Tal-Ezer's map ``x = arcsin(a s) / arcsin(a)``, which spreads them
  toward even spacing. A rule converges at a speed set by how near to the path the integrand's
  nearest complex singularity lies, judged against the node spacing there; in the middle of the
  path the map's spacing is finer, so fewer nodes reach the same error (Hale and Trefethen, "New
  quadrature formulas from conformal maps", 2008, call such rules transplanted). The map has a
  singularity of its own at ``s = 1/a``; ``a = sech(MAP_EXPONENT / n)`` keeps the error that
  adds near ``exp(-2 * MAP_EXPONENT)`` whatever ``n``, and makes a small ``n`` almost plain
  Gauss-Legendre.

Both rules return nodes in (0, 1), increasing, with positive weights. Gauss-Legendre's weights
sum to 1; the transplanted ones to 1 within the map's error. benchmarks/explain_speed.py
measures both against Captum's recipe, at equal convergence delta.
"""

from __future__ import annotations

import numpy as np

from mlclf_utils.errors import ParameterError, check_positive_int

RULES = ("transplanted", "gausslegendre")
# exp(-2 * 8) ~ 1e-7: below the float32 noise of a sum of a few hundred token attributions
MAP_EXPONENT = 8.0


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, 1]: Captum's default rule, so that the two agree node for node."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return (nodes + 1) / 2, weights / 2


def map_parameter(n_steps: int) -> float:
    """The arcsine map's ``a`` for ``n_steps`` nodes (see the module doc)."""
    return float(1 / np.cosh(MAP_EXPONENT / n_steps))


def transplanted(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre through the arcsine map, on [0, 1]: nodes ``x(s_i)``, weights
    ``w_i * x'(s_i)``."""
    s, w = np.polynomial.legendre.leggauss(n_steps)
    a = map_parameter(n_steps)
    scale = np.arcsin(a)
    x = np.arcsin(a * s) / scale
    dx = a / (scale * np.sqrt(1 - (a * s) ** 2))
    return (x + 1) / 2, w * dx / 2


def check_rule(name) -> str:
    if name not in RULES:
        raise ParameterError("quadrature", name, f"must be one of {list(RULES)}")
    return name


def nodes_and_weights(name: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    n_steps = check_positive_int("n_steps", n_steps)
    rule = {"gausslegendre": gauss_legendre, "transplanted": transplanted}[check_rule(name)]
    return rule(n_steps)
