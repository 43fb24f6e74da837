"""Tests for the reading side of mlclf_utils.explain.token_audit on hand-made explanations: the
table 05 displays and the line that says how many pairs are suspicious, by which rule, and how
many rare words were left out. (tests/model/test_token_audit.py plants a shortcut in a model.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.errors import DataError
from mlclf_utils.explain import token_audit
from mlclf_utils.explain.attributions import Explanation


def _explanation(words, values, label="alpha") -> Explanation:
    values = np.asarray(values, dtype=float)
    return Explanation(text=" ".join(words), label=label, label_index=0, tokens=list(words),
                       token_attributions=values, words=list(words), word_attributions=values,
                       probability=0.9, baseline_probability=0.2, delta=0.0, delta_ok=True)


TRAIN = (["zorblat viewer"] * 4 + ["plain viewer"] * 10 + ["zorblat tool"] * 2
         + ["rareword once"])
LABELS = [["alpha"]] * 4 + [[]] * 10 + [[]] * 2 + [["alpha"]]
EXPLANATIONS = [_explanation(["zorblat", "viewer", "rareword"], [0.6, 0.1, 0.3]),
                _explanation(["zorblat", "tool"], [0.4, -0.2])]


@pytest.fixture
def audit():
    return token_audit.audit_tokens(EXPLANATIONS, TRAIN, LABELS, kinds={0: "fp", 1: "fn"})


def _short(name: str) -> str:
    return token_audit.VIEW_NAMES.get(name, name)


def test_the_view_keeps_the_rule_columns_rounded(audit):
    view = token_audit.top_tokens_view(audit, n=2)
    assert list(view.index.names) + list(view.columns) == [_short(c) for c in
                                                           token_audit.VIEW_COLUMNS]
    assert set(token_audit.VIEW_COLUMNS) <= set(token_audit.COLUMNS)
    assert set(token_audit.VIEW_NAMES) <= set(token_audit.VIEW_COLUMNS)
    # rareword, tool: too rare, left out
    assert view.index.get_level_values("word").tolist() == ["zorblat", "viewer"]
    assert view.index.get_level_values("class").tolist() == ["alpha", "alpha"]
    assert view[_short("mean_positive_attribution")].tolist() == [0.5, 0.1]
    lift = (4 / 6) / (5 / 17)  # 4 of zorblat's 6 texts carry alpha; 5 of all 17 texts do
    assert view["lift"].iloc[0] == round(lift, 2) and view["fp_driver"].tolist() == [1, 0]
    assert view["suspicious"].tolist() == [True, False]
    assert view[_short("train_occurrences")].tolist() == [6, 14]
    assert view[_short("class_occurrences")].tolist() == [4, 4]


def test_the_view_fits_a_notebooks_output_with_the_rule_columns_in_it():
    """05's audit table was 1118 px wide in JupyterLab's 953 px output: fp_driver and suspicious,
    which the rule uses, sat behind a scrollbar. Measured in characters: the widest cell of each
    column (its name included) at about 7.5 px, plus 16 px of padding per column, must fit."""
    classes = ["interface::commandline", "interface::graphical", "uitoolkit::ncurses"]
    words = ["acceleration", "multiplayer", "composition"]
    explanations = [_explanation([w, "tool"], [0.5, 0.1], label=c)
                    for c in classes for w in words]
    train = [f"{w} tool" for w in words] * 4 + ["plain tool"] * 20
    labels = [classes] * 12 + [[]] * 20
    kinds = dict.fromkeys(range(len(explanations)), "fp")
    audit = token_audit.audit_tokens(explanations, train, labels, kinds=kinds)
    view = token_audit.top_tokens_view(audit, n=3).reset_index()
    widths = [max(len(str(c)), *(len(str(v)) for v in view[c])) for c in view.columns]
    assert {"lift", "fp_driver", "suspicious"} <= set(view.columns)
    assert sum(widths) * 7.5 + 16 * len(widths) <= 953, dict(zip(view.columns, widths))


def test_the_note_counts_the_suspicious_pairs_the_rule_and_the_rare_words_left_out(audit):
    note = token_audit.suspicious_note(audit)
    assert note.startswith("1 of 2 (class, word) pairs are suspicious: ")
    assert audit.attrs["rule"] in note and "fp_driver >= 1" in note
    assert "2 more pairs left out" in note and "fewer than 3 train texts" in note
    without = token_audit.audit_tokens(EXPLANATIONS, TRAIN, LABELS, min_occurrences=1)
    assert "left out" not in token_audit.suspicious_note(without)
    with pytest.raises(DataError, match="audit"):
        token_audit.suspicious_note(pd.DataFrame({"class": ["alpha"]}))
