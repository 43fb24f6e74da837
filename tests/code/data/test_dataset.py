import json

import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.data import dataset
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.errors import DataError, MlclfError


@pytest.fixture()
def table():
    return pd.DataFrame({
        "source_id": ["a", "b", "c", "d"],
        "text": ["one", "two", "three", "four"],
        "labels": [["x"], ["x", "y"], ["y"], ["z", "x"]],
        "split": ["train", "train", "validation", "test"],
        "input_ids": [[101, 1, 102], [101, 2, 3, 102], [101, 4, 102], [101, 102]],
        "n_tokens": [3, 4, 3, 2],
    })


def test_dataset_dict_holds_float_multi_hot_labels_and_unpadded_ids(table):
    label_map = LabelMap(["x", "y", "z"])
    dsd = dataset.build_dataset_dict(table, label_map)
    assert set(dsd) == {"train", "validation", "test"} and dsd["train"].num_rows == 2
    row = dsd["train"][1]
    assert row["labels"] == [1.0, 1.0, 0.0] and row["input_ids"] == [101, 2, 3, 102]
    assert row["attention_mask"] == [1, 1, 1, 1] and row["length"] == 4
    assert dsd["test"][0]["labels"] == [1.0, 0.0, 1.0] and dsd["test"][0]["source_id"] == "d"
    assert dsd["train"].features["labels"].feature.dtype == "float32"


def test_class_statistics_count_positives_per_split(table):
    stats = dataset.class_statistics(table, LabelMap(["x", "y", "z"]))
    assert stats["rows"] == {"train": 2, "validation": 1, "test": 1}
    assert stats["positives"]["train"] == [2, 1, 0] and stats["positives"]["test"] == [1, 0, 1]
    frame = dataset.class_statistics_table(stats)
    assert frame.loc["x", "share_train"] == 1.0


def test_saved_splits_are_self_contained_channels(table, tmp_path):
    label_map = LabelMap(["x", "y", "z"])
    stats = dataset.class_statistics(table, label_map)
    folder = dataset.save_dataset(dataset.build_dataset_dict(table, label_map), tmp_path / "dataset",
                                  label_map=label_map, class_stats=stats,
                                  preprocess_config={"max_length": 64})
    for split in artifacts.SPLITS:
        names = {p.name for p in (folder / split).iterdir()}
        assert {"label_map.json", "class_stats.json", "preprocess_config.json"} <= names
    channel = dataset.copy_split(folder / "validation", tmp_path / "opt" / "validation")
    loaded, loaded_map = dataset.load_split(channel)
    assert loaded_map.labels == ["x", "y", "z"] and loaded[0]["text"] == "three"
    assert json.loads((channel / "class_stats.json").read_text()) == stats
    assert dataset.read_split_json(channel, artifacts.PREPROCESS_CONFIG) == {"max_length": 64}
    with pytest.raises(MlclfError, match="never overwrites"):
        dataset.save_dataset(dataset.build_dataset_dict(table, label_map), folder,
                             label_map=label_map, class_stats=stats, preprocess_config={})


def test_empty_split_and_unknown_split_are_errors(table):
    with pytest.raises(DataError, match="validation split is empty"):
        dataset.build_dataset_dict(table[table["split"] != "validation"], LabelMap(["x", "y", "z"]))
    bad = table.assign(split=["train", "train", "dev", "test"])
    with pytest.raises(DataError, match="unknown split names \\['dev'\\]"):
        dataset.build_dataset_dict(bad, LabelMap(["x", "y", "z"]))


def test_load_split_refuses_a_foreign_folder(tmp_path):
    with pytest.raises(MlclfError, match="label_map.json"):
        dataset.load_split(tmp_path)


def test_a_split_folder_without_its_json_names_the_file(tmp_path):
    with pytest.raises(DataError, match="class_stats.json") as info:
        dataset.read_split_json(tmp_path, artifacts.CLASS_STATS)
    assert info.value.file == str(tmp_path / "class_stats.json")
