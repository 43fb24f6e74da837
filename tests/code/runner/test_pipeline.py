"""The batch runner's checks: everything here fails before a single notebook cell runs."""

from pathlib import Path

import pytest

from mlclf_utils.runner import pipeline
from mlclf_utils.errors import MlclfError, ParameterError

NOTEBOOKS = pipeline.stage_notebooks()


@pytest.fixture(autouse=True)
def no_notebook_may_run(monkeypatch):
    """Every test here expects a failure before any stage; a regression must not start a run."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed; the checks should have failed first")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


def _nothing_ran(runs_root: Path) -> bool:
    return not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.5", 0.5), ("1e-4", 1e-4), ("-2.5E+3", -2500.0), ("null", None),
    ("none", "none"), ("true", True), ("[0.8, 0.1, 0.1]", [0.8, 0.1, 0.1]),
    ("{digits: true}", {"digits": True}), ("s3://bucket/key", "s3://bucket/key"),
])
def test_values_are_read_as_yaml_with_exponent_floats(text, value):
    parsed = pipeline.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name, text, value", [
    ("transformers_version", "4.40", "4.40"),     # YAML alone would say 4.4
    ("probe_label", "off", "off"),                 # ... and False
    ("probe_label", "#", "#"),                     # ... and None
    ("probe_label", "null", None),
    ("pos_weight_cap", "null", None),
    ("pos_weight_cap", "20", 20),
    ("learning_rate", "5e-5", 5e-5),
    ("threshold_fallback", "0.4", 0.4),
    ("threshold_fallback", "global", "global"),
    ("bf16", "false", False),
    ("bf16", "auto", "auto"),
    ("source", "data/tickets: 2024.csv", "data/tickets: 2024.csv"),
])
def test_command_line_values_are_read_against_the_parameter_types(name, text, value):
    parsed = pipeline.typed_value(name, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name, text, match", [
    ("epochs", "[1,", "epochs.*not valid YAML"),
    ("pos_weight_cap", "#", "pos_weight_cap.*reads as nothing"),
])
def test_unreadable_command_line_values_name_the_parameter(name, text, match):
    with pytest.raises(ParameterError, match=match):
        pipeline.typed_value(name, text)


def test_a_yaml_value_is_never_evaluated_as_python():
    assert pipeline.parse_value("__import__('os').getcwd()") == "__import__('os').getcwd()"
    with pytest.raises(Exception):
        pipeline.parse_value("!!python/object/apply:os.getcwd []")


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        pipeline.load_params_file(tmp_path / "absent.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="list.yaml.*mapping"):
        pipeline.load_params_file(listed)
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    with pytest.raises(ParameterError, match="broken.yaml.*not valid YAML"):
        pipeline.load_params_file(broken)
    good = tmp_path / "good.yaml"
    good.write_text("learning_rate: 2e-5\nepochs: 2\n")
    assert pipeline.load_params_file(good) == {"learning_rate": 2e-5, "epochs": 2}


def test_parameters_with_more_than_one_form_accept_each():
    per_notebook = pipeline.check_parameters(
        {"debtags_label_set": ["use::editing", "interface::web"], "bf16": False,
         "threshold_fallback": 0.3, "pos_weight_cap": None}, NOTEBOOKS)
    assert per_notebook[NOTEBOOKS[0]]["debtags_label_set"] == ["use::editing", "interface::web"]


def test_every_parameter_has_a_literal_default_and_known_types():
    for notebook in NOTEBOOKS:
        specs = pipeline.parameter_specs(notebook)
        assert "run_dir" in specs and specs["run_dir"].types == ("str", "None")
        for spec in specs.values():
            assert spec.default is None or spec.accepts(spec.default), spec


@pytest.mark.parametrize("types, good, bad", [
    (("int",), [3, -1], [True, 3.0, "3", None]),
    (("float",), [0.5, 2], [True, "0.5", None]),
    (("float", "None"), [0.5, 1, None], ["1", False]),
    (("str", "float"), ["global", 0.3, 1], [None, [0.3]]),
    (("bool",), [True, False], [1, "true"]),
    (("list",), [[1, 2], (1, 2)], ["a,b", {"a": 1}]),
    (("dict",), [{}, {"a": 1}], [[], "a=1"]),
    ((), [None, 1, "x", [1]], []),
])
def test_type_rules(types, good, bad):
    spec = pipeline.ParameterSpec("x", None, types, "nb.ipynb")
    assert all(spec.accepts(v) for v in good)
    assert not any(spec.accepts(v) for v in bad)


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


def _fake_run(root: Path, stages: dict[str, str], parameters: dict | None = None) -> Path:
    from mlclf_utils.artifacts import write_json

    run = root / "source"
    run.mkdir(parents=True)
    for stage, status in stages.items():
        (run / stage).mkdir()
        (run / stage / "artifact.txt").write_text(stage)
        (run / f"{stage}.ipynb").write_text("{}")
    write_json(run / "manifest.json", {"parameters": parameters or {}, "stages": [
        {"stage": s, "status": st} for s, st in stages.items()]})
    return run


def test_resume_starts_at_the_first_unfinished_stage(tmp_path):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok", "03_train": "failed"})
    assert pipeline.resume_point(run, NOTEBOOKS) == "03_train"
    done = _fake_run(tmp_path / "b", {s.stem: "ok" for s in NOTEBOOKS})
    with pytest.raises(ParameterError, match="every stage finished"):
        pipeline.resume_point(done, NOTEBOOKS)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ParameterError, match="--from"):
        pipeline.resume_point(bare, NOTEBOOKS)


def test_a_resume_from_an_unfinished_stage_creates_nothing(runs_root, tmp_path):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "failed"})
    with pytest.raises(MlclfError, match="cannot take 02_save_data.*ended failed"):
        pipeline.run_pipeline({}, resume=run, first="03", progress=False)
    assert _nothing_ran(runs_root)


def test_run_dir_must_be_new_and_outside_every_run(runs_root, tmp_path):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for run_dir, match in [(tmp_path / "full", "already holds files"),
                           (run / "inner", "inside the run"),
                           (run / "02_save_data" / "deeper", "inside the run")]:
        with pytest.raises(ParameterError, match=f"--run-dir.*{match}"):
            pipeline.run_pipeline({}, resume=run, first="03", last="03", run_dir=run_dir,
                                  progress=False)
    assert not (run / "inner").exists() and _nothing_ran(runs_root)


def test_reused_stages_are_linked_not_moved_and_failed_ones_refused(tmp_path):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "failed"})
    new = tmp_path / "new"
    new.mkdir()
    entries = pipeline.reuse_stages(run, new, ["01_preprocess"])
    assert entries[0]["status"] == "reused" and entries[0]["from_run"] == "source"
    assert (new / "01_preprocess" / "artifact.txt").read_text() == "01_preprocess"
    assert (new / "01_preprocess.ipynb").exists()
    assert (run / "01_preprocess" / "artifact.txt").exists()  # the source keeps its files
    with pytest.raises(MlclfError, match="02_save_data.*ended failed"):
        pipeline.reuse_stages(run, tmp_path / "other", ["02_save_data"])


@pytest.mark.parametrize("params", [
    {"sample_size": 100},
    {"model_name": "mlclf/tiny-random-distilbert"},  # 01 tokenized with the default model
    {"max_length": 64},                              # ... and cut the texts at 128 tokens
])
def test_a_value_a_reused_stage_read_cannot_change_on_resume(runs_root, tmp_path, params):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    name = next(iter(params))
    with pytest.raises(ParameterError, match=f"{name}.*01_preprocess, which is taken from"):
        pipeline.run_pipeline(params, resume=run, first="03", progress=False)
    assert _nothing_ran(runs_root)


def test_restating_a_reused_value_or_changing_a_training_seed_is_fine(tmp_path):
    run = _fake_run(tmp_path, {"01_preprocess": "ok", "02_save_data": "ok"})
    plan = pipeline.plan_run({"sample_size": 4000, "max_length": 128, "seed": 7}, resume=run,
                             first="03", last="04")
    assert [nb.stem for nb in plan.earlier] == ["01_preprocess", "02_save_data"]
    assert [nb.stem for nb in plan.selected] == ["03_train", "04_evaluate"]
    assert plan.per_notebook[plan.selected[0]]["seed"] == 7
