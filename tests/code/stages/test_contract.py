"""The stage-module contract: every stage answers to the runner in the same few names.

The runner drives each stage through ``STAGE``, ``check(params)``, ``Config`` and
``run(run_dir, config)`` and knows nothing else about it. If the runner came to name a stage's
parameter again (``worst_n``, ``n_steps``...), a new parameter of that stage would need a change
in the runner too; the source tests below catch that, and name the file and the parameter.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from mlclf_utils import artifacts, stages
from mlclf_utils.runner import parameters, pipeline, sweep_launch

STAGE_NAMES = list(stages.MODULES)
RUNNER_DIR = Path(pipeline.__file__).resolve().parent
# The sweep sets a few of 03's and 04's parameters for every combination on purpose (its
# defaults); those are the only stage parameters a runner module may name.
SWEEP_SETS = set(sweep_launch.SWEEP_DEFAULTS) | set(sweep_launch.TEACHING_OFF)


def _notebook(stage: str) -> Path:
    return next(nb for nb in parameters.stage_notebooks() if nb.stem == stage)


def _parameter_names(*stage_names: str) -> set[str]:
    names = set().union(*(parameters.parameter_specs(_notebook(s)) for s in stage_names))
    return names - parameters.RUNNER_PARAMETERS


def _string_constants(source: str) -> set[str]:
    """Every string literal of the code, docstrings aside (prose may mention a parameter)."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings}


def _plain(value):
    """A frozen Config holds tuples where the notebook writes lists; the values are the same."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _module_or_skip(stage: str, name: str):
    module = stages.module(stage)
    if not hasattr(module, name):
        pytest.skip(f"{module.__name__} has no {name} yet (issue 15, item 2: each stage module "
                    f"gets Config and run(run_dir, config))")
    return getattr(module, name)


def test_every_stage_has_a_module_and_every_module_a_stage():
    assert STAGE_NAMES == list(artifacts.STAGES)
    assert [nb.stem for nb in parameters.stage_notebooks()] == STAGE_NAMES


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_module_names_its_folder_and_checks_its_own_parameters(stage):
    module = stages.module(stage)
    assert module.STAGE == stage
    assert callable(module.check)
    assert list(inspect.signature(module.check).parameters) == ["params"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_accepts_its_own_notebook_defaults(stage):
    """What the runner's preflight passes for a run with no overrides must pass."""
    notebook = _notebook(stage)
    stages.check(stage, parameters.effective_parameters(notebook, {}))


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_has_a_frozen_config_whose_defaults_are_the_notebooks(stage):
    config = _module_or_skip(stage, "Config")
    assert dataclasses.is_dataclass(config), f"{stage}: Config must be a dataclass"
    assert config.__dataclass_params__.frozen, f"{stage}: Config must be frozen"
    defaults = config()
    specs = parameters.parameter_specs(_notebook(stage))
    shared = [f.name for f in dataclasses.fields(config) if f.name in specs]
    assert shared, f"{stage}: Config shares no field with the notebook's parameters cell"
    for name in shared:
        assert _plain(getattr(defaults, name)) == _plain(specs[name].default), (
            f"{stage}: Config().{name} is {getattr(defaults, name)!r}, the notebook's default "
            f"is {specs[name].default!r}")


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_runs_headless_from_a_run_directory_and_a_config(stage):
    run = _module_or_skip(stage, "run")
    assert callable(run)
    names = list(inspect.signature(run).parameters)
    assert names[:2] == ["run_dir", "config"], f"{stage}: run's signature is {names}"


def test_preflight_names_no_stage_parameter():
    every = _parameter_names(*STAGE_NAMES)
    named = _string_constants(inspect.getsource(pipeline.preflight).strip()) & every
    assert not named, f"pipeline.preflight names stage parameters {sorted(named)}"


@pytest.mark.parametrize("path", sorted(RUNNER_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_runner_module_names_a_parameter_of_04_or_05(path):
    forbidden = _parameter_names(artifacts.EVALUATE, artifacts.EXPLAIN) - SWEEP_SETS
    assert {"min_support", "n_steps", "worst_n"} <= forbidden  # the names the runner once held
    named = _string_constants(path.read_text(encoding="utf-8")) & forbidden
    assert not named, (f"mlclf_utils/runner/{path.name} names {sorted(named)}: a stage's "
                       "parameters belong to its module in mlclf_utils/stages/")


def test_the_string_scan_sees_a_named_parameter():
    """The scan above must catch the form the runner used to have, or it proves nothing."""
    caught = _string_constants('"""n_steps in prose is fine."""\nPOSITIVE = ("n_steps", "x")\n')
    assert "n_steps" in caught and "n_steps in prose is fine." not in caught
