"""nbval reference notebooks: the stage notebooks executed with smoke parameters.

``tests/notebooks/`` holds one executed copy per stage. pytest re-executes them with
``--nbval-lax`` and compares the cells marked ``# NBVAL_CHECK_OUTPUT``. A reference is only
worth something while its code is the code users run, hence ``code_cells`` for the drift test.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .pipeline import load_params_file, stage_notebooks
from .runs import project_root

INJECTED_TAG = "injected-parameters"


def references_dir() -> Path:
    return project_root() / "tests" / "notebooks"


def smoke_parameters() -> dict:
    return load_params_file(project_root() / "configs" / "smoke.yaml")


def code_cells(path: str | Path) -> list[str]:
    """A notebook's code, without papermill's injected-parameters cell."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    return [
        cell.source.strip()
        for cell in notebook.cells
        if cell.cell_type == "code" and INJECTED_TAG not in cell.metadata.get("tags", [])
    ]


def refresh_references(notebooks: list[Path] | None = None) -> list[Path]:
    """Execute each stage notebook with the smoke parameters into tests/notebooks/.

    Stages run in order in one throwaway runs folder, so 02 finds what 01 wrote, exactly as
    nbval will later re-execute them.
    """
    import papermill

    from .pipeline import check_parameters

    notebooks = notebooks or stage_notebooks()
    params = smoke_parameters()
    per_notebook = check_parameters(params, notebooks)
    out_dir = references_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="mlclf-refs-") as runs:
        previous = os.environ.get("MLCLF_RUNS_DIR")
        os.environ["MLCLF_RUNS_DIR"] = runs
        try:
            for notebook in notebooks:
                target = out_dir / notebook.name
                papermill.execute_notebook(str(notebook), str(target),
                                           parameters=per_notebook[notebook],
                                           cwd=str(out_dir), progress_bar=False)
                written.append(target)
        finally:
            if previous is None:
                os.environ.pop("MLCLF_RUNS_DIR", None)
            else:
                os.environ["MLCLF_RUNS_DIR"] = previous
    return written
