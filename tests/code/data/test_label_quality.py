"""Tests for mlclf_utils.data.label_quality: rare labels, duplicates, implication rules, one label."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.data.label_quality import check_enough_labels, quality_report
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
    out, rep = quality_report(table([("a", ["x"]), ("b", ["x"]), ("c", ["x"])]), min_label_count=1)
    with pytest.raises(DataError, match=r"only one label \('x'\)") as info:
        check_enough_labels(LabelMap.from_table(out), rep, file="one.csv", column="tags")
    assert info.value.file == "one.csv" and info.value.column == "tags"
    assert "at least two" in str(info.value)


def test_a_single_label_left_by_min_label_count_names_min_label_count():
    rows = [("a", ["x"])] * 5 + [("b", ["x", "y"])]
    out, rep = quality_report(table(rows), min_label_count=2)
    with pytest.raises(DataError, match="min_label_count=2") as info:
        check_enough_labels(LabelMap.from_table(out), rep, file="f.csv", column="labels")
    assert "'y'" in str(info.value)
    check_enough_labels(LabelMap(["x", "y"]), rep, file="f.csv", column="labels")  # two is enough
