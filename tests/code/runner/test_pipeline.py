"""The batch runner's checks: everything here fails before a single notebook cell runs."""

from pathlib import Path

import pytest

from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner import parameters, pipeline

NOTEBOOKS = parameters.stage_notebooks()
pytestmark = pytest.mark.usefixtures("no_notebook_may_run")


def _nothing_ran(runs_root: Path) -> bool:
    return not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.parametrize("params, match", [
    ({"max_lenght": 64}, r"max_lenght.*no stage notebook takes"),
    ({"epochs": "three"}, r"epochs.*must be int.*03_train.ipynb.*not str"),
    ({"epochs": 2.5}, r"epochs.*must be int"),
    ({"plain_baseline": "yes"}, r"plain_baseline.*must be bool"),
    ({"sample_size": 0.5}, r"sample_size.*must be int or None"),
    ({"split_proportions": "0.8,0.1,0.1"}, r"split_proportions.*must be list"),
    ({"run_dir": "/tmp/x"}, r"run_dir.*set by the runner"),
    ({"pos_weight_cap": float("inf")}, r"pos_weight_cap=inf: infinity is not allowed"),
    ({"learning_rate": float("nan")}, r"learning_rate=nan: NaN is not allowed"),
])
def test_wrong_names_and_types_fail_before_anything_runs(runs_root, params, match):
    with pytest.raises(ParameterError, match=match):
        pipeline.run_pipeline(params, progress=False)
    assert _nothing_ran(runs_root)


@pytest.mark.parametrize("params, match", [
    ({"pos_weight_strategy": "log"}, r"pos_weight_strategy.*choose one of"),
    ({"learning_rate": -1.0}, r"learning_rate.*must be > 0"),
    ({"mode": "cloud"}, r"mode.*choose one of"),
    ({"threshold_fallback": "median"}, r"threshold_fallback.*global"),
    ({"threshold_fallback": 1.5}, r"threshold_fallback.*\[0, 1\]"),
    ({"label_case": "title"}, r"label_case"),
    ({"s3_uri": "bucket/key"}, r"s3"),
    ({"worst_n": 0}, r"worst_n.*positive"),
    ({"n_steps": -5}, r"n_steps.*positive"),
    ({"mode": "sagemaker"}, r"role.*Only in SageMaker Studio do they default"),
])
def test_each_stage_checks_its_own_values_before_the_first_stage_starts(runs_root, params, match):
    """A bad value for 04 must not wait for 01-03 to finish before it is reported."""
    with pytest.raises(ParameterError, match=match):
        pipeline.run_pipeline(params, progress=False)
    assert _nothing_ran(runs_root)


@pytest.mark.parametrize("text, stage", [
    ("03", "03_train"), ("3", "03_train"), ("train", "03_train"), ("03_train", "03_train"),
    ("01", "01_preprocess"), ("explain", "05_explain"),
])
def test_stage_names(text, stage):
    assert pipeline.stage_name(text) == stage


def test_stage_ranges():
    names = lambda nbs: [nb.stem for nb in nbs]  # noqa: E731
    assert names(pipeline.select_stages(NOTEBOOKS, None, "02")) == ["01_preprocess", "02_save_data"]
    assert names(pipeline.select_stages(NOTEBOOKS, "03", "04")) == ["03_train", "04_evaluate"]
    assert names(pipeline.select_stages(NOTEBOOKS, "05", None)) == ["05_explain"]
    with pytest.raises(ParameterError, match="--to.*comes before"):
        pipeline.select_stages(NOTEBOOKS, "04", "02")
    with pytest.raises(ParameterError, match="--from.*choose one of"):
        pipeline.select_stages(NOTEBOOKS, "06", None)
    with pytest.raises(ParameterError, match="--to.*no such notebook"):
        pipeline.select_stages(NOTEBOOKS[:2], None, "04")


def test_a_later_start_needs_a_run_to_resume(runs_root):
    with pytest.raises(ParameterError, match="--from.*needs --resume"):
        pipeline.run_pipeline({}, first="03", progress=False)
    with pytest.raises(ParameterError, match="--resume.*no such run"):
        pipeline.run_pipeline({}, resume=runs_root / "nope", progress=False)
    assert _nothing_ran(runs_root)


def test_a_resume_from_an_unfinished_stage_creates_nothing(fake_run, runs_root, tmp_path):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "failed"})
    with pytest.raises(MlclfError, match="cannot take 02_save_data.*ended failed"):
        pipeline.run_pipeline({}, resume=run, first="03", progress=False)
    assert _nothing_ran(runs_root)


def test_run_dir_must_be_new_and_outside_every_run(fake_run, runs_root, tmp_path):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for run_dir, match in [(tmp_path / "full", "already holds files"),
                           (run / "inner", "inside the run"),
                           (run / "02_save_data" / "deeper", "inside the run")]:
        with pytest.raises(ParameterError, match=f"--run-dir.*{match}"):
            pipeline.run_pipeline({}, resume=run, first="03", last="03", run_dir=run_dir,
                                  progress=False)
    assert not (run / "inner").exists() and _nothing_ran(runs_root)


@pytest.mark.parametrize("params", [
    {"sample_size": 100},
    {"model_name": "mlclf/tiny-random-distilbert"},  # 01 tokenized with the default model
    {"max_length": 64},                              # ... and cut the texts at 256 tokens
])
def test_a_value_a_reused_stage_read_cannot_change_on_resume(fake_run, runs_root, tmp_path, params):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    name = next(iter(params))
    with pytest.raises(ParameterError, match=f"{name}.*01_preprocess, which is taken from"):
        pipeline.run_pipeline(params, resume=run, first="03", progress=False)
    assert _nothing_ran(runs_root)


def test_restating_a_reused_value_or_changing_a_training_seed_is_fine(fake_run, tmp_path):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    plan = pipeline.plan_run({"sample_size": 4000, "max_length": 256, "seed": 7}, resume=run,
                             first="03", last="04")
    assert [nb.stem for nb in plan.earlier] == ["01_preprocess", "02_save_data"]
    assert [nb.stem for nb in plan.selected] == ["03_train", "04_evaluate"]
    assert plan.per_notebook[plan.selected[0]]["seed"] == 7


# --- resuming from a run with a stage stepped through by hand (session 7, H2 item 5) ----------

def _fork_with_03_by_hand(fake_run, tmp_path):
    """A fork made by hand (01 and 02 reused from a run made by hand: no values recorded), with
    03 stepped through by hand there on a non-default learning rate: no entry at all."""
    from mlclf_utils import artifacts

    run = fake_run(tmp_path, {"01_preprocess": "reused", "02_save_data": "reused"})
    manifest = artifacts.read_json(run / artifacts.MANIFEST)
    for entry in manifest["stages"]:
        entry["parameters"] = None  # what fork_run copies from a source made by hand
    artifacts.write_json(run / artifacts.MANIFEST, {**manifest, "by_hand": True})
    (run / "03_train" / "model").mkdir(parents=True)
    (run / "03_train" / "model" / "hyperparameters.json").write_text('{"learning_rate": 5e-4}')
    return run


@pytest.mark.parametrize("value", [5e-4, 2e-4])  # what 03 used, and the default it did not use
def test_a_value_for_a_stage_stepped_through_by_hand_is_not_checked_against_the_defaults(
        fake_run, runs_root, tmp_path, value):
    run = _fork_with_03_by_hand(fake_run, tmp_path)
    assert parameters.parameter_specs(parameters.stage_notebooks()[2])["learning_rate"].default == 2e-4
    with pytest.raises(ParameterError, match=r"learning_rate=.*cannot be checked: 03_train, "
                                             r"taken from .*, was stepped through by hand"):
        pipeline.plan_run({"learning_rate": value}, resume=run, first="04")
    with pytest.raises(ParameterError, match=r"max_length=64: cannot be checked: 01_preprocess"):
        pipeline.plan_run({"max_length": 64}, resume=run, first="04")
    plan = pipeline.plan_run({"n_steps": 8}, resume=run, first="04")  # 04's and 05's own: fine
    assert [nb.stem for nb in plan.earlier] == ["01_preprocess", "02_save_data", "03_train"]


def test_04s_batch_size_is_its_own_not_03s(fake_run, tmp_path):
    run = fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok", "03_train": "ok"})
    plan = pipeline.plan_run({"batch_size": 128}, resume=run, first="04", last="04")
    assert plan.per_notebook[plan.selected[0]]["batch_size"] == 128
    with pytest.raises(ParameterError, match="learning_rate.*03_train, which is taken from"):
        pipeline.plan_run({"learning_rate": 1e-3}, resume=run, first="04", last="04")
