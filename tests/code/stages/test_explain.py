"""Stage 05's module: its defaults are the notebook's, its checks name the parameter, its
input from 04 and its own readers name the missing file."""

import dataclasses

import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.runner import parameters
from mlclf_utils.stages import explain

NOTEBOOK = next(p for p in parameters.stage_notebooks() if p.stem == explain.STAGE)


def test_config_defaults_are_the_notebooks():
    specs = parameters.parameter_specs(NOTEBOOK)
    config = dataclasses.asdict(explain.Config())
    assert set(specs) - {"run_dir"} == set(config)
    for name, value in config.items():
        assert specs[name].default == value, name
        assert type(specs[name].default) is type(value), name


@pytest.mark.parametrize("name, value", [
    ("n_classes", 0), ("n_per_kind", -1), ("n_steps", 2.0), ("internal_batch_size", True),
    ("max_pairs", "8"), ("oversample_factor", 0), ("retrain", 1),
])
def test_check_names_the_bad_parameter(name, value):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        explain.check({name: value})
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        explain.Config.from_params({"run_dir": None, name: value})


def test_the_runner_preflight_reaches_this_check():
    from mlclf_utils import stages

    stages.check(explain.STAGE, dataclasses.asdict(explain.Config()))
    with pytest.raises(ParameterError, match="retrain"):
        stages.check(explain.STAGE, {"retrain": "no"})


def test_the_retrain_is_skipped_for_a_reason():
    none = pd.DataFrame({"source_id": []})
    some = pd.DataFrame({"source_id": ["s:1"]})
    assert explain.retrain_skipped(explain.Config(retrain=False), some) == "retrain=False"
    assert explain.retrain_skipped(explain.Config(), none) == "no hard negatives found"
    assert explain.retrain_skipped(explain.Config(), some) is None


def test_05_refuses_a_run_without_04s_misclassifications_before_making_its_folder(tmp_path):
    with pytest.raises(DataError, match=artifacts.MISCLASSIFICATIONS) as caught:
        explain.load_inputs(tmp_path)
    assert "04_evaluate has not finished" in str(caught.value)
    assert not artifacts.path(tmp_path, explain.STAGE).exists()


@pytest.mark.parametrize("reader, name", [
    (explain.read_attributions, artifacts.ATTRIBUTIONS),
    (explain.read_token_audit, artifacts.TOKEN_AUDIT),
    (explain.read_hard_negatives, artifacts.HARD_NEGATIVES),
    (explain.read_retrain_comparison, artifacts.RETRAIN_COMPARISON),
])
def test_a_reader_names_the_missing_file(tmp_path, reader, name):
    with pytest.raises(DataError, match=name) as caught:
        reader(tmp_path)
    assert str(artifacts.path(tmp_path, explain.STAGE, name)) in str(caught.value)


def test_hard_negatives_read_back_as_written(tmp_path):
    from mlclf_utils.explain import hard_negatives

    table = hard_negatives.find_hard_negatives(
        ["a zorblat tool", "zorblat viewer", "plain tool"], [["alpha"], [], ["alpha", "beta"]],
        ["s:1", "s:2", "s:3"], [("alpha", "zorblat"), ("beta", "tool")])
    out = artifacts.path(tmp_path, explain.STAGE)
    hard_negatives.save_hard_negatives(table, out / artifacts.HARD_NEGATIVES)
    back = explain.read_hard_negatives(tmp_path)
    assert back["labels"].tolist() == [[], ["alpha"]]
    assert back.drop(columns="labels").equals(table.drop(columns="labels"))
