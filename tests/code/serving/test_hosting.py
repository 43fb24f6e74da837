"""The SageMaker export on files alone: what it copies must import without the rest of the package.

The container has no mlclf_utils installed, only the modules ``INFERENCE_MODULES`` names; one
module-level import of a module left out of that list breaks the endpoint on its first
request, long after the export looked fine.
"""

import ast
from pathlib import Path

import pytest

from mlclf_utils.serving import hosting

PACKAGE = Path(hosting.__file__).resolve().parents[1]


def module_name(relative: str) -> str:
    return "mlclf_utils." + relative.removesuffix(".py").replace("/", ".")


def package_imports(path: Path, *, top_level_only: bool) -> set[str]:
    """mlclf_utils modules ``path`` imports; ``top_level_only`` skips imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlclf_utils"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_module = PACKAGE.parent / (candidate.replace(".", "/") + ".py")
                found.add(candidate if as_module.is_file() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlclf_utils")}
    return found - {"mlclf_utils"}


@pytest.mark.parametrize("relative", hosting.INFERENCE_MODULES)
def test_copied_modules_import_only_copied_modules(relative):
    copied = {module_name(name) for name in hosting.INFERENCE_MODULES}
    imported = package_imports(PACKAGE / relative, top_level_only=True)
    assert imported <= copied, f"{relative} imports {sorted(imported - copied)} at module level"


# Imported inside functions that an endpoint never calls: Classifier.from_model_dir (03's
# folder, before a bundle exists), read_text_rows (the CLI's files), the export itself, the
# command line's file helpers that predict still answers for (predict_io), and the ONNX backend
# (endpoints run torch: model_fn never asks for backend="onnx").
NOT_ON_AN_ENDPOINT = {"mlclf_utils.modeling.encoders", "mlclf_utils.data.sources",
                      "mlclf_utils.serving.bundle", "mlclf_utils.serving.predict_io",
                      "mlclf_utils.serving.onnx_backend"}


@pytest.mark.parametrize("relative", hosting.INFERENCE_MODULES)
def test_what_inference_imports_lazily_is_copied_too(relative):
    """Classifier.load and predict_proba import calibration lazily; a calibrated bundle (04's
    default) would fail on an endpoint without it."""
    copied = {module_name(name) for name in hosting.INFERENCE_MODULES}
    lazy = package_imports(PACKAGE / relative, top_level_only=False) - NOT_ON_AN_ENDPOINT
    assert lazy <= copied, f"{relative} imports {sorted(lazy - copied)}"
