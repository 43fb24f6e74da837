"""Tests for mlclf_utils.data.label_map: the label map, its JSON file, and multi-hot matrices."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.errors import DataError


def table(rows: list[tuple[str, object]], prefix: str = "f.csv") -> pd.DataFrame:
    """A source table whose source_ids are file lines 2, 3, ... (line 1 is the header)."""
    return pd.DataFrame(
        {
            "text": [t for t, _ in rows],
            "labels": pd.Series([lab for _, lab in rows], dtype=object),
            "source_id": [f"{prefix}:{i + 2}" for i in range(len(rows))],
        }
    )


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
