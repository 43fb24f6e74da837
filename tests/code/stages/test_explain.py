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


def test_the_html_view_fills_each_texts_true_labels_from_04s_table(tmp_path):
    """Captum's "True Label" column was empty in 05; a chunked text is explained by one window,
    so the labels are looked up by the text picked, not by the explanation's text."""
    import numpy as np

    from mlclf_utils.explain.attributions import Explanation

    def explained(window, label):
        values = np.array([0.4, -0.1])
        return Explanation(text=window, label=label, label_index=0, tokens=window.split(),
                           token_attributions=values, words=window.split(),
                           word_attributions=values, probability=0.8, baseline_probability=0.3,
                           delta=0.0, delta_ok=True)

    errors = pd.DataFrame({"text": ["a long gtk text, first window", "ncurses player"],
                           "true_labels": [["sound", "x11::theme"], ["uitoolkit::gtk"]]})
    inputs = explain.Inputs(run_dir=tmp_path, model_dir=tmp_path, data_dir=tmp_path,
                            train_split=None, label_map=None, errors=errors)
    items = [("a long gtk text, first window", "uitoolkit::gtk"),
             ("ncurses player", "uitoolkit::gtk"), ("not from 04", "sound")]
    explanations = [explained("gtk window", "uitoolkit::gtk"),
                    explained("ncurses player", "uitoolkit::gtk"), explained("x y", "sound")]
    html = explain.show_explanations(inputs, items, explanations, {0: "fp", 1: "fn", 2: "fp"}).data
    assert "sound, x11::theme" in html and "false positive" in html
    assert "false negative" in html and "(not known)" in html
    one = explain.show_explanations(inputs, items, explanations, {0: "fp"}, n=1).data
    assert "sound, x11::theme" in one and "ncurses" not in one


def test_05_says_the_cut_mistakes_as_one_line_not_a_warning(tmp_path, capsys):
    """A real Explainer on the tiny model cutting at 12 tokens: 05's step prints the count;
    ``Explainer.explain_many`` called directly still warns (tests/model/test_attributions.py)."""
    import warnings

    from mlclf_utils.data.label_map import LabelMap
    from mlclf_utils.errors import TruncationWarning
    from mlclf_utils.explain.attributions import Explainer
    from mlclf_utils.modeling import encoders

    labels = ["alpha", "beta"]
    explainer = Explainer(encoders.load_classifier(encoders.TINY_MODEL, labels),
                          encoders.load_tokenizer(encoders.TINY_MODEL), n_steps=4, max_length=12,
                          delta_tolerance=1e3)
    (tmp_path / "data" / "train").mkdir(parents=True)
    artifacts.write_json(tmp_path / "data" / "train" / artifacts.PREPROCESS_CONFIG, {})
    inputs = explain.Inputs(run_dir=tmp_path, model_dir=tmp_path, data_dir=tmp_path / "data",
                            train_split=None, label_map=LabelMap(labels), errors=pd.DataFrame())
    inputs.out_dir.mkdir(parents=True)
    items = [(" ".join(["library"] * 30), "alpha"), ("a short text", "beta")]
    capsys.readouterr()  # loading the tiny model says it has a new head
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explanations = explain.explain_mistakes(inputs, explainer, items, progress=False)
    assert not [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(explanations) == 2 and len(explanations[0].tokens) == 12
    assert capsys.readouterr().out == (
        "explained mistakes: 1 of 2 texts were longer than 12 tokens; only their first tokens "
        "are explained, the same cut as in training (01 reported the share)\n")
