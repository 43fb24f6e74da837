"""Tests for mlclf_utils.evaluation.misclassifications: the table, its two files, the worst examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.evaluation import misclassifications as mc
from mlclf_utils.errors import DataError, ParameterError

LABELS = ["gui", "net", "web"]
# thresholds: gui .5, net .3, web .6
#   text  y_true     probs              predicted   FP     FN         max margin
#   t0    gui        .9  .1  .2         gui         -      -          NaN
#   t1    net        .7  .2  .65        gui, web    gui    net        max(.2, .1, .05) = .2
#   t2    gui, web   .55 .35 .1         gui, net    net    web        max(.05, .5) = .5
#   t3    web        .95 .05 .59        gui         gui    web        max(.45, .01) = .45
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]])
P = np.array([[0.9, 0.1, 0.2], [0.7, 0.2, 0.65], [0.55, 0.35, 0.1], [0.95, 0.05, 0.59]])
THRESHOLDS = np.array([0.5, 0.3, 0.6])
TEXTS = ['plain', 'with, comma and "quotes"', "two\nlines", "NA"]
IDS = ["data.csv:1", "data.csv:2", "data.csv:3", "data.csv:4"]


@pytest.fixture()
def table():
    return mc.misclassification_table(TEXTS, IDS, Y, P, LABELS, THRESHOLDS)


def test_table_on_a_hand_worked_case(table):
    assert list(table.columns) == list(mc.COLUMNS) and len(table) == 4
    assert table["predicted_labels"].tolist() == [["gui"], ["gui", "web"], ["gui", "net"], ["gui"]]
    assert table["false_positives"].tolist() == [[], ["gui", "web"], ["net"], ["gui"]]
    assert table["false_negatives"].tolist() == [[], ["net"], ["web"], ["web"]]
    assert table["n_errors"].tolist() == [0, 3, 2, 2]
    np.testing.assert_allclose(table["max_error_margin"], [np.nan, 0.2, 0.5, 0.45])
    assert mc.parse_probabilities(table.loc[1, "probabilities"]) == {"gui": 0.7, "net": 0.2,
                                                                      "web": 0.65}


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_both_files_load_back_unchanged(table, tmp_path, kind):
    paths = mc.save_misclassifications(table, tmp_path / "04_evaluate")
    assert set(paths) == {"parquet", "csv"} and all(p.exists() for p in paths.values())
    loaded = mc.load_misclassifications(paths[kind])
    assert list(loaded.columns) == list(mc.COLUMNS)
    for column in ("source_id", "text", *mc.LIST_COLUMNS, "n_errors", "probabilities"):
        assert loaded[column].tolist() == table[column].tolist(), column
    np.testing.assert_allclose(loaded["max_error_margin"], table["max_error_margin"])
    assert isinstance(loaded.loc[0, "true_labels"], list)


def test_csv_lists_are_comma_separated(table, tmp_path):
    paths = mc.save_misclassifications(table, tmp_path)
    raw = pd.read_csv(paths["csv"], keep_default_na=False)
    assert raw.loc[1, "false_positives"] == "gui,web" and raw.loc[0, "false_positives"] == ""


def test_label_with_a_comma_is_refused_before_writing(tmp_path):
    table = mc.misclassification_table(["x"], ["1"], [[1, 0]], [[0.2, 0.9]], ["a,b", "c"], 0.5)
    with pytest.raises(DataError, match="a,b"):
        mc.save_misclassifications(table, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_worst_examples_are_ordered_by_confidence(table):
    fp = mc.worst_examples(table, "gui", kind="fp", n=5)
    assert fp["source_id"].tolist() == ["data.csv:4", "data.csv:2"]  # .95 before .7
    assert fp["probability"].tolist() == [0.95, 0.7]
    fn = mc.worst_examples(table, "web", kind="fn", n=1)
    assert fn["source_id"].tolist() == ["data.csv:3"]  # .1 is further below .6 than .59
    assert mc.worst_examples(table, "net", kind="fn", n=5)["source_id"].tolist() == ["data.csv:2"]
    assert mc.worst_examples(table, "gui", kind="fn").empty


def test_worst_examples_and_table_name_bad_arguments(table):
    with pytest.raises(DataError, match="unknown label"):
        mc.worst_examples(table, "nope")
    with pytest.raises(ParameterError, match="kind"):
        mc.worst_examples(table, "gui", kind="tp")
    with pytest.raises(ParameterError, match="n="):
        mc.worst_examples(table, "gui", n=0)
    with pytest.raises(DataError, match="texts has 3 entries"):
        mc.misclassification_table(TEXTS[:3], IDS, Y, P, LABELS, THRESHOLDS)
