"""The speed options of the training entry point: their defaults, their checks, their round trip."""

import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import hyperparameters


def test_defaults_are_the_fused_adamw_without_compilation():
    defaults = hyperparameters.build_parser().parse_args([])
    assert (defaults.adamw, defaults.torch_compile) == ("fused", False)
    for name in ("adamw", "torch_compile", "freeze_embeddings"):
        assert name in hyperparameters.RECIPE_KEYS  # 04's and 05's retrains keep them


def test_the_options_arrive_as_sagemaker_strings():
    args = hyperparameters.check_hyperparameters(
        {"adamw": "foreach", "torch_compile": "False", "freeze_embeddings": "true"})
    assert (args.adamw, args.torch_compile, args.freeze_embeddings) == ("foreach", False, True)
    argv = hyperparameters.to_argv({"adamw": "for_loop", "torch_compile": False})
    assert argv == ["--adamw", "for_loop", "--torch_compile", "False"]


def test_an_unknown_adamw_is_refused_by_name():
    with pytest.raises(ParameterError, match="adamw"):
        hyperparameters.check_hyperparameters({"adamw": "lion"})


def test_torch_compile_without_a_compiler_fails_before_any_work(monkeypatch):
    monkeypatch.setattr(hyperparameters.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ParameterError, match=r"torch_compile=True.*C\+\+ compiler"):
        hyperparameters.check_hyperparameters({"torch_compile": True})
    hyperparameters.check_hyperparameters({"torch_compile": False})  # off: nothing to check


def test_torch_compile_is_accepted_where_a_compiler_exists(monkeypatch):
    monkeypatch.setattr(hyperparameters.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert hyperparameters.check_hyperparameters({"torch_compile": "true"}).torch_compile is True


def test_freeze_layers_parses_from_the_cli_and_from_sagemaker_strings():
    parser = hyperparameters.build_parser()
    assert parser.parse_args([]).freeze_layers == 0
    assert parser.parse_args(["--freeze_layers", "3"]).freeze_layers == 3
    assert hyperparameters.check_hyperparameters({"freeze_layers": "2"}).freeze_layers == 2
    assert "freeze_layers" in hyperparameters.RECIPE_KEYS  # 04's and 05's retrains keep it
    assert hyperparameters.to_argv({"freeze_layers": 3}) == ["--freeze_layers", "3"]


@pytest.mark.parametrize("bad, reason", [(-1, "must be >= 0"), ("two", "not a whole number")])
def test_a_bad_freeze_layers_is_refused_by_name(bad, reason):
    with pytest.raises(ParameterError, match=f"freeze_layers={bad!r}: .*{reason}"):
        hyperparameters.check_hyperparameters({"freeze_layers": bad})


def test_a_channel_without_01s_record_gets_01s_defaults(tmp_path):
    # A train channel made by hand has no preprocess_config.json; 03 then cuts where 01 would
    # have, not at a second number that can fall out of step with 01's.
    from mlclf_utils.stages.preprocess import PreprocessConfig

    args = hyperparameters.build_parser().parse_args([])
    settled = hyperparameters.settle_shared(args, tmp_path)
    assert (settled.model_name, settled.max_length) == (
        PreprocessConfig.model_name, PreprocessConfig.max_length)
