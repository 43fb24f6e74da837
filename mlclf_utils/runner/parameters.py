"""The stage notebooks' ``parameters`` cells, read as the runner's typed contract.

Each line of a parameters cell is ``name = default  # type: T|None  help``: the same text that
``papermill --help-notebook`` shows and that a person reads in JupyterLab. The runner takes its
names, defaults and types from there (never from a list of its own), so that a parameter added
to a notebook is known to ``run``, ``sweep`` and ``--config`` at once. Values given on the
command line or in a YAML file are read against those types before anything runs.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mlclf_utils.artifacts import STAGES
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner.runs import project_root

# Set by the runner itself (where each stage writes), never by a user.
RUNNER_PARAMETERS = {"run_dir"}
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
              "None": type(None)}
# The texts a user types to mean None on purpose; any other text YAML reads as nothing is a slip.
EXPLICIT_NULLS = {"null", "Null", "NULL", "~", "None", "none"}


def notebooks_dir() -> Path:
    root = project_root()
    if root is None or not (root / "notebooks").is_dir():
        raise MlclfError("the notebooks/ folder was not found: run this from an mlclf checkout")
    return root / "notebooks"


def stage_notebooks(folder: Path | None = None) -> list[Path]:
    """The stage notebooks that exist, in pipeline order (a test folder may hold only some)."""
    folder = folder or notebooks_dir()
    return [folder / f"{stage}.ipynb" for stage in STAGES if (folder / f"{stage}.ipynb").exists()]


def notebook_parameters(path: Path) -> dict:
    """The names and defaults of a notebook's ``parameters`` cell, as papermill sees them."""
    import papermill

    return papermill.inspect_notebook(str(path))


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


def typed_value(name: str, text: str, specs: dict[str, ParameterSpec] | None = None):
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
    """A ``--config`` file: YAML (so JSON too) holding one mapping of parameter: value."""
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
    """A notebook's parameters, refused unless each has a literal default and declared types:
    a batch run can only check a value against what the cell states."""
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
    for name in RUNNER_PARAMETERS:
        values.pop(name, None)
    return values
