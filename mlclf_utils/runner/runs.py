"""Run directories: every pipeline run writes into its own ``runs/<run-id>/`` and never reuses one.

Stages talk only through files here (see docs/artifacts.md). ``runs/LATEST`` names the newest
run of any kind. When a notebook is stepped through by hand with ``run_dir = None``, 01 also
records its new run in ``runs/SESSION-<user>``, which nothing else moves: the later notebooks
stepped through by hand continue that run even while batch runs (the CLI, papermill) start
others. Re-running 02-05 by hand on a run that already holds that stage's artifacts starts a new
run that reuses the earlier stages by hard link, as ``run --resume`` does.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.artifacts import MANIFEST, STAGES, read_json, write_json
from mlclf_utils.errors import MlclfError, ParameterError, StepRefused
from mlclf_utils.runner.injected_parameters import (  # noqa: F401 (runs.check_injected_parameters)
    check_injected_parameters, under_papermill)
from mlclf_utils.versions import TRACKED_PACKAGES, package_versions  # noqa: F401 - runs.package_versions is used

LATEST = "LATEST"
# The run that this user's 01, stepped through by hand, started last; papermill and the runner
# never move it (runs/SESSION-<user>).
SESSION_PREFIX = "SESSION-"
# A stage's status in manifest.json (and a sweep combination's in sweep.json).
STATUS_OK, STATUS_REUSED, STATUS_FAILED = "ok", "reused", "failed"
STATUS_RUNNING, STATUS_INTERRUPTED = "running", "interrupted"
FINISHED = (STATUS_OK, STATUS_REUSED)
NOT_RUN = "not run"


def project_root(start: Path | None = None) -> Path | None:
    """The checkout in use: found from the working directory, else from this package's home.

    An editable install (``pip install -e .``) lives in the checkout, so the pipeline works
    from any directory; a wheel install has no checkout and gets None.
    """
    here = (start or Path.cwd()).resolve()
    package_home = Path(__file__).resolve().parents[2]
    for folder in (here, *here.parents, package_home):
        if (folder / "pyproject.toml").exists() and (folder / "mlclf_utils").is_dir():
            return folder
    return None


def runs_root(root: str | Path | None = None) -> Path:
    # absolute, for the same reason as ``--run-dir``: the stages' kernels start elsewhere
    if root is not None:
        return Path(root).resolve()
    if os.environ.get("MLCLF_RUNS_DIR"):
        return Path(os.environ["MLCLF_RUNS_DIR"]).resolve()
    project = project_root()
    return (project or Path.cwd()) / "runs"


def new_run_id() -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def new_run_dir(root: str | Path | None = None, *, session: bool = False) -> Path:
    """Create a fresh run directory and point ``LATEST`` at it; never reuses an existing one.

    ``session=True`` (a notebook stepped through by hand) also points this user's session
    pointer at it; batch runs leave that pointer alone.
    """
    path = _create_run_dir(runs_root(root))
    _point_at(path, session=session)
    return path


def _create_run_dir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    while True:
        path = base / new_run_id()
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - two runs in the same second and token
            continue


def _point_at(path: Path, *, session: bool) -> None:
    _point(path.parent / LATEST, path)
    if session:
        _point(session_pointer(path.parent), path)


def _point(pointer: Path, run: Path) -> None:
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}")
    tmp.write_text(run.name + "\n")
    os.replace(tmp, pointer)


def _user() -> str:
    try:
        name = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the uid will do
        name = str(os.getuid())
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "user"


def session_pointer(root: str | Path | None = None) -> Path:
    """``runs/SESSION-<user>``: the run this user's 01, stepped through by hand, started."""
    return runs_root(root) / f"{SESSION_PREFIX}{_user()}"


def session_run_dir(root: str | Path | None = None) -> Path | None:
    """The run this user's 01 stepped through by hand started last, or None."""
    pointer = session_pointer(root)
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not path.is_dir():
        raise StepRefused(f"{pointer} names {path.name}, which does not exist: run "
                          "notebooks/01_preprocess.ipynb again (it starts a new run)")
    return path


def latest_run_dir(root: str | Path | None = None) -> Path:
    base = runs_root(root)
    pointer = base / LATEST
    if not pointer.exists():
        raise StepRefused(
            f"no run found under {base}: run notebooks/01_preprocess.ipynb first (or pass run_dir)"
        )
    path = base / pointer.read_text().strip()
    if not path.is_dir():
        raise StepRefused(f"{pointer} names {path.name}, which does not exist; run 01 again")
    return path


# The run this kernel used last, so that a notebook re-run in the same kernel can say when the
# run under it changed.
_KERNEL_RUN: dict[str, Path] = {}


def resolve_run_dir(run_dir: str | Path | None, stage: str) -> Path:
    """The run directory a stage should use, announced in one line: given, new (01), or (02-05)
    the run this user's 01 started by hand (under papermill: the latest run).

    A later stage refuses a run whose previous stage did not finish, before it writes anything:
    otherwise it fails on a missing file and leaves an empty folder in the failed run. Stepping
    through 02-05 again on a run that already holds the stage's artifacts starts a new run that
    reuses the earlier stages by hard link, and says so.
    """
    if stage not in STAGES:
        raise ParameterError("stage", stage, f"choose one of {STAGES}")
    if run_dir in (None, ""):
        by_hand = not under_papermill()
        if stage == artifacts.PREPROCESS:
            path = new_run_dir(session=by_hand)
            print(f"run: {path.name} (new{'; 02-05 stepped through by hand continue it' if by_hand else ''})")
            return _remember(stage, path)
        path, whose = None, "the latest run's"
        if by_hand:
            path = session_run_dir()
            whose = "your run's"
        if path is None:
            path = latest_run_dir()
            whose = "the latest run's"
            note = "the latest run" + (
                f" (no run was started by stepping through 01 here: {session_pointer().name} "
                "does not exist)" if by_hand else "")
        else:
            note = f"the run your 01_preprocess started, as {session_pointer().name} records"
        _require_previous_stage(path, stage, whose)
        if _holds_artifacts(path / stage):
            source = path
            path = fork_run(source, stage, session=by_hand)
            print(f"{stage} already ran in {source.name}; a run never overwrites another, so this "
                  f"is a new run, {path.name}, with {', '.join(STAGES[:STAGES.index(stage)])} "
                  f"reused from {source.name} by hard link")
            note = f"new, from {source.name}"
        print(f"run: {path.name} ({note})")
        _name_mismatches(stage, path)
        return _remember(stage, path)
    path = Path(run_dir)
    if stage != artifacts.PREPROCESS:
        if not path.is_dir():
            raise ParameterError("run_dir", str(run_dir), "no such run directory")
        _require_previous_stage(path, stage, "the run's")
    path.mkdir(parents=True, exist_ok=True)
    print(f"run: {path.name} (run_dir={str(run_dir)!r})")
    return _remember(stage, path)


def _remember(stage: str, path: Path) -> Path:
    _KERNEL_RUN["run"] = path
    return path


def _name_mismatches(stage: str, path: Path) -> None:
    """Say so when another run is the newest, or when this kernel used another run before."""
    try:
        latest = latest_run_dir()
    except MlclfError:
        latest = None
    if latest is not None and latest.resolve() != path.resolve():
        print(f"note: runs/{LATEST} names {latest.name}, a newer run started elsewhere; this "
              f"notebook keeps to {path.name} (pass run_dir to choose another)")
    before = _KERNEL_RUN.get("run")
    if before is not None and before.resolve() != path.resolve():
        print(f"note: this kernel used {before.name} before; {stage} now uses {path.name}")


def _holds_artifacts(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def fork_run(source: Path, stage: str, *, session: bool = False) -> Path:
    """A new run holding ``source``'s stages before ``stage`` as hard links (as ``--resume``
    does), with a manifest that records them as reused. Checked first, pointed at last: a
    refused or failed fork leaves no folder and moves no pointer (no empty run to continue)."""
    from mlclf_utils.runner.resume import check_reusable, reuse_stages

    earlier = list(STAGES[:STAGES.index(stage)])
    try:
        check_reusable(source, earlier, advice="step through that stage again first, or pass "
                       f"run_dir= a run where it finished ({stage} did not start)")
    except MlclfError as exc:
        raise StepRefused(str(exc)) from None
    path = _create_run_dir(source.parent)
    try:
        entries = reuse_stages(source, path, earlier)
        write_json(path / MANIFEST, {
            "run_id": path.name, "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "git": git_commit(), "packages": package_versions(), "parameters": {},
            "overrides": {}, "resumed_from": str(source.resolve()), "to": None,
            "by_hand": True, "stages": entries})
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    _point_at(path, session=session)
    return path


def rerun_command(run_dir: str | Path, stage: str) -> str:
    """The command that runs ``stage`` again on ``run_dir``'s earlier stages, in a new run."""
    number = stage.split("_", 1)[0]
    return f"python -m mlclf_utils run --resume {run_dir} --from {number} --to {number}"


# What a stage leaves for the next one, for runs without a manifest (stepped through by hand or
# with papermill directly): 01 and 02 write these last. Later stages may legitimately leave
# their model elsewhere (a SageMaker job), so only their folder is required.
STAGE_OUTPUTS = {artifacts.PREPROCESS: (artifacts.TABLE, artifacts.LABEL_MAP,
                                        artifacts.PREPROCESS_CONFIG),
                 artifacts.SAVE_DATA: (artifacts.CHANNELS,),
                 artifacts.EVALUATE: (artifacts.REPORT,)}  # 04 writes report.json last


def stage_status(run_dir: str | Path, stage: str) -> str:
    """``ok``/``reused``/``failed``/``running``/``interrupted`` from the manifest; without a
    manifest entry, ``ok`` when the stage left its outputs, else what is missing. A stage stepped
    through by hand never records itself (nothing runs after its last cell), so its files decide
    even in a run with a manifest (a fork); whatever asks whether a stage finished asks here."""
    path = Path(run_dir)
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            entries = read_json(manifest, what="run manifest").get("stages", [])
        except (OSError, ValueError, AttributeError):  # a torn manifest: judge by the files
            entries = []
        for entry in entries:
            if entry.get("stage") == stage:
                return str(entry.get("status"))
    folder = path / stage
    if not folder.is_dir():
        return NOT_RUN
    if not any(folder.iterdir()):  # made by its first cell, then stopped
        return f"incomplete: {stage} is empty"
    missing = [name for name in STAGE_OUTPUTS.get(stage, ()) if not (folder / name).exists()]
    if missing:
        return f"incomplete: no {stage}/{missing[0]}"
    return STATUS_OK


def _require_previous_stage(run_dir: Path, stage: str, whose: str) -> None:
    previous = STAGES[STAGES.index(stage) - 1]
    status = stage_status(run_dir, previous)
    if status not in FINISHED:
        advice = unfinished_advice(previous, stage, status, _holds_artifacts(run_dir / previous))
        raise StepRefused(f"{whose} {previous} did not finish (status {status}): {run_dir}\n"
                          f"  -> {advice}; {stage} did not start")


def unfinished_advice(previous: str, stage: str, status: str, holds_files: bool) -> str:
    """What to do about an unfinished ``previous``: a stage may still be at work elsewhere, and
    telling its user to run it again would start a second one beside it."""
    elsewhere = "or pass run_dir= a run where it finished"
    if status == STATUS_RUNNING:  # the runner's record; a killed runner never records the end
        return (f"{previous} is still running in a batch run, or that run was stopped before it "
                f"could record the end: wait for it to finish, then run {stage} again; if it "
                f"was stopped, run {previous} again (a new run), {elsewhere}")
    if not holds_files:
        return f"run {previous} first, {elsewhere}"
    if status.startswith("incomplete"):  # stepped through by hand, perhaps still in a kernel
        return (f"if {previous} is still being stepped through in another kernel, finish it "
                f"there first; else run {previous} again (a new run), {elsewhere}")
    return f"run {previous} again (a new run), {elsewhere}"


def stage_dir(run_dir: str | Path, stage: str, *, create: bool = True) -> Path:
    """The stage's artifact folder; refuses to write into one that already holds files."""
    path = Path(run_dir) / stage
    if create:
        if path.exists() and any(path.iterdir()):
            if stage == artifacts.PREPROCESS:
                advice = "set run_dir = None: 01 then starts a new run"
            else:
                advice = (f"to run {stage} again on this run's earlier stages, in a new run that "
                          f"reuses them by hard link: {rerun_command(run_dir, stage)} (add "
                          "-p NAME VALUE for what you changed); stepping through by hand with "
                          "run_dir = None does the same for the run your 01 started")
            raise StepRefused(f"{path} already holds artifacts; a run never overwrites another.\n"
                              f"  -> {advice}")
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise MlclfError(f"{path} not found: run the {stage} stage first")
    return path


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
