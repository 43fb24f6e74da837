"""`make notebooks` runs papermill as the runner does: with the runner's kernel config, so the
console shows no kernel's "running over TCP without encryption" warning, and still every error."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlclf_utils.runner import execute

ROOT = Path(__file__).resolve().parents[2]
WARNING = "without encryption"


def notebooks_recipe() -> str:
    """The shell lines `make notebooks` runs, expanded by make itself (-n: nothing runs; -o:
    demo-data counts as made)."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    return subprocess.run(["make", "-n", "-o", "demo-data", "notebooks"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def papermill_code() -> str:
    """The Python code the recipe runs for each notebook (its ``-c`` argument)."""
    found = re.findall(r" -c '([^']*)' \"\$nb\"", notebooks_recipe())
    assert len(found) == 1, notebooks_recipe()
    return found[0]


def test_make_notebooks_passes_the_runners_kernel_config_to_papermill():
    recipe = notebooks_recipe()
    assert "-m papermill" not in recipe  # papermill's command line cannot take the config
    code = papermill_code()
    assert "from mlclf_utils.runner.execute import kernel_config" in code
    assert "config=kernel_config()" in code and "progress_bar=False" in code
    assert 'cwd="notebooks"' in code and "sys.argv[1], sys.argv[1]" in code  # in place


def tiny_notebook(path: Path, *cells: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells],
                                        metadata={"kernelspec": dict(execute.KERNELSPEC)})
    nbformat.write(notebook, str(path))
    return path


@pytest.mark.notebooks
def test_make_notebooks_prints_no_tcp_warning_and_still_every_error(tmp_path):
    import zmq

    if not zmq.has("curve"):
        pytest.skip("a libzmq without CurveZMQ: the kernel can only run over plain TCP")
    (tmp_path / "notebooks").mkdir()  # the recipe's cwd, as in the checkout
    fine = tiny_notebook(tmp_path / "ok.ipynb", "print('hello from the kernel')")
    control = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar",
                              str(fine), str(tmp_path / "cli.ipynb")],
                             cwd=tmp_path, capture_output=True, text=True)
    assert control.returncode == 0 and WARNING in control.stderr  # what make printed before
    run = subprocess.run([sys.executable, "-c", papermill_code(), str(fine)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert WARNING not in run.stderr + run.stdout, run.stderr
    executed = nbformat.read(str(fine), as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "hello from the kernel\n"
    broken = tiny_notebook(tmp_path / "broken.ipynb", "raise ValueError('the data ran out')")
    failed = subprocess.run([sys.executable, "-c", papermill_code(), str(broken)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert failed.returncode != 0
    assert "ValueError" in failed.stderr and "the data ran out" in failed.stderr
    assert WARNING not in failed.stderr
