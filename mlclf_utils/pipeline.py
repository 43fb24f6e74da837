"""Batch runs: execute the numbered notebooks with papermill into a fresh run directory.

The executed notebooks are the run's log: each keeps its outputs and, on failure, the
traceback in the failing cell. ``manifest.json`` records what ran, with which parameters and
package versions, from which commit, and how long each stage took.

A run can start at a later stage (``resume``): the earlier stages' artifacts are taken from an
existing run, by hard link where the file system allows it, into the new run directory. The
earlier run is never written to, so a resumed run and its source can both be trusted.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import MlclfError, ParameterError
from .runs import (MANIFEST, STAGES, git_commit, new_run_dir, package_versions, project_root,
                   write_json)

RUNNER_PARAMETERS = {"run_dir"}
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
              "None": type(None)}
STATUS_OK, STATUS_REUSED, STATUS_FAILED = "ok", "reused", "failed"


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


# --- parameter values and their types ------------------------------------------------------

def _yaml_loader():
    """PyYAML follows YAML 1.1, where ``1e-4`` is a string; learning rates are written so."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def parse_value(text: str):
    """A ``-p`` value is YAML (3 is an int, [0.8, 0.1, 0.1] a list, null is None); never eval'd."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def load_params_file(path: str | Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParameterError("--config", str(path), "no such file")
    try:
        values = yaml.load(path.read_text(), Loader=_yaml_loader()) or {}  # noqa: S506
    except yaml.YAMLError as exc:
        raise ParameterError("--config", str(path), f"is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ParameterError("--config", str(path), "must hold a mapping of parameter: value")
    return values


@dataclass(frozen=True)
class ParameterSpec:
    """One line of a parameters cell: its default and the types it accepts.

    The types come from a ``# type: int|None`` comment when the line has one (papermill reads
    the same comment), else from the default's own type. A default of None without a comment
    accepts anything; the stage's own checks still run before any work.
    """

    name: str
    default: object
    types: tuple[str, ...]
    notebook: str

    def accepts(self, value) -> bool:
        if not self.types:
            return True
        for name in self.types:
            kind = TYPE_NAMES[name]
            if isinstance(value, bool) and kind is not bool:
                continue  # True is an int to Python, never to a parameter
            if kind is float and isinstance(value, int):
                return True  # 1 is a fine learning-rate floor
            if kind is list and isinstance(value, tuple):
                return True
            if isinstance(value, kind):
                return True
        return False


def parameter_specs(path: Path) -> dict[str, ParameterSpec]:
    specs = {}
    for name, info in notebook_parameters(path).items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            raise MlclfError(f"{path.name}: the default of {name} ({info['default']}) must be a "
                             "plain literal, so that batch runs can check values against it") from None
        declared = info.get("inferred_type_name") or "None"
        if declared != "None":
            types = tuple(t.strip() for t in declared.split("|"))
            bad = [t for t in types if t not in TYPE_NAMES]
            if bad:
                raise MlclfError(f"{path.name}: unknown type {bad} for {name}; use {sorted(TYPE_NAMES)}")
        elif default is None:
            types = ()
        else:
            types = (type(default).__name__,)
        specs[name] = ParameterSpec(name, default, types, path.name)
    return specs


def check_parameters(params: dict, notebooks: list[Path]) -> dict[Path, dict]:
    """Split the parameters among notebooks; an unknown name or a wrong type is an error.

    Names are checked against every stage, not only the ones run now, so that one parameter
    file serves a run of any subset of the stages.
    """
    folder = notebooks[0].parent
    every = {nb: parameter_specs(nb) for nb in {*notebooks, *stage_notebooks(folder)}}
    set_by_runner = sorted(set(params) & RUNNER_PARAMETERS)
    if set_by_runner:
        raise ParameterError(set_by_runner[0], params[set_by_runner[0]],
                             "is set by the runner; use --run-dir or --resume instead")
    known = set().union(*(set(p) for p in every.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParameterError("parameters", unknown,
                             f"no stage notebook takes these; known: {sorted(known - RUNNER_PARAMETERS)}")
    for name, value in params.items():
        for specs in every.values():
            spec = specs.get(name)
            if spec is not None and not spec.accepts(value):
                raise ParameterError(name, value, f"must be {' or '.join(spec.types)} "
                                     f"(the default in {spec.notebook} is {spec.default!r}), "
                                     f"not {type(value).__name__}")
    return {nb: {k: v for k, v in params.items() if k in every[nb]} for nb in notebooks}


def _with_defaults(notebook: Path, params: dict) -> dict:
    values = {name: spec.default for name, spec in parameter_specs(notebook).items()}
    values.update(params)
    values.pop("run_dir", None)
    return values


def preflight(per_notebook: dict[Path, dict]) -> None:
    """Each stage's own validation, run on its parameters before the first stage starts.

    The notebooks run the same checks in their first code cell; running them here too means a
    bad value for stage 04 fails now, not after 03 has trained for ten minutes.
    """
    from . import preprocess, s3, thresholds, train

    for notebook, params in per_notebook.items():
        values = _with_defaults(notebook, params)
        stage = notebook.stem
        if stage == "01_preprocess":
            preprocess.PreprocessConfig.from_parameters(**values)
        elif stage == "02_save_data" and values.get("s3_uri"):
            s3.parse_s3_uri(values["s3_uri"])
        elif stage == "03_train":
            hyper = {k: values[k] for k in train.NOTEBOOK_HYPERPARAMETERS}
            train.check_hyperparameters(hyper, mode=values["mode"])
        elif stage == "04_evaluate":
            thresholds.check_fallback(values["threshold_fallback"], "threshold_fallback")


# --- which stages run ------------------------------------------------------------------------

def stage_name(value: str | None) -> str | None:
    """``03``, ``3``, ``03_train`` and ``train`` all name stage 03_train."""
    if value is None:
        return None
    text = str(value).strip()
    for stage in STAGES:
        number, name = stage.split("_", 1)
        if text in (stage, number, number.lstrip("0"), name):
            return stage
    raise ParameterError("stage", value, f"choose one of {STAGES} (or its number)")


def select_stages(notebooks: list[Path], first: str | None, last: str | None) -> list[Path]:
    names = [nb.stem for nb in notebooks]
    first, last = stage_name(first), stage_name(last)
    start = names.index(first) if first in names else 0
    stop = names.index(last) + 1 if last in names else len(names)
    if first and first not in names or last and last not in names:
        raise ParameterError("--from/--to", first if first not in names else last,
                             f"no such notebook among {names}")
    if start >= stop:
        raise ParameterError("--from/--to", f"{first}..{last}", "--from comes after --to")
    return notebooks[start:stop]


def _stage_status(manifest: dict | None, stage: str) -> str | None:
    for entry in (manifest or {}).get("stages", []):
        if entry["stage"] == stage:
            return entry["status"]
    return None


def resume_point(source: Path, notebooks: list[Path]) -> str:
    """The first stage of ``source`` that did not finish: where a resumed run starts."""
    manifest = _read_manifest(source)
    if manifest is None:
        raise ParameterError("--resume", str(source),
                             f"has no {MANIFEST} (it was not made by `run`); say where to start "
                             "with --from")
    for notebook in notebooks:
        if _stage_status(manifest, notebook.stem) not in (STATUS_OK, STATUS_REUSED):
            return notebook.stem
    raise ParameterError("--resume", str(source),
                         "every stage finished; pass --from STAGE to run a stage again")


def _read_manifest(run_dir: Path) -> dict | None:
    path = run_dir / MANIFEST
    if not path.exists():
        return None
    from .errors import read_json_file

    return read_json_file(path, what="run manifest")


def _link_or_copy(src, dst) -> None:
    """A hard link where possible (artifacts are written once, never edited), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reuse_stages(source: Path, run_dir: Path, stages: list[str]) -> list[dict]:
    """Bring the artifacts of ``stages`` from an earlier run into ``run_dir``."""
    manifest = _read_manifest(source)
    entries = []
    for stage in stages:
        status = _stage_status(manifest, stage)
        folder = source / stage
        if manifest is not None and status not in (STATUS_OK, STATUS_REUSED):
            raise MlclfError(f"cannot resume from {source}: its stage {stage} "
                             f"{'did not run' if status is None else 'ended ' + status}")
        if not folder.is_dir() or not any(folder.iterdir()):
            raise MlclfError(f"cannot resume from {source}: {folder} holds no artifacts")
        shutil.copytree(folder, run_dir / stage, copy_function=_link_or_copy, symlinks=True)
        executed = source / f"{stage}.ipynb"
        if executed.exists():
            _link_or_copy(executed, run_dir / executed.name)
        entries.append({"stage": stage, "status": STATUS_REUSED, "from_run": source.name,
                        "from_path": str(source.resolve())})
    return entries


def _check_resume_parameters(params: dict, source_params: dict, reused: list[Path],
                             running: list[Path]) -> None:
    """A value that only a reused stage reads cannot change: that stage will not run again."""
    reused_names = set().union(*(parameter_specs(nb) for nb in reused)) if reused else set()
    running_names = set().union(*(parameter_specs(nb) for nb in running))
    for name in sorted(set(params) & (reused_names - running_names)):
        if name in source_params and params[name] == source_params[name]:
            continue
        raise ParameterError(
            name, params[name],
            f"is read only by a stage taken from the earlier run ({', '.join(nb.stem for nb in reused)}); "
            "start a new run (or resume from an earlier stage) to change it")


# --- the run ---------------------------------------------------------------------------------

def _failing_cell(output: Path, exec_count) -> str:
    """The first line of the failing cell's code, so the message says *which* cell in words."""
    try:
        import nbformat

        notebook = nbformat.read(str(output), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code" and cell.get("execution_count") == exec_count:
                lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")]
                return lines[0][:100] if lines else ""
    except Exception:  # noqa: BLE001 - a nicer message must never hide the real failure
        pass
    return ""


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def _kernel_environment():
    """Kernels inherit this process's environment. ``MPLBACKEND=Agg`` (set for headless test
    processes) would make every figure vanish from the executed notebooks, which are the run's
    record; the inline backend needs no display and embeds them."""
    previous = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = previous


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
    import papermill

    all_notebooks = notebooks or stage_notebooks()
    if not all_notebooks:
        raise MlclfError("no stage notebooks found")
    source = Path(resume) if resume else None
    if source is not None and not source.is_dir():
        raise ParameterError("--resume", str(resume), "no such run directory")
    if source is not None and first is None:
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
        source_params = (_read_manifest(source) or {}).get("parameters", {})
        _check_resume_parameters(params, source_params, earlier, selected)
    merged = {**source_params, **params}
    per_notebook = check_parameters(merged, selected)
    preflight(per_notebook)

    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ParameterError("--run-dir", str(run_dir), "already holds files; a run never "
                                 "overwrites another")
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir()
    manifest = {
        "run_id": run_dir.name,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": git_commit(),
        "packages": package_versions(),
        "parameters": merged,
        "overrides": params,
        "resumed_from": str(source.resolve()) if source else None,
        "environment": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS")
                        if k in os.environ},
        "stages": [],
    }
    write_json(run_dir / MANIFEST, manifest)
    if earlier:
        manifest["stages"] += reuse_stages(source, run_dir, [nb.stem for nb in earlier])
        write_json(run_dir / MANIFEST, manifest)
    for notebook in selected:
        stage = notebook.stem
        output = run_dir / notebook.name
        entry = {"stage": stage, "notebook": output.name, "parameters": per_notebook[notebook],
                 "status": "running",
                 "started": _dt.datetime.now().isoformat(timespec="seconds")}
        manifest["stages"].append(entry)
        write_json(run_dir / MANIFEST, manifest)
        started = time.perf_counter()
        try:
            with _kernel_environment():
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
            line = _failing_cell(output, exc.exec_count)
            entry.update(status=STATUS_FAILED, seconds=round(time.perf_counter() - started, 1),
                         error=f"{exc.ename}: {exc.evalue}", cell=exc.exec_count,
                         cell_index=exc.cell_index, cell_code=line)
            write_json(run_dir / MANIFEST, manifest)
            raise MlclfError(
                f"stage {stage} failed in cell [{exc.exec_count}]"
                + (f" ({line})" if line else "") + f" with {exc.ename}: {exc.evalue}\n"
                f"  -> the executed notebook with the traceback is {output}\n"
                f"  -> after fixing it: python -m mlclf_utils run --resume {run_dir}"
            ) from None
        except BaseException as exc:  # a dead kernel, Ctrl-C: the manifest must say so
            entry.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else STATUS_FAILED,
                         seconds=round(time.perf_counter() - started, 1),
                         error=f"{type(exc).__name__}: {exc}")
            write_json(run_dir / MANIFEST, manifest)
            raise
        entry.update(status=STATUS_OK, seconds=round(time.perf_counter() - started, 1))
        write_json(run_dir / MANIFEST, manifest)
    return run_dir
