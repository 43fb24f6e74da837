"""The package's shape, read from its sources: the rules of issue 15 that no unit test would see.

Each rule exists because breaking it once made the package harder to read or to ship: a module
too long to hold in mind, a private helper another module came to depend on, an artifact read
past the one reader that names the broken file, or matplotlib dragged into a SageMaker
container. The tests name every offender, so a failure says what to move where.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import mlclf_utils

PACKAGE = Path(mlclf_utils.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_LINES = 400

# Functions ("module::function") that parse JSON which is not an artifact of a run, and why.
JSON_TEXT_PARSERS = {
    "serving/hosting.py::input_fn": "a SageMaker request body",
    "data/sources.py::read_file": "the user's .jsonl input, named by line in its own errors",
    "data/sources.py::_json_list": "a label cell written as a JSON list in the user's table",
    "evaluation/misclassifications.py::parse_probabilities": "a JSON cell of a table",
    "runner/execute.py::_read": "a kernel's progress lines",
    "modeling/encoders.py::declared_max_positions": "a model's config.json, possibly in the "
                                                    "Hub cache, read leniently: unreadable "
                                                    "means unknown",
}
# Modules that may import matplotlib or seaborn at module level: their purpose is to draw.
PLOTTING_MODULES = {
    "figures.py": "the one figure helper",
    "evaluation/plots.py": "04's figures",
}
PLOTTING_LIBRARIES = ("matplotlib", "seaborn")


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_file(dotted: str) -> Path | None:
    """The source file of an mlclf_utils module (or package), None for anything else."""
    if dotted != "mlclf_utils" and not dotted.startswith("mlclf_utils."):
        return None
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def module_bindings(tree: ast.Module) -> dict[str, str]:
    """Local name -> the mlclf_utils module it is bound to, by any import in the file."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if module_file(alias.name):
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if module_file(target):
                    bound[alias.asname or alias.name] = target
    return bound


def private_uses(path: Path) -> list[str]:
    """Private names of other mlclf_utils modules that ``path`` imports or reaches into."""
    tree = parsed(path)
    own = path.resolve()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and module_file(node.module):
            if module_file(node.module).resolve() == own:
                continue
            found += [f"line {node.lineno}: from {node.module} import {a.name}"
                      for a in node.names if is_private(a.name)]
    bound = module_bindings(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
            continue
        owner = dotted_name(node.value)
        if owner is None:
            continue
        head, _, rest = owner.partition(".")
        if head not in bound:
            continue
        target = ".".join(filter(None, [bound[head], rest]))
        if module_file(target) and module_file(target).resolve() != own:
            found.append(f"line {node.lineno}: {owner}.{node.attr}")
    return found


def enclosing_function(tree: ast.Module, line: int) -> str:
    """The innermost function around ``line``, or ``<module>``."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.lineno <= line <= node.end_lineno):
            if best is None or node.lineno > best.lineno:
                best = node
    return best.name if best else "<module>"


def json_parses(path: Path, *, allowed=()) -> list[str]:
    """Calls of ``json.load``/``json.loads`` (or the bare names imported from json), except in
    the functions named in ``allowed``."""
    tree = parsed(path)
    bare = {a.asname or a.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "json"
            for a in node.names if a.name in ("load", "loads")}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted_name(node.func)
        function = enclosing_function(tree, node.lineno)
        if (name in ("json.load", "json.loads") or name in bare) and function not in allowed:
            found.append(f"line {node.lineno}, in {function}: {name}(")
    return found


def allowed_parsers(path: Path) -> set[str]:
    prefix = relative(path) + "::"
    return {key.removeprefix(prefix) for key in JSON_TEXT_PARSERS if key.startswith(prefix)}


def top_level_statements(body: list[ast.stmt]):
    """Module-level statements, looking inside the ``if``/``try``/``with`` blocks that still
    run at import time (functions and classes do not)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.With):
            yield from top_level_statements(node.body)
            yield from top_level_statements(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(handler.body for handler in node.handlers)):
                yield from top_level_statements(block)


def plotting_imports(path: Path) -> list[str]:
    found = []
    for node in top_level_statements(parsed(path).body):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: import {n}" for n in names
                  if n.split(".")[0] in PLOTTING_LIBRARIES]
    return found


def offenders(check) -> dict[str, list[str]]:
    result = {relative(p): check(p) for p in package_files()}
    return {name: found for name, found in result.items() if found}


def report(title: str, found: dict[str, list[str]]) -> str:
    lines = [title]
    for name, items in sorted(found.items()):
        lines += [f"  {name}: {item}" for item in items]
    text = "\n".join(lines)
    print(text)
    return text


def test_no_module_is_over_400_lines():
    """Past ~400 lines a module holds more than one concern; split it and name the parts."""
    lengths = {relative(p): len(p.read_text(encoding="utf-8").splitlines())
               for p in package_files()}
    long = {name: [f"{n} lines"] for name, n in lengths.items() if n > MAX_LINES}
    assert not long, report(f"modules over {MAX_LINES} lines:", long)


def test_no_private_name_is_used_across_modules():
    """A private name another module needs is part of an interface: give it a public name, or
    move it to where it is used."""
    found = offenders(private_uses)
    assert not found, report("private names used across modules:", found)


def test_package_imports_are_absolute():
    found = offenders(lambda p: [f"line {n.lineno}: from {'.' * n.level}{n.module or ''} import ..."
                                 for n in ast.walk(parsed(p))
                                 if isinstance(n, ast.ImportFrom) and n.level])
    assert not found, report("relative imports:", found)


def test_artifacts_are_parsed_only_by_the_one_json_reader():
    """``artifacts.read_json`` names the file in every error; a raw ``json.loads`` of a broken
    artifact raises a bare JSONDecodeError that says nothing of which file to fix."""
    found = {name: items for name, items in
             offenders(lambda p: json_parses(p, allowed=allowed_parsers(p))).items()
             if name != "artifacts.py"}
    assert not found, report("JSON parsed outside artifacts.read_json:", found)


@pytest.mark.parametrize("key", sorted(JSON_TEXT_PARSERS))
def test_the_json_allow_list_is_not_stale(key):
    name, function = key.split("::")
    path = PACKAGE / name
    assert path.is_file() and any(f", in {function}:" in item for item in json_parses(path)), (
        f"{function} in {name} parses no JSON any more: drop {key!r} from the list")


def test_plotting_libraries_load_only_where_figures_are_made():
    """Training and serving import this package in containers without matplotlib; a module
    that draws only sometimes imports the libraries inside the function that draws (or
    through ``figures.pyplot``)."""
    found = {name: items for name, items in offenders(plotting_imports).items()
             if name not in PLOTTING_MODULES}
    assert not found, report("matplotlib/seaborn imported at module level:", found)


def imported_after(program: str) -> set[str]:
    """Top-level packages loaded by running ``program`` in a fresh interpreter."""
    code = program + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    return set(result.stdout.split())


def test_importing_the_package_loads_no_heavy_library():
    """``python -m mlclf_utils --help`` and the runner start in a fraction of a second."""
    loaded = imported_after("import mlclf_utils")
    assert not loaded & {"torch", "transformers", "numpy", "pandas", *PLOTTING_LIBRARIES}


def test_the_documented_classifier_import_works_and_loads_no_plotting():
    loaded = imported_after("from mlclf_utils import Classifier\n"
                            "from mlclf_utils.serving.predict import Classifier as Home\n"
                            "assert Classifier is Home")
    assert not loaded & set(PLOTTING_LIBRARIES)


def test_an_unknown_package_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        mlclf_utils.no_such_name  # noqa: B018
