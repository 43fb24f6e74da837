"""Tests for mlclf_utils.explain.attribution_views on hand-made explanations: the HTML table and
the figure mean the same thing by a colour, and the table says which mistake and which true labels.

(The model tests, tests/model/test_attributions.py, draw both from real integrated gradients.)
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.explain import attribution_views as views
from mlclf_utils.explain.attributions import Explanation


def _explanation(words, values, label="alpha", probability=0.9, delta_ok=True) -> Explanation:
    values = np.asarray(values, dtype=float)
    return Explanation(text=" ".join(words), label=label, label_index=0, tokens=list(words),
                       token_attributions=values, words=list(words), word_attributions=values,
                       probability=probability, baseline_probability=0.2, delta=1e-6,
                       delta_ok=delta_ok)


FP = _explanation(["zorblat", "viewer", "for", "<b>x</b>"], [0.5, -0.25, 0.0, 0.1])
FN = _explanation(["kettle", "boils"], [-0.3, 0.15], label="beta", probability=0.1,
                  delta_ok=False)


def _span_colours(html: str) -> dict[str, tuple[float, ...]]:
    """word -> its background RGBA in [0, 1], as the HTML spells it."""
    out = {}
    for r, g, b, a, word in re.findall(
            r"background-color: rgba\((\d+), (\d+), (\d+), ([\d.]+)\);[^>]*>([^<]+)</span>", html):
        out[word] = (int(r) / 255, int(g) / 255, int(b) / 255, float(a))
    return out


def test_the_html_and_the_figure_colour_every_word_the_same_way(tmp_path):
    """05 showed our figure (red raises) next to Captum's view (red lowers): now one colour map."""
    fig = views.plot_attributions([FP, FN], tmp_path / "a.png")
    html = views.attribution_html([FP, FN]).data
    in_html = _span_colours(html)
    in_figure = {t.get_text(): t.get_bbox_patch().get_facecolor()
                 for t in fig.axes[0].texts if t.get_bbox_patch() is not None}
    for word in ("zorblat", "viewer", "kettle", "boils"):
        assert in_html[word] == pytest.approx(in_figure[word], abs=2 / 255), word
    red, blue = in_html["zorblat"], in_html["viewer"]
    assert red[0] > 0.8 > red[2] and blue[2] > 0.8 > blue[0]  # raises: red; lowers: blue
    assert red[3] == pytest.approx(0.85) and blue[3] == pytest.approx(0.85 * 0.25 / 0.5, abs=1e-3)
    assert in_html["boils"][0] > 0.8  # the false negative's one push up is red too
    assert "red</span>: the word raises" in html and "blue</span>: lowers it" in html  # legend


def test_the_html_names_the_mistake_and_fills_the_true_labels():
    html = views.attribution_html([FP, FN], kinds={0: "fp", 1: "fn", 7: "fp"},
                                  true_labels=[["beta", "gamma"], []]).data
    assert "false positive" in html and "predicted, but not a true label" in html
    assert "false negative" in html and "a true label, missed" in html
    assert "beta, gamma" in html and "(none)" in html
    assert "not converged" in html  # FN's delta_ok is False
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html  # words are escaped
    assert 'title="+0.5000"' in html  # hover a word for its number
    unknown = views.attribution_html([FP], true_labels=[None]).data
    assert "(not known)" in unknown


def test_the_figure_title_names_the_mistake(tmp_path):
    fig = views.plot_attributions([FP, FN], kinds=["fp", "fn"])
    titles = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith(("alpha", "beta"))]
    assert titles[0].startswith("alpha (false positive):")
    assert titles[1].startswith("beta (false negative):") and "NOT CONVERGED" in titles[1]


def test_per_explanation_arguments_must_line_up():
    with pytest.raises(ParameterError, match="true_labels"):
        views.attribution_html([FP, FN], true_labels=[["beta"]])
    with pytest.raises(ParameterError, match="kinds"):
        views.attribution_html([FP], kinds=["maybe"])
    with pytest.raises(ParameterError, match="kinds"):
        views.plot_attributions([FP, FN], kinds=["fp"])
    with pytest.raises(ParameterError, match="explanations"):
        views.attribution_html([])
