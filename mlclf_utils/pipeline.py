"""Batch runs: execute the numbered notebooks with papermill into a fresh run directory.

The executed notebooks are the run's log: each keeps its outputs and, on failure, the
traceback in the failing cell. ``manifest.json`` records what ran, with which parameters and
package versions, from which commit, and how long each stage took.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

from .errors import MlclfError, ParameterError
from .runs import (MANIFEST, STAGES, git_commit, new_run_dir, package_versions, project_root,
                   write_json)

RUNNER_PARAMETERS = {"run_dir"}


def notebooks_dir() -> Path:
    root = project_root()
    if root is None or not (root / "notebooks").is_dir():
        raise MlclfError("the notebooks/ folder was not found: run this from an mlclf checkout")
    return root / "notebooks"


def stage_notebooks(folder: Path | None = None) -> list[Path]:
    """The stage notebooks that exist, in pipeline order."""
    folder = folder or notebooks_dir()
    return [folder / f"{stage}.ipynb" for stage in STAGES if (folder / f"{stage}.ipynb").exists()]


def notebook_parameters(path: Path) -> dict:
    """The names and defaults of a notebook's ``parameters`` cell, as papermill sees them."""
    import papermill

    return papermill.inspect_notebook(str(path))


def load_params_file(path: str | Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ParameterError("config", str(path), "must hold a mapping of parameter: value")
    return values


def check_parameters(params: dict, notebooks: list[Path]) -> dict[Path, dict]:
    """Split the parameters among notebooks; a name that no stage notebook takes is an error.

    Names are checked against every stage, not only the ones run now, so that one parameter
    file serves a run of any subset of the stages.
    """
    every = {nb: notebook_parameters(nb) for nb in {*notebooks, *stage_notebooks(notebooks[0].parent)}}
    accepted = {nb: every[nb] for nb in notebooks}
    known = set().union(*(set(p) for p in every.values())) if every else set()
    unknown = sorted(set(params) - known - RUNNER_PARAMETERS)
    if unknown:
        raise ParameterError("parameters", unknown,
                             f"no stage notebook takes these; known: {sorted(known)}")
    return {nb: {k: v for k, v in params.items() if k in accepted[nb]} for nb in notebooks}


def run_pipeline(
    params: dict | None = None,
    *,
    notebooks: list[Path] | None = None,
    run_dir: str | Path | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Run the stages in order into a new run directory; stop at the first failure."""
    import papermill

    params = dict(params or {})
    notebooks = notebooks or stage_notebooks()
    if not notebooks:
        raise MlclfError("no stage notebooks found")
    per_notebook = check_parameters(params, notebooks)
    run_dir = Path(run_dir) if run_dir else new_run_dir()
    manifest = {
        "run_id": run_dir.name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": git_commit(),
        "packages": package_versions(),
        "parameters": params,
        "environment": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS")
                        if k in os.environ},
        "stages": [],
    }
    write_json(run_dir / MANIFEST, manifest)
    for notebook in notebooks:
        stage = notebook.stem
        output = run_dir / notebook.name
        entry = {"stage": stage, "notebook": output.name, "parameters": per_notebook[notebook],
                 "status": "running"}
        manifest["stages"].append(entry)
        write_json(run_dir / MANIFEST, manifest)
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={**per_notebook[notebook], "run_dir": str(run_dir.resolve())},
                cwd=str(notebook.parent),
                kernel_name=kernel_name,
                progress_bar=progress,
                request_save_on_cell_execute=True,
            )
        except papermill.PapermillExecutionError as exc:
            entry.update(status="failed", seconds=round(time.perf_counter() - started, 1),
                         error=f"{exc.ename}: {exc.evalue}", cell=exc.exec_count)
            write_json(run_dir / MANIFEST, manifest)
            raise MlclfError(
                f"stage {stage} failed in cell [{exc.exec_count}] with {exc.ename}: {exc.evalue}\n"
                f"  -> the executed notebook with the traceback is {output}"
            ) from None
        entry.update(status="ok", seconds=round(time.perf_counter() - started, 1))
        write_json(run_dir / MANIFEST, manifest)
    return run_dir
