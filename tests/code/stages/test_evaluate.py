"""Stage 04's module: its defaults are the notebook's, its checks name the parameter, its
readers name the missing file, and ``run()`` writes what ``read_report`` returns."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.runner import parameters
from mlclf_utils.stages import evaluate

NOTEBOOK = next(p for p in parameters.stage_notebooks() if p.stem == evaluate.STAGE)


def test_config_defaults_are_the_notebooks():
    specs = parameters.parameter_specs(NOTEBOOK)
    config = dataclasses.asdict(evaluate.Config())
    assert set(specs) - {"run_dir"} == set(config)
    for name, value in config.items():
        assert specs[name].default == value, name
        assert type(specs[name].default) is type(value), name


def test_config_from_params_ignores_run_dir_and_checks_the_rest():
    config = evaluate.Config.from_params({"run_dir": "runs/x", "worst_n": 2})
    assert config.worst_n == 2 and config.min_support == evaluate.Config().min_support
    with pytest.raises(ParameterError, match="parameter batch_size=0"):
        evaluate.Config.from_params({"batch_size": 0})


@pytest.mark.parametrize("name, value", [
    ("min_support", 0), ("batch_size", 2.5), ("worst_n", True),
    ("threshold_fallback", "median"), ("threshold_shrinkage", -1.0),
    ("calibration_method", "isotonic"), ("plain_baseline", "yes"),
    ("frozen_baseline", "no"), ("plain_budget", 0), ("plain_budget", 1.5),
    ("sweep_dir", True), ("sweep_dir", 3),
])
def test_check_names_the_bad_parameter(name, value):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        evaluate.check({name: value})


def test_check_accepts_the_defaults_and_the_documented_alternatives():
    evaluate.check(dataclasses.asdict(evaluate.Config()))
    evaluate.check({"calibration_method": None})
    evaluate.check({"calibration_method": "temperature", "threshold_fallback": 0.3,
                    "sweep_dir": False})
    evaluate.check({"sweep_dir": "runs/sweeps/x"})


def test_the_runner_preflight_reaches_this_check():
    from mlclf_utils import stages

    with pytest.raises(ParameterError, match="calibration_method"):
        stages.check(evaluate.STAGE, {"calibration_method": "isotonic"})


@pytest.mark.parametrize("reader, name", [
    (evaluate.read_report, artifacts.REPORT),
    (evaluate.read_per_class, artifacts.PER_CLASS_TEST),
    (evaluate.read_thresholds, artifacts.THRESHOLDS),
    (evaluate.read_misclassifications, artifacts.MISCLASSIFICATIONS),
])
def test_a_reader_names_the_missing_file(tmp_path, reader, name):
    with pytest.raises(DataError, match=name) as caught:
        reader(tmp_path)
    assert str(artifacts.path(tmp_path, evaluate.STAGE, name)) in str(caught.value)
    assert "04_evaluate has not finished" in str(caught.value)


def test_readers_return_what_04_wrote(tmp_path):
    from mlclf_utils.evaluation import misclassifications, thresholds

    out = artifacts.path(tmp_path, evaluate.STAGE)
    out.mkdir(parents=True)
    artifacts.write_json(out / artifacts.REPORT, {"test_tuned": {"macro_f1": 0.5}})
    pd.DataFrame({"f1": [0.5, 0.25]}, index=pd.Index(["a", "b"], name="label")).to_csv(
        out / artifacts.PER_CLASS_TEST)
    tuned = thresholds.tune_thresholds(np.array([[1, 0], [0, 1], [1, 1]]),
                                       np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6]]), ["a", "b"],
                                       min_support=1)
    thresholds.save_thresholds(tuned, out / artifacts.THRESHOLDS)
    table = misclassifications.misclassification_table(
            ["x", "y"], ["s:1", "s:2"], np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.6], [0.2, 0.4]]),
        ["a", "b"], 0.5)
    misclassifications.save_misclassifications(table, out)

    assert evaluate.read_report(tmp_path) == {"test_tuned": {"macro_f1": 0.5}}
    assert evaluate.read_per_class(tmp_path)["f1"].to_dict() == {"a": 0.5, "b": 0.25}
    assert list(evaluate.read_thresholds(tmp_path)) == ["a", "b"]
    errors = evaluate.read_misclassifications(tmp_path)
    assert errors["false_positives"].map(list).tolist() == [["b"], []]
    assert errors["false_negatives"].map(list).tolist() == [[], ["b"]]


# --- run() on the tiny smoke run (01 and 02 real, 03 trained for a few steps) -------------------

@pytest.fixture(scope="module")
def trained_smoke_run(tmp_path_factory, smoke_csv, tiny_model_dir):
    """01 and 02 through their stage modules, then 03 for 8 steps of the tiny model."""
    from mlclf_utils.modeling import encoders, train
    from mlclf_utils.stages import preprocess, save_data

    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    preprocess.run(run_dir, preprocess.Config(
        source=str(smoke_csv), text_column="description", labels_column="tags", sample_size=None,
        min_label_count=5, model_name=encoders.TINY_MODEL, max_length=64))
    save_data.run(run_dir, save_data.Config())
    train.run_training(run_dir=str(run_dir), model_name=encoders.TINY_MODEL, max_steps=8,
                       eval_steps=4, batch_size=16, learning_rate=1e-3, threads=1,
                       progress=False, bf16=False, max_length=64)
    return run_dir


@pytest.mark.slow
def test_run_writes_the_report_that_read_report_returns(trained_smoke_run, tmp_path):
    run_dir = shutil.copytree(trained_smoke_run, tmp_path / "run")
    summary = evaluate.run(run_dir, evaluate.Config(plain_baseline=False, frozen_baseline=False,
                                                    sweep_dir=False))
    report = evaluate.read_report(run_dir)
    assert set(report) == {"test_at_0.5", "test_tuned", "validation_tuned", "comparison"}
    assert report["test_tuned"]["macro_f1"] == pytest.approx(summary["test_macro_f1"])
    assert list(report["comparison"]) == [evaluate.REFERENCE, evaluate.TFIDF,
                                          f"Δ vs {evaluate.TFIDF}", "better"]
    assert summary["models_compared"] == [evaluate.REFERENCE, evaluate.TFIDF]
    labels = list(evaluate.read_thresholds(run_dir))
    assert evaluate.read_per_class(run_dir).index.tolist() == labels
    assert len(evaluate.read_misclassifications(run_dir)) == report["test_tuned"]["n_texts"]
    figures = artifacts.path(run_dir, evaluate.STAGE, artifacts.FIGURES_DIR)
    assert {p.name for p in figures.glob("*.png")} >= {
        "reliability_raw.png", "f1_vs_threshold.png", "per_class_f1.png", "pr_curves.png",
        "confusion_counts.png", "reliability.png", "label_confusion.png"}
    assert (artifacts.path(run_dir, evaluate.STAGE, artifacts.BUNDLE_DIR) / artifacts.THRESHOLDS).is_file()
    # A run never overwrites another: a second run on the same directory is refused.
    with pytest.raises(Exception, match="already holds artifacts"):
        evaluate.run(run_dir, evaluate.Config(plain_baseline=False, sweep_dir=False))


@pytest.mark.slow
def test_run_compares_with_all_three_baselines_each_named_for_what_it_is(trained_smoke_run,
                                                                          tmp_path):
    """The frozen encoder (03's base model, here the tiny one) and the plain recipe on a
    budget: no sweep, so it trains here on a quarter of 03's 8 steps and says so."""
    from mlclf_utils.evaluation import comparison

    run_dir = shutil.copytree(trained_smoke_run, tmp_path / "run")
    summary = evaluate.run(run_dir, evaluate.Config(plain_budget=0.25, sweep_dir=False))
    plain = comparison.plain_name(0.25)
    assert plain == "plain BCE @ 0.5 (budget: 25% of 03's training)"
    assert summary["models_compared"] == [evaluate.REFERENCE, evaluate.TFIDF, comparison.FROZEN,
                                          plain]
    plain_model = artifacts.path(run_dir, evaluate.STAGE, artifacts.PLAIN_BCE_DIR, "model")
    recipe = artifacts.read_json(plain_model / artifacts.HYPERPARAMETERS, what="plain recipe")
    assert recipe["max_steps"] == 2 and recipe["pos_weight_strategy"] == "none"


# --- what 04's user sees of the texts cut at max_length ------------------------------------------

def test_04_says_the_cut_texts_as_one_line_per_split_not_a_warning(tmp_path, capsys):
    """The real tiny model, recorded as trained with max_length 16; a direct call to
    Classifier still warns (tests/code/serving/test_predict.py)."""
    import types
    import warnings

    from mlclf_utils.errors import TruncationWarning
    from mlclf_utils.modeling import encoders

    model_dir = tmp_path / "model"
    encoders.load_classifier(encoders.TINY_MODEL, ["a", "b"]).save_pretrained(model_dir)
    encoders.load_tokenizer(encoders.TINY_MODEL).save_pretrained(model_dir)
    artifacts.write_json(model_dir / artifacts.HYPERPARAMETERS, {"max_length": 16})
    long = " ".join(["filler"] * 40)
    inputs = types.SimpleNamespace(model_dir=model_dir, windows=None, splits={
        "validation": {"text": [long, "short"]}, "test": {"text": [long, long, "short"]}})
    capsys.readouterr()  # loading the tiny model says it has a new head
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probs = evaluate.predict_probabilities(inputs, evaluate.Config(), progress=False)
    assert not [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert {name: p.shape for name, p in probs.items()} == {"validation": (2, 2), "test": (3, 2)}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(";")[0] for line in lines] == [
        "validation: 1 of 2 texts were longer than 16 tokens",
        "test: 2 of 3 texts were longer than 16 tokens"]
    assert all(line.endswith("the same cut as in training (01 reported the share)")
               for line in lines)
