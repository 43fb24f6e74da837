"""Batch runs: execute the numbered notebooks with papermill into a fresh run directory.

A run is planned completely before anything is written (``plan_run``: the stages, the resumed
run, every value's name and type, and each stage's own ``check()``), then executed stage by
stage (``execute``). ``manifest.json`` records what ran, with which parameters and package
versions, from which commit, and how long each stage took; the executed notebooks are the log.

The parts live beside this module: ``parameters`` (the notebooks' typed parameters cells),
``resume`` (taking earlier stages from another run) and ``execute`` (papermill, one stage).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlclf_utils import stages
from mlclf_utils.artifacts import MANIFEST, STAGES, write_json
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner.execute import KERNEL_NAME, check_kernel, execute_stage
from mlclf_utils.runner.parameters import check_parameters, effective_parameters, stage_notebooks
from mlclf_utils.runner.resume import (check_resume_parameters, check_reusable, read_manifest,
                                       resume_point, reuse_stages)
from mlclf_utils.runner.runs import git_commit, new_run_dir, package_versions


def preflight(per_notebook: dict[Path, dict]) -> None:
    """Each stage's own ``check()``, run on its parameters before the first stage starts.

    The notebooks run the same checks in their first code cells; running them here too means a
    bad value for stage 04 fails now, not after 03 has trained for ten minutes. The runner
    knows no stage's parameters: each stage module judges its own.
    """
    for notebook, params in per_notebook.items():
        stages.check(notebook.stem, effective_parameters(notebook, params))


def stage_name(value: str | None, option: str = "stage") -> str | None:
    """``03``, ``3``, ``03_train`` and ``train`` all name stage 03_train."""
    if value is None:
        return None
    text = str(value).strip()
    for stage in STAGES:
        number, name = stage.split("_", 1)
        if text in (stage, number, number.lstrip("0"), name):
            return stage
    raise ParameterError(option, value, f"choose one of {STAGES} (or its number)")


def select_stages(notebooks: list[Path], first: str | None, last: str | None) -> list[Path]:
    names = [nb.stem for nb in notebooks]
    first, last = stage_name(first, "--from"), stage_name(last, "--to")
    for option, stage in (("--from", first), ("--to", last)):
        if stage is not None and stage not in names:
            raise ParameterError(option, stage, f"no such notebook among {names}")
    start = names.index(first) if first else 0
    stop = names.index(last) + 1 if last else len(names)
    if start >= stop:
        raise ParameterError("--to", last, f"comes before the first stage to run, {first}")
    return notebooks[start:stop]


@dataclass
class RunPlan:
    """Everything checked, nothing created: what ``execute`` will do."""

    earlier: list[Path]          # taken from ``source``
    selected: list[Path]         # executed
    source: Path | None
    parameters: dict             # the source run's values with this run's on top
    overrides: dict              # this run's values
    per_notebook: dict           # selected notebook -> the values it receives
    last_requested: str | None


def _bare_resume_range(source: Path, notebooks: list[Path]) -> tuple[str, str | None]:
    """A bare --resume finishes what the source run set out to do: up to its --to."""
    recorded = (read_manifest(source) or {}).get("to")
    if not recorded:
        return resume_point(source, notebooks), None
    names = [nb.stem for nb in notebooks]
    candidates = notebooks[:names.index(recorded) + 1] if recorded in names else notebooks
    try:
        return resume_point(source, candidates), recorded
    except ParameterError:
        raise ParameterError("--resume", str(source),
                             f"every stage up to {recorded} finished (that run was made "
                             f"with --to {recorded}); pass --to STAGE to go further, or "
                             "--from STAGE to run a stage again") from None


def plan_run(params: dict | None = None, *, notebooks: list[Path] | None = None,
             first: str | None = None, last: str | None = None,
             resume: str | Path | None = None) -> RunPlan:
    """Check a run completely before anything is written: names, types, each stage's own
    checks, the resumed run's stages and the values they froze."""
    all_notebooks = notebooks or stage_notebooks()
    if not all_notebooks:
        raise MlclfError("no stage notebooks found")
    source = Path(resume) if resume else None
    if source is not None and not source.is_dir():
        raise ParameterError("--resume", str(resume), "no such run directory")
    if source is not None and first is None:
        if last is None:
            first, last = _bare_resume_range(source, all_notebooks)
        else:
            first = resume_point(source, all_notebooks)
    selected = select_stages(all_notebooks, first, last)
    earlier = all_notebooks[:all_notebooks.index(selected[0])]
    if earlier and source is None:
        raise ParameterError("--from", selected[0].stem,
                             f"needs --resume RUN_DIR: the stages before it ({earlier[0].stem}...) "
                             "must come from an existing run")
    params = dict(params or {})
    source_params = {}
    if source is not None:
        check_reusable(source, [nb.stem for nb in earlier])
        source_params = (read_manifest(source) or {}).get("parameters", {})
        check_resume_parameters(params, source, earlier, selected)
    merged = {**source_params, **params}
    per_notebook = check_parameters(merged, selected)
    preflight(per_notebook)
    return RunPlan(earlier, selected, source, merged, params, per_notebook, last)


def _check_new_run_dir(run_dir: Path, source: Path | None) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ParameterError("--run-dir", str(run_dir), "already holds files; a run never "
                             "overwrites another")
    resolved = run_dir.resolve()
    for folder in (resolved, *resolved.parents):
        if (folder / MANIFEST).exists():
            raise ParameterError("--run-dir", str(run_dir), f"is inside the run {folder}; a run "
                                 "never writes into another")
    if source is not None and (resolved == source.resolve() or source.resolve() in resolved.parents):
        raise ParameterError("--run-dir", str(run_dir), f"is inside the resumed run {source}")


def run_pipeline(
    params: dict | None = None,
    *,
    notebooks: list[Path] | None = None,
    first: str | None = None,
    last: str | None = None,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Run the stages in order into a new run directory; stop at the first failure.

    ``first``/``last`` pick a range of stages. Starting after 01 needs ``resume``: an earlier
    run whose artifacts stand in for the stages that do not run. Its parameters carry over,
    and ``params`` override them for the stages that run.
    """
    plan = plan_run(params, notebooks=notebooks, first=first, last=last, resume=resume)
    check_kernel(kernel_name or KERNEL_NAME)
    if run_dir is not None:
        # absolute: each stage's kernel starts in notebooks/, where a relative path means
        # another folder
        run_dir = Path(run_dir).resolve()
        _check_new_run_dir(run_dir, plan.source)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir()
    return execute(plan, run_dir, kernel_name=kernel_name, progress=progress)


def resume_command(run_dir: Path) -> str:
    """The manifest records --to, and a bare --resume honours it."""
    return f"python -m mlclf_utils run --resume {run_dir}"


def _after_stage(run_dir: Path, stage: str) -> None:
    """What a finished stage has to tell a batch user that the executed notebook would bury."""
    warning = stages.notice(stage, run_dir)
    if warning:
        print(warning, file=sys.stderr)


def execute(plan: RunPlan, run_dir: Path, *, kernel_name: str | None = None,
            progress: bool = True) -> Path:
    """Carry out a checked plan in ``run_dir``; the manifest is written before the first stage."""
    manifest = {
        "run_id": run_dir.name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": git_commit(),
        "packages": package_versions(),
        "parameters": plan.parameters,
        "overrides": plan.overrides,
        "resumed_from": str(plan.source.resolve()) if plan.source else None,
        "to": stage_name(plan.last_requested, "--to"),  # a bare --resume of this run stops there too
        "environment": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS")
                        if k in os.environ},
        "stages": [],
    }
    write_json(run_dir / MANIFEST, manifest)
    if plan.earlier:
        manifest["stages"] += reuse_stages(plan.source, run_dir, [nb.stem for nb in plan.earlier])
        write_json(run_dir / MANIFEST, manifest)
    hint = resume_command(run_dir)
    scratch = Path(tempfile.mkdtemp(prefix="mlclf-progress-"))
    try:
        for number, notebook in enumerate(plan.selected, start=1):
            execute_stage(notebook, plan.per_notebook[notebook], run_dir, manifest,
                          counter=f"[{number}/{len(plan.selected)}]", hint=hint,
                          progress_file=scratch / f"{notebook.stem}.jsonl",
                          kernel_name=kernel_name, progress=progress)
            _after_stage(run_dir, notebook.stem)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return run_dir
