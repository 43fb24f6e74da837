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


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[name] = version
    return pins


def test_the_lock_holds_no_local_version_labels():
    """No public index serves a local version such as torch's +cpu: pinning one breaks every
    install but ours. `torch==2.13.0` still matches the CPU wheel of this machine's wheelhouse."""
    from packaging.version import Version

    local = {name: v for name, v in _lock_pins().items() if Version(v).local}
    assert not local, f"requirements.lock pins local versions {local}: run `make lock`"


def _fake_public_wheel(folder: Path, name: str, version: str) -> None:
    """What a public index serves for a pin: a wheel of that exact (non-local) version."""
    import zipfile

    stem = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as wheel:
        info = f"{stem}.dist-info"
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: mlclf-test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def test_the_lock_resolves_on_a_machine_with_only_the_public_index(tmp_path):
    """pip itself, offline, with none of this machine's pip settings (no local wheelhouse), against
    an index holding exactly the public releases the lock names. A pin that only a local
    wheelhouse can satisfy (say torch==2.13.0+cpu) fails here with "No matching distribution"."""
    import os
    import subprocess
    import sys

    from packaging.version import Version

    index = tmp_path / "public-index"
    index.mkdir()
    for name, version in _lock_pins().items():
        _fake_public_wheel(index, name, Version(version).public)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # ignore /etc/xdg/pip and every other pip.conf
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         "--no-index", "--find-links", str(index), "--disable-pip-version-check",
         "-r", str(ROOT / "requirements.lock")],
        capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch-2.13.0" in result.stdout


def test_make_install_leaves_pip_settings_to_the_user():
    """PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (PyTorch's CPU wheel index) must reach pip untouched."""
    import subprocess

    dry = subprocess.run(["make", "-n", "-B", "install", "VENV=/nonexistent-venv"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    pip_lines = [line for line in dry.splitlines() if " -m pip install" in line]
    assert pip_lines, dry
    for flag in ("--index-url", "-i ", "--extra-index-url", "--no-index", "--isolated", "PIP_"):
        assert all(flag not in line for line in pip_lines), pip_lines
    readme = (ROOT / "README.md").read_text()
    assert "PIP_EXTRA_INDEX_URL" in readme and "/whl/cpu" in readme
    env_yml = (ROOT / "environment.yml").read_text()
    assert "PIP_EXTRA_INDEX_URL" in env_yml and "+cpu" not in env_yml
