"""environment.yml serves conda and SageMaker Studio; no machine here can solve it, so this
test is what keeps it in step with pyproject.toml."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_environment_yml_holds_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) - {"-e ."} == wanted


def test_the_pins_that_matter():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps  # a looser spec pulls a 5.5 GB CUDA build
    assert "sagemaker>=2.257,<3" in deps  # v3 has no sagemaker.huggingface
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert any(line.startswith("torch==2.13.0") for line in lock)
    assert any(line.startswith("sagemaker==2.") for line in lock)
