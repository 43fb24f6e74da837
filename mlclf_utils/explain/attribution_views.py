"""Looking at explanations: a coloured-text figure, the same colours as an HTML table, a table
per word, and the structure-only summary that 05's nbval check prints. Beside each mistake the
views put 04's decision (``Decision``: calibrated p against the threshold), and name the raw
sigmoid that integrated gradients explains as such.

The figure and the HTML share one colour map (red raises the label's probability, blue lowers
it, strength scaled to the text's strongest word): Captum's own text view colours positive green
and negative red, so next to the figure the same red meant opposite things, and its "True Label"
column is blank unless the caller fills it. Apart from ``mlclf_utils.explain.attributions``
(which computes them) so that explaining needs no plotting library.
"""

from __future__ import annotations

import html as html_lib
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from mlclf_utils.errors import ParameterError, check_positive_int
from mlclf_utils.evaluation.misclassifications import PROBABILITY_DECIMALS, parse_probabilities
from mlclf_utils.explain.explanation import DELTA_FLOOR, check_explanations

# Layout of the static figure, in character cells of a monospace font: fixed cells make the
# line wrapping exact without asking a renderer for text widths.
_CHARS_PER_LINE = 112  # DejaVu Sans Mono: 0.6 em per character, 10 in wide
_LINE_HEIGHT_IN = 0.28
_FONT_SIZE = 10


RAISES_RGB = (0.84, 0.15, 0.16)  # red: the word raises the label's probability
LOWERS_RGB = (0.13, 0.40, 0.85)  # blue: it lowers it
KEY = ("red: the word raises the label's probability; blue: lowers it "
       "(colour scaled to each text's strongest word)")
KIND_NAMES = {"fp": "false positive", "fn": "false negative",
              "tp": "true positive", "tn": "true negative"}
KIND_MEANINGS = {"fp": "predicted, but not a true label", "fn": "a true label, missed",
                 "tp": "a true label, predicted", "tn": "not a true label, not predicted"}


# Whether a kind of mistake means "predicted" (p at or above the threshold).
KIND_PREDICTED = {"fp": True, "fn": False, "tp": True, "tn": False}


class Decision(NamedTuple):
    """The probability 04 decided one (text, label) on, and the threshold it was held to.

    Integrated gradients explains the model's own sigmoid (completeness holds for it), but 04
    decides on calibrated probabilities: for a long text the max over its windows, then 04's
    calibration map. The two can lie on opposite sides of the threshold, so a view shows this
    one beside a decision and names the other "raw sigmoid".
    """

    probability: float
    threshold: float
    calibrated: bool = True

    def describe(self, kind: str | None = None) -> str:
        """``calibrated p 0.271 < threshold 0.421``; "≈" where the rounding of 04's table
        (``PROBABILITY_DECIMALS``) puts p on the other side of the mistake 04 recorded."""
        p, t = self.probability, self.threshold
        side = "≥" if p >= t else "<"
        if (kind is not None and KIND_PREDICTED[kind] != (p >= t)
                and abs(p - t) <= 0.5 * 10.0 ** -PROBABILITY_DECIMALS):
            side = "≈"
        digits = 3 if round(p, 3) != round(t, 3) else 4
        name = "calibrated p" if self.calibrated else "uncalibrated p"
        return f"{name} {p:.{digits}f} {side} threshold {t:.{digits}f}"


def decisions_for(items, errors: pd.DataFrame, thresholds: dict | None, *,
                  calibrated: bool = True) -> list[Decision | None]:
    """04's decision for each (text, label), from its misclassification table and thresholds.

    Looked up by the text picked, not the explanation's text: a chunked text is explained by
    one window, whose sigmoid is not what 04 decided on. None where 04 has no such text, no
    probability for the label, or no threshold.
    """
    items = list(items)
    if thresholds is None or "probabilities" not in errors.columns:
        return [None] * len(items)
    cells = dict(zip(errors["text"], errors["probabilities"]))
    out = []
    for text, label in items:
        p = parse_probabilities(cells[text]).get(label) if text in cells else None
        t = thresholds.get(label)
        out.append(None if p is None or t is None else Decision(float(p), float(t), calibrated))
    return out


def word_colour(value: float, scale: float) -> tuple[float, float, float, float]:
    """RGBA of one word, shared by the figure and the HTML so both mean the same thing."""
    strength = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    base = RAISES_RGB if value > 0 else LOWERS_RGB
    return (*base, 0.85 * strength)


def _scale(e) -> float:
    """The text's strongest |attribution|, over all its words (also those the figure cuts)."""
    return float(np.max(np.abs(e.word_attributions))) if len(e.word_attributions) else 0.0


def _kind_of(kinds, i: int) -> str | None:
    if kinds is None:
        return None
    kind = kinds.get(i) if isinstance(kinds, dict) else kinds[i]
    if kind is not None and kind not in KIND_NAMES:
        raise ParameterError("kinds", kind, f"values must be one of {sorted(KIND_NAMES)}")
    return kind


def _check_per_explanation(name: str, values, n: int) -> None:
    """A list needs one entry per explanation; a dict (position -> value) may hold more."""
    if values is not None and not isinstance(values, dict) and len(values) != n:
        raise ParameterError(name, f"{len(values)} entries", f"need one per explanation ({n})")


def _wrap(words: list[str], width: int) -> list[list[int]]:
    lines, current, used = [], [], 0
    for i, word in enumerate(words):
        need = len(word) + (1 if current else 0)
        if current and used + need > width:
            lines.append(current)
            current, used = [], 0
            need = len(word)
        current.append(i)
        used += need
    if current:
        lines.append(current)
    return lines


def plot_attributions(explanations, path=None, *, kinds=None, decisions=None,
                      max_words: int = 60):
    """A PNG-friendly "coloured text" figure: red pushes the label's probability up, blue down.

    Static on purpose: GitHub strips the HTML/JS of notebook outputs but shows images. Colours
    are scaled per block to its largest |attribution|; at most ``max_words`` words are drawn.
    ``kinds`` (position -> "fp"/"fn", as ``stages.explain.pick_mistakes`` gives it) names the
    mistake in each block's title; ``decisions`` (one ``Decision`` or None per explanation) puts
    04's calibrated p and threshold there, the raw sigmoid IG explains on the line below.
    """
    from mlclf_utils.figures import pyplot, save_figure

    plt, _ = pyplot()

    explanations = check_explanations(explanations)
    check_positive_int("max_words", max_words)
    _check_per_explanation("kinds", kinds, len(explanations))
    decisions = _check_decisions(decisions, len(explanations))
    blocks = []
    for e in explanations:
        words = list(e.words[:max_words])
        if len(e.words) > max_words:
            words.append(f"… (+{len(e.words) - max_words} words)")
        blocks.append((e, words, _wrap(words, _CHARS_PER_LINE)))
    # Per block: its title (a second line for the raw sigmoid when 04's decision heads it), its
    # lines of words and a gap; then the key.
    n_lines = sum(len(lines) + 2 + (d is not None)
                  for (_, _, lines), d in zip(blocks, decisions)) + 1
    fig = plt.figure(figsize=(10, max(1.0, n_lines * _LINE_HEIGHT_IN + 0.3)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, _CHARS_PER_LINE)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    y = 0.5
    for block, (e, words, lines) in enumerate(blocks):
        flag = "" if e.delta_ok else "  NOT CONVERGED (raise n_steps)"
        kind = _kind_of(kinds, block)
        named = f" ({KIND_NAMES[kind]})" if kind else ""
        decision = decisions[block]
        title = (f"  {_raw_line(e)}" if decision is None
                 else f"  {decision.describe(kind)}")
        ax.text(0, y, f"{e.label}{named}:{title}{flag}", fontsize=_FONT_SIZE,
                fontweight="bold", va="center", parse_math=False,
                color="black" if e.delta_ok else "darkred")
        y += 1
        if decision is not None:
            ax.text(0, y, f"explained: the model's {_raw_line(e)}", fontsize=_FONT_SIZE - 1,
                    color="dimgray", va="center", parse_math=False)
            y += 1
        shown = e.word_attributions[:max_words]
        scale = _scale(e)
        for line in lines:
            x = 0
            for i in line:
                value = float(e.word_attributions[i]) if i < len(shown) else 0.0
                ax.text(x, y, words[i], family="monospace", fontsize=_FONT_SIZE, va="center",
                        parse_math=False,
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": word_colour(value, scale),
                              "edgecolor": "none"})
                x += len(words[i]) + 1
            y += 1
        y += 1
    ax.text(0, y, KEY, fontsize=_FONT_SIZE - 1, color="dimgray", va="center")
    return save_figure(fig, path)


def _check_decisions(decisions, n: int) -> list:
    if decisions is None:
        return [None] * n
    _check_per_explanation("decisions", decisions, n)
    if isinstance(decisions, dict):
        raise ParameterError("decisions", "a dict", "pass one Decision (or None) per explanation")
    wrong = [d for d in decisions if d is not None and not isinstance(d, Decision)]
    if wrong:
        raise ParameterError("decisions", wrong[0], "entries must be Decision or None")
    return list(decisions)


def _raw_line(e) -> str:
    """What IG split over the words: the raw sigmoid, from its value at the [PAD] baseline."""
    return (f"raw sigmoid {e.probability:.3f} (baseline {e.baseline_probability:.3f}), "
            f"delta = {e.delta:.1e}")


def _css(rgba: tuple[float, float, float, float]) -> str:
    r, g, b, a = rgba
    return f"rgba({round(r * 255)}, {round(g * 255)}, {round(b * 255)}, {a:.3f})"


def _swatch(rgb, text: str) -> str:
    return (f'<span style="background-color: {_css((*rgb, 0.85))}; padding: 0 4px">'
            f"{html_lib.escape(text)}</span>")


def attribution_html(explanations, *, kinds=None, true_labels=None, decisions=None):
    """The figure's colours as an HTML table, every word shown; hover a word for its number.

    Interactive notebooks only (GitHub does not render it; the figure is the view that travels).
    ``true_labels``: the texts' true labels, one list (or None: not known) per explanation, so
    that a false positive can be read against what the text really carries. ``decisions``: as
    in ``plot_attributions``.
    """
    from IPython.display import HTML

    explanations = check_explanations(explanations)
    _check_per_explanation("kinds", kinds, len(explanations))
    _check_per_explanation("true_labels", true_labels, len(explanations))
    decisions = _check_decisions(decisions, len(explanations))
    if isinstance(true_labels, dict):
        raise ParameterError("true_labels", "a dict", "pass one list of labels per explanation")
    cell = 'style="text-align: left; vertical-align: top; padding: 4px 8px"'
    head = ["explained label", "mistake", "true labels", "04's decision; what IG explains",
            "words"]
    rows = ["<tr>" + "".join(f"<th {cell}>{h}</th>" for h in head) + "</tr>"]
    for i, e in enumerate(explanations):
        kind = _kind_of(kinds, i)
        mistake = (f"<b>{KIND_NAMES[kind]}</b><br>{KIND_MEANINGS[kind]}" if kind else "")
        if true_labels is None:
            truth = ""
        elif true_labels[i] is None:
            truth = "(not known)"
        else:
            names = [str(x) for x in true_labels[i]]
            truth = html_lib.escape(", ".join(names)) if names else "(none)"
        flag = "" if e.delta_ok else "<br><b>not converged</b> (raise n_steps)"
        scale = _scale(e)
        words = " ".join(
            f'<span title="{float(v):+.4f}" style="background-color: {_css(word_colour(v, scale))};'
            f' padding: 0 2px; line-height: 1.8">{html_lib.escape(w)}</span>'
            for w, v in zip(e.words, e.word_attributions))
        decided = ("04's decision not known" if decisions[i] is None
                   else f"<b>{html_lib.escape(decisions[i].describe(kind))}</b>")
        explained = (f"raw sigmoid {e.probability:.3f} "
                     f"(baseline {e.baseline_probability:.3f})")
        cells = [html_lib.escape(e.label), mistake, truth,
                 f"{decided}<br>{explained}{flag}", words]
        rows.append("<tr>" + "".join(f"<td {cell}>{c}</td>" for c in cells) + "</tr>")
    decided_on = ("Uncalibrated" if any(d is not None and not d.calibrated for d in decisions)
                  else "Calibrated")  # as each row's own words say (04 without calibration)
    legend = (f"<p>{_swatch(RAISES_RGB, 'red')}: the word raises the explained label's "
              f"probability; {_swatch(LOWERS_RGB, 'blue')}: lowers it. Colour scaled to each "
              f"text's strongest word; hover a word for its attribution. {decided_on} p: the "
              "probability 04 decided on, against 04's threshold for the label. Raw sigmoid: the "
              "model's own output for the explained text (for a long text, its deciding "
              "window), which integrated gradients splits over the words, from its baseline, "
              "the text with its words replaced by [PAD].</p>")
    return HTML(f"<div>{legend}<table>{''.join(rows)}</table></div>")


def explanations_table(explanations) -> pd.DataFrame:
    """One row per (explanation, word), for sorting, filtering and saving; ``probability`` is
    the raw sigmoid that IG explains, not the calibrated one 04 decided on (04's table has it)."""
    explanations = check_explanations(explanations)
    rows = []
    for text_id, e in enumerate(explanations):
        for position, (word, value) in enumerate(zip(e.words, e.word_attributions)):
            rows.append({"text_id": text_id, "label": e.label, "position": position, "word": word,
                         "attribution": float(value), "probability": e.probability,
                         "baseline_probability": e.baseline_probability, "delta": e.delta,
                         "delta_ok": e.delta_ok})
    columns = ["text_id", "label", "position", "word", "attribution", "probability",
               "baseline_probability", "delta", "delta_ok"]
    return pd.DataFrame(rows, columns=columns)


def explanation_summary(explanations, kinds, *, delta_tolerance: float = 1e-2) -> str:
    """What 05 explained, as names, counts and booleans only (for the nbval check).

    ``kinds`` maps an explanation's position to "fp" or "fn". Completeness (the attributions sum
    to F(text) - F(baseline)) is re-checked from the numbers rather than read from ``delta_ok``,
    so a wrong flag cannot hide a failed integration.
    """
    explanations = check_explanations(explanations)
    per_class: dict[str, dict[str, int]] = {}
    for i, e in enumerate(explanations):
        counts = per_class.setdefault(e.label, {"fp": 0, "fn": 0})
        counts[kinds[i]] += 1
    within = all(
        math.isfinite(e.delta) and abs(float(np.sum(e.token_attributions))
                                       - (e.probability - e.baseline_probability))
        <= delta_tolerance * max(abs(e.probability - e.baseline_probability), DELTA_FLOOR)
        for e in explanations)
    lines = [f"explained pairs: {len(explanations)} over {len(per_class)} classes"]
    lines += [f"  {label}: fp {c['fp']}, fn {c['fn']}" for label, c in per_class.items()]
    lines.append(f"every convergence delta within tolerance ({delta_tolerance:g}): {within}")
    return "\n".join(lines)
