"""Starting a run at a later stage: the earlier stages come from a run that already made them.

The earlier stages' artifacts are brought into the new run directory by hard link where the
file system allows it (artifacts are written once and never edited, so a link is as good as a
copy), and the earlier run is never written to: a resumed run and its source can both be
trusted. A value a reused stage read is frozen with it, so the resumed run refuses to change it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlclf_utils.artifacts import MANIFEST, read_json
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.runner.parameters import RUNNER_PARAMETERS, effective_parameters, parameter_specs
from mlclf_utils.runner.runs import FINISHED, NOT_RUN, STATUS_REUSED, stage_status

# Names that two stages read with different meanings: 01's seed draws the sample and the split,
# 03's seeds the training. Changing 03's on a resumed run is legitimate.
STAGE_LOCAL = {"seed"}


def read_manifest(run_dir: Path) -> dict | None:
    """The run's manifest, or None for a run made without the runner (stepped through by hand)."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    return read_json(path, what="run manifest")


def stage_entry(manifest: dict | None, stage: str) -> dict | None:
    for entry in (manifest or {}).get("stages", []):
        if entry["stage"] == stage:
            return entry
    return None


def resume_point(source: Path, notebooks: list[Path]) -> str:
    """The first stage of ``source`` that did not finish: where a resumed run starts. A stage
    stepped through by hand in it (a fork made by hand) counts by its files, as everywhere."""
    if read_manifest(source) is None:
        raise ParameterError("--resume", str(source),
                             f"has no {MANIFEST} (it was not made by `run`); say where to start "
                             "with --from")
    for notebook in notebooks:
        if stage_status(source, notebook.stem) not in FINISHED:
            return notebook.stem
    raise ParameterError("--resume", str(source),
                         "every stage finished; pass --from STAGE to run a stage again")


def check_reusable(source: Path, stages: list[str], *, advice: str | None = None) -> None:
    """Every stage to be taken from ``source`` finished there and left its artifacts.

    Finished as ``runs.stage_status`` judges it, the manifest's entry or else the stage's files:
    a stage stepped through by hand in a run with a manifest (a fork) has no entry, and reading
    that as "did not run" refused to take it from a run that holds it.
    """
    for stage in stages:
        status = stage_status(source, stage)
        folder = Path(source) / stage
        if status not in FINISHED:
            why = f"that stage {'did not run' if status == NOT_RUN else 'ended ' + status} there"
        elif not folder.is_dir() or not any(folder.iterdir()):
            why = f"{folder} holds no artifacts"
        else:
            continue
        number = stage.split("_", 1)[0]
        raise MlclfError(f"cannot take {stage} from {source}: {why}\n  -> "
                         + (advice or f"run it again: python -m mlclf_utils run --resume "
                            f"{source} --from {number}, or take it from a run where it finished"))


def _link_or_copy(src, dst) -> None:
    """A hard link where possible (artifacts are written once, never edited), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reuse_stages(source: Path, run_dir: Path, stages: list[str]) -> list[dict]:
    """Bring the artifacts of ``stages`` from an earlier run into ``run_dir``; the manifest
    entries returned say where they came from, through any number of resumes."""
    check_reusable(source, stages)
    manifest = read_manifest(source)
    entries = []
    for stage in stages:
        shutil.copytree(Path(source) / stage, run_dir / stage, copy_function=_link_or_copy,
                        symlinks=True)
        executed = Path(source) / f"{stage}.ipynb"
        if executed.exists():
            _link_or_copy(executed, run_dir / executed.name)
        earlier = stage_entry(manifest, stage) or {}
        entries.append({"stage": stage, "status": STATUS_REUSED,
                        "from_run": earlier.get("from_run", Path(source).name),
                        "from_path": earlier.get("from_path", str(Path(source).resolve())),
                        "parameters": earlier.get("parameters")})
    return entries


def check_resume_parameters(params: dict, source: Path, reused: list[Path],
                            running: list[Path] = ()) -> None:
    """A value a reused stage read cannot change: that stage will not run again.

    A parameter that only 01 declares (the tokenizer's model, say) is read by the later stages
    from 01's files, so a resumed run refuses a new value for it: 03 must train on the tokens
    01 produced. A name that a stage about to run declares is that stage's own (04's
    batch_size is its inference batch, whatever 03 trained with). A stage stepped through by
    hand recorded no values, so a value given for it cannot be checked, and is refused rather
    than compared with the defaults, which it may not have used.
    """
    manifest = read_manifest(source) or {}
    own = set().union(*(parameter_specs(nb) for nb in running))
    for notebook in reused:
        entry = stage_entry(manifest, notebook.stem)
        declared = parameter_specs(notebook)
        given = sorted(set(params) & set(declared) - STAGE_LOCAL - RUNNER_PARAMETERS - own)
        if entry is None or ("parameters" in entry and entry["parameters"] is None):
            if given:  # by hand, here or in the run it was taken from: nothing was recorded
                raise ParameterError(
                    given[0], params[given[0]],
                    f"cannot be checked: {notebook.stem}, taken from {source}, was stepped "
                    "through by hand and recorded no parameters; leave it out (its files are "
                    "taken as they are), or resume from that stage to run it with this value")
            continue
        used = entry.get("parameters")
        if used is None:  # a manifest older than per-stage parameters: the run's, on the defaults
            used = {k: v for k, v in manifest.get("parameters", {}).items() if k in declared}
        used = effective_parameters(notebook, used)
        for name in given:
            if params[name] != used[name]:
                raise ParameterError(
                    name, params[name],
                    f"was {used[name]!r} in {notebook.stem}, which is taken from {source}; start a "
                    "new run (or resume from that stage) to change it")
