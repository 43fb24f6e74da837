"""Tests for mlclf_utils.data.labels: parsing, separator detection, the label map, the quality report."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.data.labels import (
    LabelMap,
    LabelPolicy,
    detect_wrong_separator,
    normalise_label_column,
    parse_labels,
    quality_report,
)


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


# --------------------------------------------------------------------------- LabelMap


def test_label_map_from_table_is_sorted_and_stable():
    df1 = table([("x", ["web", "devel"]), ("y", ["admin"])])
    df2 = table([("y", ["admin"]), ("x", ["devel", "web"])])
    assert LabelMap.from_table(df1).names == ["admin", "devel", "web"]
    assert LabelMap.from_table(df1) == LabelMap.from_table(df2)


def test_label_map_basics():
    lm = LabelMap(["b", "a", "c"])  # the constructor keeps the order it is given
    assert len(lm) == 3
    assert lm.index_of("a") == 1
    assert "c" in lm and "z" not in lm
    names = lm.names
    names.append("zzz")
    assert lm.names == ["b", "a", "c"]  # names is a copy
    with pytest.raises(DataError, match="unknown label 'z'"):
        lm.index_of("z")


@pytest.mark.parametrize("labels", [["a", "a"], ["a", ""], ["a", 3]])
def test_label_map_rejects_bad_names(labels):
    with pytest.raises(DataError):
        LabelMap(labels)


def test_label_map_from_table_needs_lists_and_labels():
    with pytest.raises(DataError, match="normalise_label_column"):
        LabelMap.from_table(table([("x", "a,b")]))
    with pytest.raises(DataError, match="no labels"):
        LabelMap.from_table(table([("x", [])]))


def test_label_map_json_round_trip_keeps_order(tmp_path):
    path = tmp_path / "label_map.json"
    lm = LabelMap(["zeta", "alpha", "ünïcode"])
    lm.to_json(path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == {"labels": ["zeta", "alpha", "ünïcode"]}
    back = LabelMap.from_json(str(path))
    assert back == lm
    assert back.names == ["zeta", "alpha", "ünïcode"]
    assert back.index_of("alpha") == 1


@pytest.mark.parametrize(
    "content", ["not json", '["a", "b"]', '{"labels": "a"}', '{"labels": ["a", "a"]}']
)
def test_label_map_from_bad_json_names_the_file(tmp_path, content):
    path = tmp_path / "label_map.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        LabelMap.from_json(path)
    assert err.value.file == str(path)


def test_label_map_from_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        LabelMap.from_json(tmp_path / "nope.json")


def test_multi_hot_values_and_round_trip():
    lm = LabelMap(["a", "b", "c"])
    lists = [["c", "a"], [], ["b"]]
    y = lm.to_multi_hot(lists)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert lm.from_multi_hot(y) == [["a", "c"], [], ["b"]]
    assert lm.from_multi_hot(y.astype(bool)) == [["a", "c"], [], ["b"]]
    assert lm.from_multi_hot(y.astype(np.int64)) == [["a", "c"], [], ["b"]]


def test_multi_hot_unknown_label_names_rows():
    lm = LabelMap(["a", "b"])
    with pytest.raises(DataError) as err:
        lm.to_multi_hot([["a"], ["x"], ["b", "y"]], row_ids=["d:2", "d:3", "d:4"])
    assert err.value.rows == ["d:3", "d:4"]
    assert "'x'" in str(err.value) and "'y'" in str(err.value)
    with pytest.raises(DataError) as err:
        lm.to_multi_hot([["a"], ["x"]])
    assert err.value.rows == ["1"]


def test_multi_hot_refuses_a_string_instead_of_a_list():
    with pytest.raises(DataError, match="expected a list"):
        LabelMap(["a", "b"]).to_multi_hot(["a,b"])


def test_from_multi_hot_refuses_probabilities_and_bad_shapes():
    lm = LabelMap(["a", "b"])
    with pytest.raises(DataError, match="thresholds"):
        lm.from_multi_hot(np.array([[0.9, 0.2]]))
    with pytest.raises(DataError, match="shape"):
        lm.from_multi_hot(np.zeros((2, 3)))


# --------------------------------------------------------------------------- quality_report


def hand_table() -> pd.DataFrame:
    """Worked by hand: see test_quality_report_hand_worked for every expected number."""
    return table(
        [
            ("alpha", ["python", "devel"]),  # f:2  conflicting duplicate of f:10
            ("beta", ["python", "devel"]),  # f:3
            ("gamma", ["python", "devel"]),  # f:4
            ("delta", ["python"]),  # f:5  violates python => devel
            ("eps", ["devel", "web"]),  # f:6
            ("zeta", ["web", "rare"]),  # f:7  loses 'rare' (count 1)
            ("eta", []),  # f:8  no label at all
            ("theta", ["oddity"]),  # f:9  only a rare label -> emptied
            ("alpha", ["web"]),  # f:10 same text as f:2, other labels
            ("iota", ["web"]),  # f:11 duplicate of f:13 with the same labels
            ("kappa", ["devel"]),  # f:12 makes devel => python weak (3/5)
            ("iota", ["web"]),  # f:13
        ],
        prefix="f",
    )


def test_quality_report_hand_worked():
    out, rep = quality_report(
        hand_table(), min_label_count=2, implication_min_support=3, implication_min_confidence=0.75
    )
    # rare labels removed with their counts; the emptied row and the empty row dropped
    assert rep.rare_labels == {"oddity": 1, "rare": 1}
    assert rep.empty_rows == ["f:8"]
    assert rep.emptied_rows == ["f:9"]
    assert "f:8" not in out["source_id"].tolist() and "f:9" not in out["source_id"].tolist()
    assert len(out) == 10
    assert out.loc[out["source_id"] == "f:7", "labels"].item() == ["web"]
    assert rep.label_counts.to_dict() == {"devel": 5, "python": 4, "web": 5}

    # python => devel holds in 3 of 4 rows (exactly the 0.75 threshold); devel => python is 3/5
    assert rep.implications.to_dict("records") == [
        {
            "antecedent": "python",
            "consequent": "devel",
            "support": 4,
            "confidence": 0.75,
            "n_violations": 1,
        }
    ]
    assert rep.implication_violations.to_dict("records") == [
        {
            "source_id": "f:5",
            "text_preview": "delta",
            "antecedent": "python",
            "missing_label": "devel",
        }
    ]

    # only the 'alpha' texts disagree; the two 'iota' rows agree and are not a conflict
    assert len(rep.conflicting_duplicates) == 1
    group = rep.conflicting_duplicates.iloc[0]
    assert group["text"] == "alpha"
    assert group["n_rows"] == 2
    assert group["source_ids"] == ["f:2", "f:10"]
    assert group["label_sets"] == [["devel", "python"], ["web"]]

    assert rep.summary() == {
        "rows_in": 12,
        "rows_out": 10,
        "rows_dropped": 2,
        "rows_without_labels": 1,
        "rows_emptied_by_rare_labels": 1,
        "drop_empty": True,
        "min_label_count": 2,
        "labels_in": 5,
        "labels_out": 3,
        "rare_labels_removed": 2,
        "rare_label_occurrences_removed": 2,
        "labels_per_row_mean": 1.4,
        "duplicate_text_rows": 4,
        "conflicting_duplicate_groups": 1,
        "implication_rules": 1,
        "possibly_missing_labels": 1,
        "cooccurrence": "sparse",
    }


def test_quality_report_keeps_empty_rows_when_asked_and_still_counts_them():
    out, rep = quality_report(hand_table(), min_label_count=2, drop_empty=False)
    assert len(out) == 12
    assert out.loc[out["source_id"] == "f:9", "labels"].item() == []
    assert rep.summary()["rows_dropped"] == 0
    assert rep.summary()["rows_without_labels"] == 1
    assert rep.summary()["rows_emptied_by_rare_labels"] == 1


def test_quality_report_does_not_modify_its_input():
    df = hand_table()
    before = df["labels"].tolist()
    quality_report(df, min_label_count=2)
    assert df["labels"].tolist() == before


def test_quality_report_summary_is_plain_and_json_ready():
    _, rep = quality_report(hand_table(), min_label_count=1, implication_min_support=1)
    summary = rep.summary()
    json.dumps(summary)
    assert all(isinstance(v, (int, str, float, bool)) for v in summary.values())
    assert summary["labels_per_row_mean"] == round(summary["labels_per_row_mean"], 3)


def test_quality_report_all_labels_rare_gives_an_empty_table_not_a_crash():
    out, rep = quality_report(hand_table(), min_label_count=100)
    assert len(out) == 0
    assert rep.summary()["labels_out"] == 0
    assert rep.summary()["rows_dropped"] == 12
    assert rep.implications.empty


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_label_count": 0}, "min_label_count"),
        ({"min_label_count": 2.5}, "min_label_count"),
        ({"min_label_count": 2, "implication_min_support": 0}, "implication_min_support"),
        ({"min_label_count": 2, "implication_min_confidence": 0}, "implication_min_confidence"),
        ({"min_label_count": 2, "implication_min_confidence": 1.5}, "implication_min_confidence"),
        ({"min_label_count": 2, "drop_empty": "yes"}, "drop_empty"),
    ],
)
def test_quality_report_parameter_errors(kwargs, name):
    with pytest.raises(ParameterError) as err:
        quality_report(hand_table(), **kwargs)
    assert err.value.name == name


def test_quality_report_needs_normalised_lists():
    with pytest.raises(DataError) as err:
        quality_report(table([("x", "a,b")]), min_label_count=1)
    assert err.value.column == "labels"
    assert err.value.rows == ["f.csv:2"]


def test_quality_report_is_fast_on_a_debian_sized_table():
    """30k rows x 600 labels: the implication search must be one matmul, not a K x K loop."""
    rng = np.random.default_rng(0)
    n, k = 30_000, 600
    names = [f"tag{j:03d}" for j in range(k)]
    weights = 1 / np.arange(1, k + 1)
    weights /= weights.sum()
    picks = rng.choice(k, size=(n, 2), p=weights)
    labels = [sorted({names[a], names[b]}) for a, b in picks]
    df = pd.DataFrame(
        {
            "text": [f"t{i}" for i in range(n)],
            "labels": labels,
            "source_id": [str(i) for i in range(n)],
        }
    )
    start = time.perf_counter()
    quality_report(df, min_label_count=5)
    assert time.perf_counter() - start < 10


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


# --------------------------------------------------------------------------- issue 12: scale


def many_labels(n_rows: int = 20000, n_tail: int = 50000) -> pd.DataFrame:
    """50,000 distinct labels, each on two rows, plus a head label that implies nothing."""
    rng = np.random.default_rng(0)
    slots = np.concatenate([np.arange(n_tail), np.arange(n_tail)])
    rng.shuffle(slots)
    per_row = len(slots) // n_rows
    rows = [(f"text {i}", [f"tail{j:05d}" for j in slots[per_row * i: per_row * (i + 1)]]
             + [f"head{i % 20}"]) for i in range(n_rows)]
    # 40 rows that make one rule worth finding among the 50,000 labels: zz-a => zz-b, broken once
    rows += [(f"rule {i}", ["zz-a", "zz-b"] if i else ["zz-a"]) for i in range(40)]
    return table(rows, prefix="big.csv")


def test_fifty_thousand_labels_quality_report_uses_a_sparse_cooccurrence():
    """It used to compute a dense 50,000 x 50,000 Y^T Y (OpenBLAS segfaulted in the kernel)."""
    out, rep = quality_report(many_labels(), min_label_count=1, implication_min_confidence=0.9)
    summary = rep.summary()
    assert summary["labels_out"] == 50000 + 20 + 2 and summary["rare_labels_removed"] == 0
    assert summary["cooccurrence"] == "sparse"
    rules = rep.implications
    assert rules[["antecedent", "consequent"]].values.tolist() == [["zz-b", "zz-a"],
                                                                    ["zz-a", "zz-b"]]
    assert rules["n_violations"].tolist() == [0, 1]
    assert rep.implication_violations["source_id"].tolist() == ["big.csv:20002"]
    assert int(rep.label_counts["zz-b"]) == 39 and int(rep.label_counts["tail00000"]) == 2


def test_sparse_implications_match_the_hand_worked_rules():
    rows = [("t", ["a", "b"])] * 20 + [("u", ["a"])] + [("v", ["c", "b"])] * 3
    _, rep = quality_report(table(rows), min_label_count=1, implication_min_support=20,
                            implication_min_confidence=0.95)
    assert rep.implications.to_dict("records") == [
        {"antecedent": "a", "consequent": "b", "support": 21, "confidence": 0.952,
         "n_violations": 1}]
    assert rep.implication_violations["source_id"].tolist() == ["f.csv:22"]


# --------------------------------------------------------------------------- issue 12: one label


def test_a_single_label_overall_is_a_clear_error_naming_the_data():
    from mlclf_utils.data.labels import check_enough_labels

    out, rep = quality_report(table([("a", ["x"]), ("b", ["x"]), ("c", ["x"])]), min_label_count=1)
    with pytest.raises(DataError, match=r"only one label \('x'\)") as info:
        check_enough_labels(LabelMap.from_table(out), rep, file="one.csv", column="tags")
    assert info.value.file == "one.csv" and info.value.column == "tags"
    assert "at least two" in str(info.value)


def test_a_single_label_left_by_min_label_count_names_min_label_count():
    from mlclf_utils.data.labels import check_enough_labels

    rows = [("a", ["x"])] * 5 + [("b", ["x", "y"])]
    out, rep = quality_report(table(rows), min_label_count=2)
    with pytest.raises(DataError, match="min_label_count=2") as info:
        check_enough_labels(LabelMap.from_table(out), rep, file="f.csv", column="labels")
    assert "'y'" in str(info.value)
    check_enough_labels(LabelMap(["x", "y"]), rep, file="f.csv", column="labels")  # two is enough
