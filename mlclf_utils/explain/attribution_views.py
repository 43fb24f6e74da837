"""Looking at explanations: a coloured-text figure, Captum's HTML table, a table per word,
and the structure-only summary that 05's nbval check prints.

Apart from ``mlclf_utils.explain.attributions`` (which computes them) so that explaining needs
no plotting library and each module stays one concern.
"""

from __future__ import annotations

import html as html_lib
import math

import numpy as np
import pandas as pd

from mlclf_utils.errors import ParameterError, check_positive_int
from mlclf_utils.explain.attributions import DELTA_FLOOR, check_explanations

# Layout of the static figure, in character cells of a monospace font: fixed cells make the
# line wrapping exact without asking a renderer for text widths.
_CHARS_PER_LINE = 112  # DejaVu Sans Mono: 0.6 em per character, 10 in wide
_LINE_HEIGHT_IN = 0.28
_FONT_SIZE = 10


def _colour(value: float, scale: float) -> tuple[float, float, float, float]:
    strength = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    base = (0.84, 0.15, 0.16) if value > 0 else (0.13, 0.40, 0.85)
    return (*base, 0.85 * strength)


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


def plot_attributions(explanations, path=None, *, max_words: int = 60):
    """A PNG-friendly "coloured text" figure: red pushes the label's probability up, blue down.

    Static on purpose: GitHub strips the HTML/JS of notebook outputs but shows images. Colours
    are scaled per block to its largest |attribution|; at most ``max_words`` words are drawn.
    """
    from mlclf_utils.figures import pyplot, save_figure

    plt, _ = pyplot()

    explanations = check_explanations(explanations)
    check_positive_int("max_words", max_words)
    blocks = []
    for e in explanations:
        words = list(e.words[:max_words])
        if len(e.words) > max_words:
            words.append(f"… (+{len(e.words) - max_words} words)")
        blocks.append((e, words, _wrap(words, _CHARS_PER_LINE)))
    n_lines = sum(len(lines) + 2 for _, _, lines in blocks) + 1  # title + gap per block, key
    fig = plt.figure(figsize=(10, max(1.0, n_lines * _LINE_HEIGHT_IN + 0.3)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, _CHARS_PER_LINE)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    y = 0.5
    for e, words, lines in blocks:
        flag = "" if e.delta_ok else "  NOT CONVERGED (raise n_steps)"
        ax.text(0, y, f"{e.label}:  p = {e.probability:.3f}  "
                      f"(baseline {e.baseline_probability:.3f}),  delta = {e.delta:.1e}{flag}",
                fontsize=_FONT_SIZE, fontweight="bold", va="center", parse_math=False,
                color="black" if e.delta_ok else "darkred")
        y += 1
        shown = e.word_attributions[:max_words]
        scale = float(np.max(np.abs(shown))) if len(shown) else 0.0
        for line in lines:
            x = 0
            for i in line:
                value = float(e.word_attributions[i]) if i < len(shown) else 0.0
                ax.text(x, y, words[i], family="monospace", fontsize=_FONT_SIZE, va="center",
                        parse_math=False,
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": _colour(value, scale),
                              "edgecolor": "none"})
                x += len(words[i]) + 1
            y += 1
        y += 1
    ax.text(0, y, "red: the word raises the label's probability; blue: lowers it "
                  "(colour scaled to each text's strongest word)",
            fontsize=_FONT_SIZE - 1, color="dimgray", va="center")
    return save_figure(fig, path)


def captum_html(explanations, *, true_labels=None):
    """Captum's own HTML table (interactive notebooks only: GitHub does not render it).

    Attributions are scaled per text to [-1, 1], the range Captum's colours expect; words are
    HTML-escaped because Captum pastes them into the markup as they are.
    """
    from captum.attr import visualization as viz
    from IPython.utils.capture import capture_output

    explanations = check_explanations(explanations)
    if true_labels is not None and len(true_labels) != len(explanations):
        raise ParameterError("true_labels", f"{len(true_labels)} entries",
                             f"need one per explanation ({len(explanations)})")
    records = []
    for i, e in enumerate(explanations):
        scale = float(np.max(np.abs(e.word_attributions))) if len(e.word_attributions) else 0.0
        scaled = e.word_attributions / scale if scale > 0 else e.word_attributions
        truth = "" if true_labels is None else true_labels[i]
        records.append(viz.VisualizationDataRecord(
            scaled, e.probability, e.label, html_lib.escape(str(truth)), e.label,
            float(np.sum(e.word_attributions)), [html_lib.escape(w) for w in e.words], e.delta))
    # visualize_text also calls display(); swallow that so a notebook shows the table once.
    with capture_output(display=True):
        return viz.visualize_text(records)


def explanations_table(explanations) -> pd.DataFrame:
    """One row per (explanation, word), for sorting, filtering and saving."""
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
