"""Tests for mlclf_utils.data.labels: the label policy, parsing, separator detection, the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.data.labels import (
    LabelPolicy,
    detect_wrong_separator,
    normalise_label_column,
    parse_labels,
)
from mlclf_utils.errors import DataError, ParameterError


def table(rows: list[tuple[str, object]], prefix: str = "f.csv") -> pd.DataFrame:
    """A source table whose source_ids are file lines 2, 3, ... (line 1 is the header)."""
    return pd.DataFrame(
        {
            "text": [t for t, _ in rows],
            "labels": pd.Series([lab for _, lab in rows], dtype=object),
            "source_id": [f"{prefix}:{i + 2}" for i in range(len(rows))],
        }
    )


# --------------------------------------------------------------------------- LabelPolicy


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"separator": ""}, "label_sep"),
        ({"separator": 3}, "label_sep"),
        ({"case": "title"}, "label_case"),
        ({"strip": "yes"}, "label_strip"),
        ({"dedupe": 1}, "label_dedupe"),
    ],
)
def test_policy_rejects_bad_values_naming_the_parameter(kwargs, name):
    with pytest.raises(ParameterError) as err:
        LabelPolicy(**kwargs)
    assert err.value.name == name
    assert name in str(err.value)


# --------------------------------------------------------------------------- parse_labels


def test_parse_splits_strips_lowercases_and_dedupes_by_default():
    assert parse_labels("Python, web ,python,WEB") == ["python", "web"]


def test_parse_keeps_first_occurrence_order():
    assert parse_labels("c,a,b,a,c") == ["c", "a", "b"]


def test_parse_removes_empty_pieces():
    assert parse_labels("a,,b,") == ["a", "b"]
    assert parse_labels(",, ,") == []
    assert parse_labels("") == []


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, np.float32("nan"), pd.NA])
def test_parse_missing_value_means_no_labels(missing):
    assert parse_labels(missing) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [("lower", ["abc", "déf"]), ("upper", ["ABC", "DÉF"]), ("keep", ["aBc", "Déf"])],
)
def test_parse_case_policies(case, expected):
    assert parse_labels("aBc;Déf", LabelPolicy(separator=";", case=case)) == expected


def test_parse_case_applies_before_dedupe():
    assert parse_labels("A,a", LabelPolicy(case="keep")) == ["A", "a"]
    assert parse_labels("A,a", LabelPolicy(case="lower")) == ["a"]


def test_parse_without_dedupe_keeps_repeats():
    assert parse_labels("a,b,a", LabelPolicy(dedupe=False)) == ["a", "b", "a"]


def test_parse_without_strip_keeps_spaces_but_drops_blank_pieces():
    assert parse_labels("a, b,  ,", LabelPolicy(strip=False)) == ["a", " b"]


def test_parse_multi_character_separator():
    assert parse_labels("a :: b::c", LabelPolicy(separator="::")) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "value", [["B ", "a", "b"], ("B ", "a", "b"), np.array(["B ", "a", "b"])]
)
def test_parse_already_split_values_are_still_normalised(value):
    assert parse_labels(value) == ["b", "a"]


def test_parse_does_not_split_items_of_a_list_again():
    # A list is taken as already split: a comma inside an item is part of that label.
    assert parse_labels(["a,b", "c"]) == ["a,b", "c"]


@pytest.mark.parametrize("value", [3, 2.5, {"a": 1}, b"a,b", True])
def test_parse_rejects_other_types_naming_where(value):
    with pytest.raises(DataError) as err:
        parse_labels(value, where="data.csv:17")
    assert "data.csv:17" in str(err.value)
    assert err.value.rows == ["data.csv:17"]


@pytest.mark.parametrize("value", [["a", 1], ["a", None], [["a"]]])
def test_parse_rejects_non_string_items(value):
    with pytest.raises(DataError, match="data.csv:5.*must be a string"):
        parse_labels(value, where="data.csv:5")


def test_parse_rejects_two_dimensional_arrays():
    with pytest.raises(DataError, match="2-d"):
        parse_labels(np.array([["a", "b"]]))


# --------------------------------------------------------------------------- separators


def test_detect_wrong_separator_finds_semicolons():
    assert detect_wrong_separator(["a;b", "c; d", "e"]) == ";"


def test_detect_wrong_separator_other_candidates():
    assert detect_wrong_separator(["a|b", "c|d"]) == "|"
    assert detect_wrong_separator(["a,b", "c,d"], separator=";") == ","


def test_detect_wrong_separator_silent_when_expected_separator_is_used():
    assert detect_wrong_separator(["a,b", "c;d", "e;f"]) is None


def test_detect_wrong_separator_silent_for_single_labels():
    assert detect_wrong_separator(["a", "b", "c"]) is None
    assert detect_wrong_separator([]) is None


def test_detect_wrong_separator_ignores_a_lone_odd_label():
    # One value in a hundred with a ';' is more likely a label name than a separator.
    assert detect_wrong_separator(["a;b"] + ["x"] * 99) is None
    assert detect_wrong_separator(["a;b", "c;d"] + ["x"] * 38) == ";"


def test_detect_wrong_separator_ignores_non_strings():
    assert detect_wrong_separator([["a;b"], None, float("nan"), "c;d", "e;f"]) == ";"


# --------------------------------------------------------------------------- normalise_label_column


def test_normalise_column_semicolons_raise_naming_column_and_rows():
    df = table([("t1", "a;b"), ("t2", "c"), ("t3", "d; e")])
    with pytest.raises(DataError) as err:
        normalise_label_column(df, LabelPolicy(separator=","))
    assert err.value.column == "labels"
    assert err.value.rows == ["f.csv:2", "f.csv:4"]
    text = str(err.value)
    assert "labels look separated by ';' but label_sep=','" in text
    assert "f.csv:2" in text and "f.csv:4" in text
    assert "label_sep=';'" in text  # the hint says what to set


def test_normalise_column_parses_and_returns_a_copy():
    df = table([("t1", "A, b"), ("t2", None), ("t3", ["C", "c"]), ("t4", float("nan"))])
    out = normalise_label_column(df, LabelPolicy())
    assert out["labels"].tolist() == [["a", "b"], [], ["c"], []]
    assert df["labels"].iloc[0] == "A, b"  # input untouched
    assert out["source_id"].tolist() == df["source_id"].tolist()


def test_normalise_column_names_every_bad_row():
    df = table([("t1", "a"), ("t2", 5), ("t3", {"x": 1}), ("t4", ["a", 2])])
    with pytest.raises(DataError) as err:
        normalise_label_column(df, LabelPolicy())
    assert err.value.column == "labels"
    assert err.value.rows == ["f.csv:3", "f.csv:4", "f.csv:5"]


def test_normalise_column_missing_column():
    with pytest.raises(DataError) as err:
        normalise_label_column(pd.DataFrame({"text": ["x"]}), LabelPolicy())
    assert err.value.column == "labels"


# --------------------------------------------------------------------------- properties

SEPARATORS = [",", ";", "|", "::"]
label_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("aAbBzZ ,;|:\t-_ÉéßΣσ")), st.characters(codec="utf-8")
    ),
    max_size=40,
)
policies = st.builds(
    LabelPolicy,
    separator=st.sampled_from(SEPARATORS),
    case=st.sampled_from(["lower", "upper", "keep"]),
    strip=st.booleans(),
    dedupe=st.booleans(),
)


@settings(max_examples=50, deadline=None)
@given(value=label_text, policy=policies)
def test_property_parse_is_idempotent_through_join(value, policy):
    parsed = parse_labels(value, policy)
    assert parse_labels(policy.separator.join(parsed), policy) == parsed


@settings(max_examples=50, deadline=None)
@given(value=st.one_of(label_text, st.lists(label_text, max_size=6)), policy=policies)
def test_property_parse_output_is_clean(value, policy):
    parsed = parse_labels(value, policy)
    assert all(isinstance(x, str) and x.strip() != "" for x in parsed)
    if policy.dedupe:
        assert len(parsed) == len(set(parsed))
    if policy.strip:
        assert all(x == x.strip() for x in parsed)
    if policy.case == "lower":
        assert all(x == x.lower() for x in parsed)
    if policy.case == "upper":
        assert all(x == x.upper() for x in parsed)
    # parsing an already parsed list changes nothing
    assert parse_labels(parsed, policy) == parsed
