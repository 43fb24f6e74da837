"""04's comparison: its parameters' checks, the names that say where a baseline came from, the
reuse of a sweep's plain-recipe combination only when it is exactly the plain recipe on the same
data, and the table's columns with the frozen encoder (the real packaged model)."""

from types import SimpleNamespace

import numpy as np
import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import ParameterError
from mlclf_utils.evaluation import comparison, metrics
from mlclf_utils.modeling import encoders
from mlclf_utils.runner import sweep
from mlclf_utils.runner.runs import STATUS_OK

LABELS = ["audio", "video", "network"]
RECIPE = {"model_name": encoders.DEFAULT_MODEL, "epochs": 3.0, "max_steps": -1,
          "pos_weight_strategy": "sqrt", "pos_weight_floor": 0.5, "learning_rate": 1e-4,
          "seed": 42}


@pytest.mark.parametrize("name, value", [
    ("plain_baseline", "yes"), ("frozen_baseline", 1), ("plain_budget", 0.0),
    ("plain_budget", 2), ("sweep_dir", True), ("sweep_dir", 3)])
def test_check_names_the_bad_parameter(name, value):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        comparison.check({name: value})


def test_check_accepts_the_documented_values():
    comparison.check({"plain_baseline": False, "frozen_baseline": True, "plain_budget": 1,
                      "sweep_dir": None})
    comparison.check({"plain_budget": 0.1, "sweep_dir": False})


def test_the_plain_column_says_where_its_model_came_from():
    assert comparison.plain_name() == comparison.PLAIN
    assert comparison.plain_name(0.25) == f"{comparison.PLAIN} (budget: 25% of 03's training)"
    assert comparison.plain_name(0.25, sweep="s1/pos_weight_strategy=none") == (
        f"{comparison.PLAIN} (from sweep s1/pos_weight_strategy=none)")


# --- a run directory and a sweep on disk, with the files the reuse reads --------------------

def fake_run(root, data: bytes = b"the same splits"):
    """A run whose 02 splits hash to a fingerprint (only their bytes count) and whose 03 model
    folder holds the recipe."""
    for split in artifacts.SPLITS:
        folder = artifacts.path(root, artifacts.SAVE_DATA, artifacts.DATASET_DIR, split)
        folder.mkdir(parents=True)
        (folder / "data-00000-of-00001.arrow").write_bytes(data + split.encode())
    return root


def write_recipe(run_dir, hyperparameters: dict) -> None:
    model = artifacts.path(run_dir, artifacts.TRAIN, artifacts.MODEL_DIR)
    model.mkdir(parents=True)
    artifacts.write_json(model / artifacts.HYPERPARAMETERS, hyperparameters)


def fake_sweep(root, run_dir, combos: dict, *, data_of=None):
    """``combos``: name -> (recipe, status); each finished one gets a 04 report."""
    sweep_dir = root / "sweep-1"
    sweep_dir.mkdir()
    entries = []
    for name, (recipe, status) in combos.items():
        write_recipe(sweep_dir / name, recipe)
        if status == STATUS_OK:
            report = artifacts.path(sweep_dir / name, artifacts.EVALUATE, artifacts.REPORT)
            report.parent.mkdir(parents=True)
            artifacts.write_json(report, {"test_at_0.5": {"macro_f1": 0.3, "combo": name}})
        entries.append({"name": name, "values": {}, "status": status})
    artifacts.write_json(sweep_dir / sweep.SWEEP_FILE, {
        "data_fingerprint": sweep.data_fingerprint(data_of or run_dir),
        "combinations": entries, "best": {"name": next(iter(combos))}})
    (sweep_dir / sweep.COMPARISON_FILE).write_text("combination\n")
    return sweep_dir


def reuse(run_dir, sweep_dir):
    inputs = SimpleNamespace(run_dir=run_dir)
    config = SimpleNamespace(sweep_dir=str(sweep_dir))
    return comparison.sweep_plain_report(inputs, config, RECIPE)


def test_a_sweep_combination_with_exactly_the_plain_recipe_is_reused(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    plain = {**RECIPE, "pos_weight_strategy": "none", "run_dir": "elsewhere"}
    sweep_dir = fake_sweep(tmp_path, run_dir, {
        "pos_weight_strategy=sqrt": (RECIPE, STATUS_OK),
        "pos_weight_strategy=none": (plain, STATUS_OK)})
    found = reuse(run_dir, sweep_dir)
    assert found is not None
    name, report = found
    assert name == "sweep-1/pos_weight_strategy=none"
    assert report["test_at_0.5"]["combo"] == "pos_weight_strategy=none"


@pytest.mark.parametrize("why", ["other recipe", "failed", "other data", "no sweep"])
def test_a_sweep_combination_that_is_not_the_plain_recipe_here_is_not_reused(tmp_path, why):
    run_dir = fake_run(tmp_path / "run")
    plain = {**RECIPE, "pos_weight_strategy": "none"}
    if why == "other recipe":
        plain["epochs"] = 1.0  # the plain loss, but not 03's training
    status = "failed" if why == "failed" else STATUS_OK
    other = fake_run(tmp_path / "other", b"other splits") if why == "other data" else None
    sweep_dir = fake_sweep(tmp_path, run_dir, {"pos_weight_strategy=none": (plain, status)},
                           data_of=other)
    if why == "no sweep":
        assert comparison.sweep_plain_report(SimpleNamespace(run_dir=run_dir),
                                             SimpleNamespace(sweep_dir=False), RECIPE) is None
    else:
        assert reuse(run_dir, sweep_dir) is None


# --- the whole comparison on a few texts, the frozen encoder being the real packaged model ----

TEXTS = {
    "audio": "sound mixer for music with speakers support",
    "video": "movie player with subtitles and a camera",
    "network": "socket proxy for the router",
}


def tiny_inputs(tmp_path):
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    splits, y = {}, {}
    for split, n in (("train", 24), ("validation", 12), ("test", 12)):
        targets = np.eye(3, dtype=np.int8)[np.arange(n) % 3]
        texts = [f"{TEXTS[LABELS[int(t.argmax())]]} {rng.integers(1000)}" for t in targets]
        splits[split] = {"text": texts, "input_ids": tokenizer(texts)["input_ids"]}
        y[split] = targets
    run_dir = fake_run(tmp_path / "run")
    write_recipe(run_dir, RECIPE)
    return SimpleNamespace(run_dir=run_dir, out_dir=tmp_path / "out", splits=splits, y=y,
                           labels=LABELS)


def test_the_table_puts_the_model_first_then_each_baseline_with_its_difference(tmp_path):
    inputs = tiny_inputs(tmp_path)
    config = SimpleNamespace(min_support=1, threshold_fallback="global", batch_size=8,
                             frozen_baseline=True, plain_baseline=False, plain_budget=0.25,
                             sweep_dir=False)
    reference = metrics.multilabel_report(inputs.y["test"], inputs.y["test"] * 0.9, LABELS,
                                          0.5)
    table = comparison.compare_with_baselines(inputs, config, {"test_tuned": reference},
                                              progress=False)
    assert list(table.columns) == [comparison.REFERENCE, comparison.TFIDF, comparison.FROZEN,
                                   f"Δ vs {comparison.TFIDF}", f"Δ vs {comparison.FROZEN}",
                                   "better"]
    # Three words that name each label: the frozen encoder separates them on test.
    assert table.loc["macro_roc_auc", comparison.FROZEN] > 0.9
    np.testing.assert_allclose(table[f"Δ vs {comparison.FROZEN}"],
                               table[comparison.REFERENCE] - table[comparison.FROZEN])
