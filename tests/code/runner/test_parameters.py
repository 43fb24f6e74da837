"""The notebooks' parameters cells as the runner reads them: YAML values, types, config files."""

import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.runner import parameters

NOTEBOOKS = parameters.stage_notebooks()


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.5", 0.5), ("1e-4", 1e-4), ("-2.5E+3", -2500.0), ("null", None),
    ("none", "none"), ("true", True), ("[0.8, 0.1, 0.1]", [0.8, 0.1, 0.1]),
    ("{digits: true}", {"digits": True}), ("s3://bucket/key", "s3://bucket/key"),
])
def test_values_are_read_as_yaml_with_exponent_floats(text, value):
    parsed = parameters.parse_value(text)
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
    parsed = parameters.typed_value(name, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name, text, match", [
    ("epochs", "[1,", "epochs.*not valid YAML"),
    ("pos_weight_cap", "#", "pos_weight_cap.*reads as nothing"),
])
def test_unreadable_command_line_values_name_the_parameter(name, text, match):
    with pytest.raises(ParameterError, match=match):
        parameters.typed_value(name, text)


def test_a_yaml_value_is_never_evaluated_as_python():
    assert parameters.parse_value("__import__('os').getcwd()") == "__import__('os').getcwd()"
    with pytest.raises(Exception):
        parameters.parse_value("!!python/object/apply:os.getcwd []")


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        parameters.load_params_file(tmp_path / "absent.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="list.yaml.*mapping"):
        parameters.load_params_file(listed)
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    with pytest.raises(ParameterError, match="broken.yaml.*not valid YAML"):
        parameters.load_params_file(broken)
    good = tmp_path / "good.yaml"
    good.write_text("learning_rate: 2e-5\nepochs: 2\n")
    assert parameters.load_params_file(good) == {"learning_rate": 2e-5, "epochs": 2}


def test_parameters_with_more_than_one_form_accept_each():
    per_notebook = parameters.check_parameters(
        {"debtags_label_set": ["use::editing", "interface::web"], "bf16": False,
         "threshold_fallback": 0.3, "pos_weight_cap": None}, NOTEBOOKS)
    assert per_notebook[NOTEBOOKS[0]]["debtags_label_set"] == ["use::editing", "interface::web"]


def test_every_parameter_has_a_literal_default_and_known_types():
    for notebook in NOTEBOOKS:
        specs = parameters.parameter_specs(notebook)
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
    spec = parameters.ParameterSpec("x", None, types, "nb.ipynb")
    assert all(spec.accepts(v) for v in good)
    assert not any(spec.accepts(v) for v in bad)
