"""Stage 03's module: its defaults are the notebook's and the trainer's, its check names the
parameter, and its readers name the missing file."""

import dataclasses

import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.modeling import hyperparameters
from mlclf_utils.runner import parameters
from mlclf_utils.stages import train

NOTEBOOK = next(p for p in parameters.stage_notebooks() if p.stem == train.STAGE)


def test_config_defaults_are_the_notebooks():
    specs = parameters.parameter_specs(NOTEBOOK)
    config = dataclasses.asdict(train.Config())
    assert set(specs) - {"run_dir"} == set(config)
    for name, value in config.items():
        assert specs[name].default == value, name
        assert type(specs[name].default) is type(value), name


def test_the_training_defaults_are_the_entry_points():
    """Written once: SageMaker and the CLI get the parser's defaults, and so does the notebook."""
    parser = hyperparameters.build_parser()
    for name, value in train.Config().hyperparameters().items():
        assert parser.get_default(name) == value, name
    assert tuple(train.Config().hyperparameters()) == hyperparameters.NOTEBOOK_HYPERPARAMETERS


def test_config_from_a_notebooks_globals_takes_only_its_own_names():
    config = train.Config.from_params({"run_dir": "runs/x", "epochs": 1, "teaching": False,
                                       "pd": object(), "__name__": "__main__"})
    assert (config.epochs, config.teaching, config.mode) == (1, False, "local")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 2


def test_notebook_defaults_pass_the_check():
    train.check(train.Config().as_dict())


@pytest.mark.parametrize("name, value, message", [
    ("epochs", 0, "must be > 0"),
    ("learning_rate", -1.0, "must be > 0"),
    ("pos_weight_strategy", "inverse", "choose one of"),
    ("nproc_per_node", 0, "must be a positive integer"),
    ("instance_count", True, "must be a positive integer"),
    ("teaching", "no", "must be True or False"),
    ("mode", "cloud", "choose one of"),
    ("freeze_layers", -1, "must be >= 0"),
])
def test_check_names_the_bad_parameter(name, value, message):
    with pytest.raises(ParameterError, match=rf"{name}.*{message}"):
        train.check({**train.Config().as_dict(), name: value})


def test_the_notebooks_freeze_layers_reaches_the_trainer(monkeypatch, tmp_path):
    """03's speed option (issue 14): a notebook value, not only a CLI flag, and it travels with
    the other hyperparameters to the local trainer (and so to torchrun and SageMaker alike)."""
    from mlclf_utils.modeling import train as trainer

    seen = {}
    monkeypatch.setattr(trainer, "run_training", lambda **kwargs: seen.update(kwargs) or {})
    train.fine_tune(tmp_path, train.Config.from_params({"freeze_layers": 3, "epochs": 1}))
    assert (seen["freeze_layers"], seen["epochs"], seen["run_dir"]) == (3, 1, str(tmp_path))
    assert train.Config().freeze_layers == 0  # the default trains every layer


def test_sagemaker_mode_outside_studio_needs_a_role_and_a_bucket(monkeypatch, tmp_path):
    monkeypatch.setattr("mlclf_utils.cloud.sagemaker_training.STUDIO_METADATA",
                        tmp_path / "absent.json")
    with pytest.raises(ParameterError, match="role"):
        train.check({"mode": "sagemaker"})
    # bringing back an earlier job needs no role, only the bucket
    with pytest.raises(ParameterError, match="default_bucket"):
        train.check({"mode": "sagemaker", "attach_job": "mlclf-train-1"})


def test_03s_files_are_named_by_artifacts(tmp_path):
    assert train.model_dir(tmp_path) == tmp_path / "03_train" / artifacts.MODEL_DIR
    assert train.metrics_dir(tmp_path) == tmp_path / "03_train" / artifacts.METRICS_DIR
    assert train.figures_dir(tmp_path) == tmp_path / "03_train" / artifacts.FIGURES_DIR


@pytest.mark.parametrize("reader, file", [
    (train.read_hyperparameters, artifacts.HYPERPARAMETERS),
    (train.read_training_metrics, artifacts.TRAINING_METRICS),
    (train.read_log_history, artifacts.LOG_HISTORY),
])
def test_a_reader_names_the_missing_file(tmp_path, reader, file):
    with pytest.raises(DataError, match=file) as caught:
        reader(tmp_path)
    assert "03_train" in str(caught.value)


def test_no_curves_without_a_log(tmp_path):
    """A SageMaker job not waited for has no log yet: no figure, no error."""
    assert train.plot_training_curves(tmp_path) is None


def test_the_readers_return_what_training_wrote(tmp_path):
    metrics = train.metrics_dir(tmp_path)
    metrics.mkdir(parents=True)
    artifacts.write_json(metrics / artifacts.LOG_HISTORY, [{"epoch": 1.0, "loss": 0.5}])
    artifacts.write_json(metrics / artifacts.TRAINING_METRICS, {"global_step": 3})
    assert train.read_log_history(tmp_path) == [{"epoch": 1.0, "loss": 0.5}]
    assert train.read_training_metrics(tmp_path) == {"global_step": 3}
