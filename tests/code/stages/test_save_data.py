"""Stage 02's module: its Config (the notebook's defaults), run() after 01's, and channels.json."""

import dataclasses

import pytest

from mlclf_utils import artifacts
from mlclf_utils.data import dataset
from mlclf_utils.errors import DataError, MlclfError, ParameterError
from mlclf_utils.stages import preprocess, save_data


def test_config_defaults_are_the_notebooks_field_by_field():
    from mlclf_utils.runner import parameters

    notebook = next(nb for nb in parameters.stage_notebooks() if nb.stem == save_data.STAGE)
    specs = parameters.parameter_specs(notebook)
    fields = [f.name for f in dataclasses.fields(save_data.Config)]
    assert sorted(fields) == sorted(set(specs) - {"run_dir"})
    for name in fields:
        assert getattr(save_data.Config(), name) == specs[name].default, name


@pytest.mark.parametrize("value", ["bucket/prefix", "s3://", 3])
def test_a_bad_s3_uri_is_refused_by_config_and_check(value):
    with pytest.raises(ParameterError, match="s3_uri|s3://"):
        save_data.Config(s3_uri=value)
    with pytest.raises(ParameterError):
        save_data.check({"run_dir": None, "s3_uri": value})


def test_unknown_parameters_are_named():
    with pytest.raises(ParameterError, match="s3_url"):
        save_data.Config.from_parameters(s3_url="s3://b/p")


@pytest.fixture(scope="module")
def smoke_02(tmp_path_factory, smoke_csv, tiny_model_dir):
    """01 then 02, both through run(), on the smoke CSV."""
    from mlclf_utils.modeling import encoders

    run_dir = tmp_path_factory.mktemp("smoke-02") / "run"
    preprocess.run(run_dir, preprocess.Config(
        source=str(smoke_csv), text_column="description", labels_column="tags", sample_size=None,
        min_label_count=5, model_name=encoders.TINY_MODEL, max_length=64))
    return run_dir, save_data.run(run_dir, save_data.Config())


def test_run_saves_every_split_as_a_channel_and_names_them_in_channels_json(smoke_02):
    run_dir, summary = smoke_02
    table, label_map, config = preprocess.load_artifacts(run_dir)
    channels = save_data.read_channels(run_dir)
    assert channels == summary["channels"]
    assert channels == {s: str(save_data.split_dir(run_dir, s)) for s in artifacts.SPLITS}
    assert summary["labels"] == len(label_map)
    assert summary["rows"] == {s: int((table["split"] == s).sum()) for s in artifacts.SPLITS}
    for split in artifacts.SPLITS:
        loaded, loaded_map = dataset.load_split(channels[split])
        assert loaded.num_rows == summary["rows"][split] and loaded_map == label_map
        assert dataset.read_split_json(channels[split], artifacts.PREPROCESS_CONFIG) == config
        stats = dataset.read_split_json(channels[split], artifacts.CLASS_STATS)
        assert stats["rows"] == summary["rows"]
    shared = dataset.read_split_json(channels["train"], artifacts.PREPROCESS_CONFIG)
    assert {k: shared[k] for k in save_data.SHARED_SETTINGS} == preprocess.shared_settings(run_dir)


def test_run_never_overwrites_02(smoke_02):
    run_dir, _ = smoke_02
    with pytest.raises(MlclfError, match="already holds artifacts"):
        save_data.run(run_dir, save_data.Config())


def test_run_without_01_says_so_and_leaves_no_folder(tmp_path):
    with pytest.raises(MlclfError, match="01_preprocess"):
        save_data.run(tmp_path / "run", save_data.Config())
    assert not (tmp_path / "run" / save_data.STAGE).exists()


def test_split_dir_refuses_an_unknown_split(tmp_path):
    with pytest.raises(ParameterError, match="split"):
        save_data.split_dir(tmp_path, "dev")


def test_a_broken_channels_json_names_the_file(tmp_path):
    path = artifacts.path(tmp_path, save_data.STAGE, artifacts.CHANNELS)
    with pytest.raises(DataError, match="channels.json"):
        save_data.read_channels(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('["train"]')
    with pytest.raises(DataError, match="expected an object") as info:
        save_data.read_channels(tmp_path)
    assert info.value.file == str(path)
