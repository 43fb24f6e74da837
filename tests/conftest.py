"""Shared fixtures. Tests never touch the Hub, the real runs/ folder or real AWS."""

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_configure(config):
    # Set before any kernel starts (nbval, papermill): kernels inherit the environment.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["MLCLF_RUNS_DIR"] = tempfile.mkdtemp(prefix="mlclf-test-runs-")


@pytest.fixture(scope="session")
def smoke_csv() -> Path:
    return FIXTURES / "smoke_packages.csv"


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    from mlclf_utils import models

    return models.resolve_model_path(models.TINY_MODEL)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from mlclf_utils import models

    return models.resolve_model_path(models.DEFAULT_MODEL)


@pytest.fixture()
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("MLCLF_RUNS_DIR", str(root))
    return root


def pytest_collection_modifyitems(config, items):
    # nbval items (the reference notebooks) are notebook tests too.
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebooks)
