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
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlclf_utils.errors import MlclfError, ParameterError, SetupError
from mlclf_utils.runner.runs import FINISHED, MANIFEST, STAGES, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK, STATUS_REUSED, STATUS_RUNNING, git_commit, new_run_dir, package_versions, project_root
from mlclf_utils.artifacts import write_json

RUNNER_PARAMETERS = {"run_dir"}
# The notebooks' kernelspec names the kernel `make install` registers for the project's venv, so
# that JupyterLab, papermill and nbval all run them on the Python that has mlclf_utils.
KERNEL_NAME = "mlclf"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python (mlclf)", "language": "python"}
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
              "None": type(None)}



def notebooks_dir() -> Path:
    root = project_root()
    if root is None or not (root / "notebooks").is_dir():
        raise MlclfError("the notebooks/ folder was not found: run this from an mlclf checkout")
    return root / "notebooks"


def stage_notebooks(folder: Path | None = None) -> list[Path]:
    """The stage notebooks that exist, in pipeline order."""
    folder = folder or notebooks_dir()
    return [folder / f"{stage}.ipynb" for stage in STAGES if (folder / f"{stage}.ipynb").exists()]


def check_kernel(name: str = KERNEL_NAME) -> None:
    """The notebooks' kernel must exist before a stage starts, or papermill fails obscurely."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise SetupError(f"no Jupyter kernel named {name!r}: run `make install`, which registers "
                         f"it for this venv (or `{sys.executable} -m ipykernel install --sys-prefix "
                         f"--name {name} --display-name 'Python (mlclf)'`)") from None


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

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ParameterError("value", text, f"is not valid YAML ({exc.__class__.__name__}); "
                             "quote it to pass it as text") from None


EXPLICIT_NULLS = {"null", "Null", "NULL", "~", "None", "none"}


def typed_value(name: str, text: str, specs: dict[str, "ParameterSpec"] | None = None):
    """A command-line value read against its parameter's declared types.

    YAML guesses types from the text alone: ``4.40`` becomes the float 4.4, ``off`` becomes
    False and ``#`` becomes None. When the parameter takes text and YAML's guess is not one of
    its types (or YAML produced nothing from non-empty text), the text is kept as it was typed.
    """
    specs = all_parameter_specs() if specs is None else specs
    spec = specs.get(name)
    takes_text = spec is not None and (not spec.types or "str" in spec.types)
    try:
        value = parse_value(text)
    except ParameterError:
        if takes_text:
            return text
        raise ParameterError(name, text, "is not valid YAML; quote it to pass it as text") from None
    if takes_text and spec.types and not isinstance(value, str):
        produced_nothing = value in (None, "") and text.strip() not in EXPLICIT_NULLS
        if produced_nothing or not spec.accepts(value):
            return text
    if value is None and text.strip() not in EXPLICIT_NULLS:
        raise ParameterError(name, text, "reads as nothing; quote it to pass it as text")
    return value


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
    """One line of a parameters cell: its default, the types it accepts and its help.

    Every line declares its types with a ``# type: int|None  help`` comment, the same source
    that ``papermill --help-notebook`` shows; the runner checks values against it.
    """

    name: str
    default: object
    types: tuple[str, ...]
    notebook: str
    help: str = ""

    def accepts(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False  # NaN and infinity do not survive the manifest's JSON
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


    def why_not(self, value) -> str:
        """What is wrong with a value ``accepts`` refused, in the user's terms."""
        expected = f"must be {' or '.join(self.types)} (the default in {self.notebook} is {self.default!r})"
        if isinstance(value, float) and math.isnan(value):
            return f"NaN is not allowed; {expected}"
        if isinstance(value, float) and math.isinf(value):
            return f"infinity is not allowed; {expected}"
        if isinstance(value, float) and "int" in self.types and "float" not in self.types:
            if value.is_integer():
                return f"{value!r} is written as a decimal; write {int(value)} ({expected})"
            return f"{value!r} is not a whole number; {expected}"
        return f"{expected}, not {type(value).__name__}"


def parameter_specs(path: Path) -> dict[str, ParameterSpec]:
    specs = {}
    for name, info in notebook_parameters(path).items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            raise MlclfError(f"{path.name}: the default of {name} ({info['default']}) must be a "
                             "plain literal, so that batch runs can check values against it") from None
        declared = info.get("inferred_type_name") or "None"
        if declared == "None":
            raise MlclfError(f"{path.name}: the parameter {name} has no '# type:' comment; write "
                             f"it as `{name} = {info['default']}  # type: T  what it does` "
                             f"(T from {sorted(TYPE_NAMES)}, joined with | )")
        types = tuple(t.strip() for t in declared.split("|"))
        bad = [t for t in types if t not in TYPE_NAMES]
        if bad:
            raise MlclfError(f"{path.name}: unknown type {bad} for {name}; use {sorted(TYPE_NAMES)}")
        if not any(isinstance(default, TYPE_NAMES[t]) for t in types):
            raise MlclfError(f"{path.name}: the default of {name} ({info['default']}) is not "
                             f"of its declared type {declared}")
        specs[name] = ParameterSpec(name, default, types, path.name, info.get("help") or "")
    return specs


def all_parameter_specs(folder: Path | None = None) -> dict[str, ParameterSpec]:
    """Every stage's parameters by name (the first notebook's spec where two share a name)."""
    specs: dict[str, ParameterSpec] = {}
    for notebook in stage_notebooks(folder):
        for name, spec in parameter_specs(notebook).items():
            specs.setdefault(name, spec)
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
                raise ParameterError(name, value, spec.why_not(value))
    return {nb: {k: v for k, v in params.items() if k in every[nb]} for nb in notebooks}


def effective_parameters(notebook: Path, params: dict) -> dict:
    """What the notebook will see: its defaults with ``params`` on top (run_dir aside)."""
    values = {name: spec.default for name, spec in parameter_specs(notebook).items()}
    values.update(params)
    values.pop("run_dir", None)
    return values


def preflight(per_notebook: dict[Path, dict]) -> None:
    """Each stage's own ``check()``, run on its parameters before the first stage starts.

    The notebooks run the same checks in their first code cells; running them here too means a
    bad value for stage 04 fails now, not after 03 has trained for ten minutes.
    """
    from mlclf_utils import stages

    for notebook, params in per_notebook.items():
        stages.check(notebook.stem, effective_parameters(notebook, params))


# --- which stages run ------------------------------------------------------------------------

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


def _stage_entry(manifest: dict | None, stage: str) -> dict | None:
    for entry in (manifest or {}).get("stages", []):
        if entry["stage"] == stage:
            return entry
    return None


def _stage_status(manifest: dict | None, stage: str) -> str | None:
    entry = _stage_entry(manifest, stage)
    return entry["status"] if entry else None


def resume_point(source: Path, notebooks: list[Path]) -> str:
    """The first stage of ``source`` that did not finish: where a resumed run starts."""
    manifest = _read_manifest(source)
    if manifest is None:
        raise ParameterError("--resume", str(source),
                             f"has no {MANIFEST} (it was not made by `run`); say where to start "
                             "with --from")
    for notebook in notebooks:
        if _stage_status(manifest, notebook.stem) not in FINISHED:
            return notebook.stem
    raise ParameterError("--resume", str(source),
                         "every stage finished; pass --from STAGE to run a stage again")


def _read_manifest(run_dir: Path) -> dict | None:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    from mlclf_utils.artifacts import read_json, write_json

    return read_json(path, what="run manifest")


def check_reusable(source: Path, stages: list[str]) -> None:
    """Every stage to be taken from ``source`` finished there and left its artifacts."""
    manifest = _read_manifest(source)
    for stage in stages:
        status = _stage_status(manifest, stage)
        folder = Path(source) / stage
        if manifest is not None and status not in FINISHED:
            raise MlclfError(f"cannot take {stage} from {source}: that stage "
                             f"{'did not run' if status is None else 'ended ' + status} there")
        if not folder.is_dir() or not any(folder.iterdir()):
            raise MlclfError(f"cannot take {stage} from {source}: {folder} holds no artifacts")


def _link_or_copy(src, dst) -> None:
    """A hard link where possible (artifacts are written once, never edited), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reuse_stages(source: Path, run_dir: Path, stages: list[str]) -> list[dict]:
    """Bring the artifacts of ``stages`` from an earlier run into ``run_dir``."""
    check_reusable(source, stages)
    manifest = _read_manifest(source)
    entries = []
    for stage in stages:
        shutil.copytree(Path(source) / stage, run_dir / stage, copy_function=_link_or_copy,
                        symlinks=True)
        executed = Path(source) / f"{stage}.ipynb"
        if executed.exists():
            _link_or_copy(executed, run_dir / executed.name)
        earlier = _stage_entry(manifest, stage) or {}
        entries.append({"stage": stage, "status": STATUS_REUSED,
                        "from_run": earlier.get("from_run", Path(source).name),
                        "from_path": earlier.get("from_path", str(Path(source).resolve())),
                        "parameters": earlier.get("parameters")})
    return entries


# Names that two stages read with different meanings: 01's seed draws the sample and the split,
# 03's seeds the training. Changing 03's on a resumed run is legitimate.
STAGE_LOCAL = {"seed"}


def _check_resume_parameters(params: dict, source: Path, reused: list[Path]) -> None:
    """A value a reused stage read cannot change: that stage will not run again.

    ``model_name`` and ``max_length`` are parameters of 01 only (03, 04 and 05 read 01's
    choice from its preprocess_config.json), so a resumed run refuses a new value for them:
    03 must train on the tokens 01 produced.
    """
    manifest = _read_manifest(source) or {}
    for notebook in reused:
        entry = _stage_entry(manifest, notebook.stem) or {}
        used = entry.get("parameters")
        if used is None:  # older manifests, or a run made by hand: the defaults plus its values
            used = effective_parameters(notebook, {k: v for k, v in manifest.get("parameters", {}).items()
                                                   if k in parameter_specs(notebook)})
        else:
            used = effective_parameters(notebook, used)
        for name in sorted(set(params) & set(used) - STAGE_LOCAL - RUNNER_PARAMETERS):
            if params[name] != used[name]:
                raise ParameterError(
                    name, params[name],
                    f"was {used[name]!r} in {notebook.stem}, which is taken from {source}; start a "
                    "new run (or resume from that stage) to change it")


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
        # A bare --resume finishes what the source run set out to do: up to its --to.
        recorded = (_read_manifest(source) or {}).get("to")
        if last is None and recorded:
            last = recorded
            candidates = all_notebooks[:[nb.stem for nb in all_notebooks].index(recorded) + 1] \
                if recorded in [nb.stem for nb in all_notebooks] else all_notebooks
            try:
                first = resume_point(source, candidates)
            except ParameterError:
                raise ParameterError("--resume", str(source),
                                     f"every stage up to {recorded} finished (that run was made "
                                     f"with --to {recorded}); pass --to STAGE to go further, or "
                                     "--from STAGE to run a stage again") from None
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
        source_params = (_read_manifest(source) or {}).get("parameters", {})
        _check_resume_parameters(params, source, earlier)
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
def _kernel_environment(**extra: str):
    """Kernels inherit this process's environment. ``MPLBACKEND=Agg`` (set for headless test
    processes) would make every figure vanish from the executed notebooks, which are the run's
    record; the inline backend needs no display and embeds them. ``extra`` variables (the
    training progress file) are set for the kernel too."""
    values = {"MPLBACKEND": INLINE_BACKEND, **extra}
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _TrainingProgress:
    """Shows the training progress a stage's kernel writes (``train.progress_file_callback``)
    as a tqdm bar: step, total, loss and tqdm's own ETA. A thread follows the file while
    papermill waits for the cell; a stage without training leaves no bar."""

    def __init__(self, path: Path, enabled: bool):
        import threading

        self.path, self.enabled = path, enabled
        self._offset, self._bar, self._label = 0, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._read()
            self._close()
        self.path.unlink(missing_ok=True)
        return False

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            self._read()

    def _read(self) -> None:
        import json

        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                self._show(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line must never stop the run

    def _show(self, record: dict) -> None:
        from tqdm import tqdm

        if self._bar is None or record.get("event") == "begin" or record["label"] != self._label:
            self._close()
            self._label = record["label"]
            self._bar = tqdm(total=record["total"] or None, desc=f"  training {self._label}",
                             unit="step", file=sys.stderr, dynamic_ncols=True)
        if record.get("loss") is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
        self._bar.update(max(0, int(record["step"]) - self._bar.n))
        if record.get("event") == "end":
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _resume_hint(run_dir: Path) -> str:
    """The manifest records --to, and a bare --resume honours it."""
    return f"python -m mlclf_utils run --resume {run_dir}"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage: the manifest is written; the message says where and what next."""


def _kernel_config():
    """The kernel manager provisions CurveZMQ keys, so that the kernel's sockets are encrypted:
    ipykernel warns about plain TCP on every start otherwise (issue 11)."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):  # a libzmq without libsodium: plain TCP, and the kernel's warning
        return Config()
    return Config({"KernelManager": {"transport_encryption": "required"}})


def _running_cell(output: Path) -> int | None:
    """The execution count of the cell the interruption stopped: the one papermill had started
    and not finished, or the one the kernel's own KeyboardInterrupt ended."""
    try:
        import nbformat

        notebook = nbformat.read(str(output), as_version=4)
    except Exception:  # noqa: BLE001 - a nicer message must never hide the interruption
        return None
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for cell in code:
        if (cell.metadata.get("papermill", {}).get("status") == "running"
                or any(o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", []))):
            return cell.get("execution_count")
    counted = [c.execution_count for c in code if c.get("execution_count") is not None]
    return counted[-1] if counted else None


# The kernel's own log (not the cells' output, which the notebook keeps): kept next to the
# executed notebook when the kernel wrote anything, e.g. its complaints when Ctrl-C stops it.
KERNEL_LOG_SUFFIX = ".kernel.log"


def _kernel_manager_class(log_path: Path):
    """A kernel manager that sends the kernel process's stderr to ``log_path``.

    On Ctrl-C the kernel is shut down while its interrupted cell is still replying, and it
    logs a ZMQError traceback; the run's one-line message is what a user needs to see.
    """
    from jupyter_client import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kwargs):
            with open(log_path, "ab") as log:  # the kernel keeps its own copy of the descriptor
                kwargs.setdefault("stderr", log)
                return await super().start_kernel(**kwargs)

    return LoggedKernelManager


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
        run_dir = Path(run_dir)
        _check_new_run_dir(run_dir, plan.source)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir()
    return execute(plan, run_dir, kernel_name=kernel_name, progress=progress)


def execute(plan: RunPlan, run_dir: Path, *, kernel_name: str | None = None,
            progress: bool = True) -> Path:
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
    hint = _resume_hint(run_dir)
    from mlclf_utils.modeling.train import PROGRESS_FILE_ENV

    scratch = Path(tempfile.mkdtemp(prefix="mlclf-progress-"))
    try:
        for number, notebook in enumerate(plan.selected, start=1):
            _execute_stage(plan, run_dir, manifest, notebook, f"[{number}/{len(plan.selected)}]",
                           hint, scratch / f"{notebook.stem}.jsonl", kernel_name=kernel_name,
                           progress=progress, progress_env=PROGRESS_FILE_ENV)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return run_dir


def _execute_stage(plan: RunPlan, run_dir: Path, manifest: dict, notebook: Path, counter: str,
                   hint: str, progress_file: Path, *, kernel_name, progress: bool,
                   progress_env: str) -> None:
    """One stage: announced by name, executed by papermill, recorded in the manifest."""
    import papermill

    stage = notebook.stem
    print(f"{counter} {stage}", file=sys.stderr, flush=True)
    output = run_dir / notebook.name
    given = plan.per_notebook[notebook]
    entry = {"stage": stage, "notebook": output.name,
             "parameters": effective_parameters(notebook, given), "status": STATUS_RUNNING,
             "started": _dt.datetime.now().isoformat(timespec="seconds")}
    manifest["stages"].append(entry)
    write_json(run_dir / MANIFEST, manifest)
    started = time.perf_counter()
    kernel_log = run_dir / f"{stage}{KERNEL_LOG_SUFFIX}"

    def interrupted(cell):
        entry.update(status=STATUS_INTERRUPTED, seconds=round(time.perf_counter() - started, 1),
                     cell=cell)
        write_json(run_dir / MANIFEST, manifest)
        return RunInterrupted(f"interrupted during {stage}"
                              + (f" (cell {cell})" if cell is not None else "")
                              + f"; resume with {hint}")

    try:
        with _kernel_environment(**{progress_env: str(progress_file)}), \
                _TrainingProgress(progress_file, progress):
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={**given, "run_dir": str(run_dir.resolve())},
                cwd=str(notebook.parent),
                kernel_name=kernel_name,
                progress_bar={"desc": f"  {stage} cells"} if progress else False,
                request_save_on_cell_execute=True,
                config=_kernel_config(),
                kernel_manager_class=_kernel_manager_class(kernel_log),
            )
    except papermill.PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":  # the kernel had the Ctrl-C first
            raise interrupted(exc.exec_count) from None
        line = _failing_cell(output, exc.exec_count)
        entry.update(status=STATUS_FAILED, seconds=round(time.perf_counter() - started, 1),
                     error=f"{exc.ename}: {exc.evalue}", cell=exc.exec_count,
                     cell_index=exc.cell_index, cell_code=line)
        write_json(run_dir / MANIFEST, manifest)
        raise MlclfError(
            f"stage {stage} failed in cell [{exc.exec_count}]"
            + (f" ({line})" if line else "") + f" with {exc.ename}: {exc.evalue}\n"
            f"  -> the executed notebook with the traceback is {output}\n"
            f"  -> after fixing it: {hint}"
        ) from None
    except KeyboardInterrupt:
        raise interrupted(_running_cell(output)) from None
    except Exception as exc:  # a dead kernel, a cell timeout: same record, same advice
        entry.update(status=STATUS_FAILED, seconds=round(time.perf_counter() - started, 1),
                     error=f"{type(exc).__name__}: {exc}")
        write_json(run_dir / MANIFEST, manifest)
        raise MlclfError(
            f"stage {stage} stopped with {type(exc).__name__}: {exc}\n"
            f"  -> the notebook as far as it got is {output}\n"
            f"  -> to try again: {hint}"
        ) from exc
    finally:
        if kernel_log.exists() and not kernel_log.stat().st_size:
            kernel_log.unlink()  # the kernel had nothing to say
    entry.update(status=STATUS_OK, seconds=round(time.perf_counter() - started, 1))
    write_json(run_dir / MANIFEST, manifest)
    print(f"{counter} {stage} ok ({entry['seconds']} s)", file=sys.stderr, flush=True)
    if stage == "01_preprocess":
        from mlclf_utils.stages.preprocess import dropped_rows_warning

        warning = dropped_rows_warning(run_dir)
        if warning:
            print(warning, file=sys.stderr)
