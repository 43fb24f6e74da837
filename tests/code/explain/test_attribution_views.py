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


# --- 04's decision beside each mistake ---------------------------------------------------------
# The browser check: a "false negative, a true label, missed" row read p 0.747, while 04's table
# had 0.2713 (calibrated) against a threshold of 0.421. IG explains the raw sigmoid; what 04
# decided on is the calibrated probability, and the views must show that one beside the mistake.

LABELS = ["commandline", "graphical", "database"]
THRESHOLDS = {"commandline": 0.421, "graphical": 0.5, "database": 0.6}
TEXTS = ["a shell tool for the terminal, and much more text", "a kde viewer", "a plain library"]
CALIBRATED = np.array([[0.2713, 0.1, 0.05],   # commandline missed: calibrated below 0.421
                       [0.05, 0.62, 0.05],    # graphical predicted, not true
                       [0.05, 0.1, 0.05]])    # no error at all; database has none anywhere
TRUE = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def _inputs(tmp_path):
    from mlclf_utils.data.label_map import LabelMap
    from mlclf_utils.evaluation.misclassifications import misclassification_table
    from mlclf_utils.stages import explain

    errors = misclassification_table(TEXTS, ["s:0", "s:1", "s:2"], TRUE, CALIBRATED, LABELS,
                                     [THRESHOLDS[x] for x in LABELS])
    return explain.Inputs(run_dir=tmp_path, model_dir=tmp_path, data_dir=tmp_path,
                          train_split=None, label_map=LabelMap(LABELS), errors=errors,
                          thresholds=THRESHOLDS, calibrated=True)


def _explained(tmp_path):
    """05's picks, explained by hand with raw sigmoids on the other side of each threshold (the
    false negative's window is part of its text, as with 01's chunks)."""
    from mlclf_utils.stages import explain

    inputs = _inputs(tmp_path)
    items, kinds, classes = explain.pick_mistakes(inputs, explain.Config(n_classes=3,
                                                                         n_per_kind=1))
    assert items == [(TEXTS[0], "commandline"), (TEXTS[1], "graphical")]
    explanations = [_explanation(["a", "shell", "tool"], [0.1, 0.4, 0.2], label="commandline",
                                 probability=0.747),
                    _explanation(["a", "kde", "viewer"], [0.0, 0.1, 0.02], label="graphical",
                                 probability=0.31)]
    return inputs, items, kinds, classes, explanations


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", html)[1:]


def test_a_mistake_is_shown_with_the_probability_04_decided_on(tmp_path):
    from mlclf_utils.stages import explain

    inputs, items, kinds, _, explanations = _explained(tmp_path)
    html = explain.show_explanations(inputs, items, explanations, kinds).data
    fn, fp = _rows(html)
    assert "false negative" in fn and "calibrated p 0.271 &lt; threshold 0.421" in fn
    assert "raw sigmoid 0.747" in fn and "0.747 &lt;" not in fn and "0.747 ≥" not in fn
    assert "false positive" in fp and "calibrated p 0.620 ≥ threshold 0.500" in fp
    assert "raw sigmoid 0.310" in fp
    assert "Calibrated p: the probability 04 decided on" in html  # the legend names both
    assert "Raw sigmoid: the model's own output" in html

    fig = explain.plot_explanations(inputs, explanations, kinds=kinds, items=items)
    assert (tmp_path / "05_explain" / "figures" / "attributions.png").is_file()
    texts = [t.get_text() for t in fig.axes[0].texts]
    titles = [t for t in texts if t.startswith(("commandline", "graphical"))]
    assert titles == ["commandline (false negative):  calibrated p 0.271 < threshold 0.421",
                      "graphical (false positive):  calibrated p 0.620 ≥ threshold 0.500"]
    raw = [t for t in texts if t.startswith("explained:")]
    assert raw[0].startswith("explained: the model's raw sigmoid 0.747 (baseline 0.200)")


def test_without_04s_decision_the_view_says_so_and_shows_no_bare_p(tmp_path):
    from mlclf_utils.stages import explain

    inputs, items, kinds, _, explanations = _explained(tmp_path)
    inputs.thresholds = None
    html = explain.show_explanations(inputs, items, explanations, kinds).data
    assert html.count("04's decision not known") == 2 and "calibrated p 0" not in html
    fig = views.plot_attributions(explanations, kinds=kinds)
    assert [t.get_text() for t in fig.axes[0].texts][0] == (
        "commandline (false negative):  raw sigmoid 0.747 (baseline 0.200), delta = 1.0e-06")


def test_04s_decisions_are_looked_up_by_the_text_picked(tmp_path):
    inputs = _inputs(tmp_path)
    found = views.decisions_for([(TEXTS[0], "commandline"), ("a window", "commandline"),
                                 (TEXTS[1], "nolabel")], inputs.errors, THRESHOLDS,
                                calibrated=False)
    assert found[0] == views.Decision(0.2713, 0.421, False) and found[1:] == [None, None]
    assert found[0].describe("fn") == "uncalibrated p 0.271 < threshold 0.421"  # 04: method None
    assert views.decisions_for([(TEXTS[0], "commandline")], inputs.errors, None) == [None]


def test_a_rounded_probability_on_the_wrong_side_is_not_shown_as_a_contradiction():
    """04 decides on unrounded probabilities but stores 4 places: 0.4210 can be a miss."""
    decision = views.Decision(0.4210, 0.42098)
    assert decision.describe() == "calibrated p 0.4210 ≥ threshold 0.4210"
    assert decision.describe("fn") == "calibrated p 0.4210 ≈ threshold 0.4210"
    # beyond the rounding, a contradiction stays visible: a wrong lookup is not papered over
    assert views.Decision(0.2, 0.5).describe("fp") == "calibrated p 0.200 < threshold 0.500"


def test_decisions_must_line_up_with_the_explanations():
    with pytest.raises(ParameterError, match="decisions"):
        views.attribution_html([FP, FN], decisions=[views.Decision(0.9, 0.5)])
    with pytest.raises(ParameterError, match="decisions"):
        views.plot_attributions([FP], decisions=[(0.9, 0.5, True, "x")])


def test_the_classes_05_names_are_the_classes_it_explains(tmp_path):
    """pick_mistakes named 6 classes, database among them, while the summary counted 5: a class
    without a single test error has nothing to explain and is not named."""
    _, _, kinds, classes, explanations = _explained(tmp_path)
    assert classes == ["commandline", "graphical"]
    summary = views.explanation_summary(explanations, kinds)
    assert summary.startswith(f"explained pairs: 2 over {len(classes)} classes")


def test_the_legend_names_the_probability_the_rows_show(tmp_path):
    # With 04's calibration_method=None the rows read "uncalibrated p": the legend must too.
    _, _, kinds, _, explanations = _explained(tmp_path)
    for calibrated, word in ((True, "Calibrated p:"), (False, "Uncalibrated p:")):
        decisions = [views.Decision(0.2713, 0.421, calibrated), None]
        html = views.attribution_html(explanations, kinds=kinds, decisions=decisions).data
        legend = html.split("<table>")[0]
        assert word in legend and ("Uncalibrated" in legend) is not calibrated
