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
    ("retrain_budget", 0), ("retrain_budget", 1.5),
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


def _inputs_with_train(run_dir, texts, label_lists, labels):
    import datasets

    from mlclf_utils.data.label_map import LabelMap

    label_map = LabelMap(labels)
    train = datasets.Dataset.from_dict({
        "text": texts, "labels": [list(r) for r in label_map.to_multi_hot(label_lists)],
        "source_id": [f"pk{i}" for i in range(len(texts))]})
    return explain.Inputs(run_dir=run_dir, model_dir=run_dir, data_dir=run_dir, train_split=train,
                          label_map=label_map, errors=pd.DataFrame())


def test_a_flagged_hard_negative_is_excluded_counted_and_listed_for_review(tmp_path):
    """On the demo, some hard negatives for uitoolkit::gtk mention gtk but lack the tag."""
    from mlclf_utils.data import label_audit

    texts = ["gtk image viewer", "a gtk frontend for mpd", "gtk theme", "ncurses player"]
    labels = [["uitoolkit::gtk"], [], ["x11::theme"], ["sound"]]
    inputs = _inputs_with_train(tmp_path, texts, labels, ["sound", "uitoolkit::gtk", "x11::theme"])
    flagged = pd.DataFrame([{"rank": 1, "source_id": "pk1", "split": "train", "text": texts[1],
                             "label": "uitoolkit::gtk", "given": label_audit.ABSENT,
                             "probability": 0.96, "issue": label_audit.MISSING, "score": 0.04,
                             "text_score": 0.2}])
    label_audit.save_issues(flagged, artifacts.path(tmp_path, artifacts.PREPROCESS,
                                                    artifacts.LABEL_AUDIT))
    token_audit = pd.DataFrame({"class": ["uitoolkit::gtk"], "token": ["gtk"],
                                "suspicious": [True]}).set_index(["class", "token"])
    pairs, negatives, review = explain.find_hard_negatives(inputs, token_audit, explain.Config())
    assert pairs == [("uitoolkit::gtk", "gtk")]
    assert negatives["source_id"].tolist() == ["pk2"]
    assert review["source_id"].tolist() == ["pk1"]
    saved = explain.read_hard_negatives(tmp_path)
    assert saved["source_id"].tolist() == ["pk2"]
    listed = pd.read_csv(artifacts.path(tmp_path, explain.STAGE, artifacts.LABELS_TO_REVIEW),
                         dtype=str)
    assert listed["source_id"].tolist() == ["pk1"] and listed["class"].tolist() == ["uitoolkit::gtk"]


def test_without_01s_label_audit_every_hard_negative_is_kept(tmp_path):
    inputs = _inputs_with_train(tmp_path, ["gtk viewer", "gtk frontend"], [["gtk"], []],
                                ["gtk", "other"])
    token_audit = pd.DataFrame({"class": ["gtk"], "token": ["gtk"],
                                "suspicious": [True]}).set_index(["class", "token"])
    _, negatives, review = explain.find_hard_negatives(inputs, token_audit, explain.Config())
    assert review is None and negatives["source_id"].tolist() == ["pk1"]
    assert not artifacts.path(tmp_path, explain.STAGE, artifacts.LABELS_TO_REVIEW).exists()
