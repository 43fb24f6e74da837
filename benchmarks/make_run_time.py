"""`make run` from a fresh clone, install excluded: total and per-stage wall time.

    python benchmarks/make_run_time.py [--install] [--param NAME VALUE ...] [--to STAGE]
    python benchmarks/make_run_time.py --from-run runs/<run-id>   # re-read a finished run

Clones HEAD (committed work only) into a temporary folder and times there what `make run` does
after installing: `python -m mlclf_utils demo-data` (which fetches the apt lists it needs),
then `python -m mlclf_utils run`. By default it reuses this checkout's venv, with the clone
first on PYTHONPATH so that the clone's code runs (checked before timing), and never runs
`make` there: the clone's fresh timestamps would make `make` reinstall into the shared venv.
`--install` instead runs `make install` in the clone (a venv of its own, not timed) and times
`make run` itself. Per-stage seconds come from the run's manifest.json, which the runner writes
as each stage ends. Writes benchmarks/results/make_run.json for benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

# What the Makefile exports for every target (Makefile, top): the same environment here.
MAKE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def stage_rows(run_dir: Path) -> list[dict]:
    """One row per stage of a run, from its manifest.json: stage, status, seconds, minutes."""
    from mlclf_utils import artifacts

    manifest = artifacts.read_json(Path(run_dir) / "manifest.json", what="run manifest",
                                   hint="the runner writes it when the run starts")
    rows = []
    for entry in manifest.get("stages", []):
        seconds = entry.get("seconds")
        rows.append({"step": entry["stage"], "status": entry.get("status"),
                     "seconds": None if seconds is None else round(float(seconds), 1),
                     "minutes": None if seconds is None else round(float(seconds) / 60, 2)})
    return rows


def complete(rows: list[dict], overridden: bool) -> bool:
    """Whether the rows time a real `make run`: all five stages finished, defaults kept."""
    from mlclf_utils import artifacts

    done = {r["step"].strip().removeprefix("stage ") for r in rows if r.get("status") == "ok"}
    return not overridden and done >= set(artifacts.STAGES)


def newest_run(runs_dir: Path, before: set[str]) -> Path:
    made = [p for p in runs_dir.iterdir() if p.is_dir() and p.name not in before
            and (p / "manifest.json").is_file()] if runs_dir.is_dir() else []
    if len(made) != 1:
        raise SystemExit(f"expected one new run in {runs_dir}, found {[p.name for p in made]}")
    return made[0]


def timed(command: list[str], cwd: Path, env: dict) -> float:
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True)
    return time.perf_counter() - start


def measure(clone: Path, args) -> tuple[list[dict], Path, str]:
    """Time the steps in ``clone``; returns the rows, the run directory and how it ran."""
    env = {**os.environ, **MAKE_ENV}
    env.pop("MLCLF_RUNS_DIR", None)  # the clone's own runs/, as a fresh clone would use
    run_args = [a for name, value in args.param for a in ("-p", name, value)]
    run_args += ["--to", args.to] if args.to else []
    runs_dir = clone / "runs"
    before = {p.name for p in runs_dir.iterdir()} if runs_dir.is_dir() else set()
    rows = []
    if args.install:
        subprocess.run(["make", "install"], cwd=clone, env=env, check=True)  # not timed
        how = "make install (not timed), then make run in the clone"
        extra = ["RUN_ARGS=" + " ".join(run_args)] if run_args else []
        rows.append({"step": "make run", "seconds": round(timed(["make", "run", *extra], clone,
                                                               env), 1)})
    else:
        python = str(Path(args.python).absolute())
        env["PYTHONPATH"] = os.pathsep.join([str(clone), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
        where = subprocess.run([python, "-c", "import mlclf_utils; print(mlclf_utils.__file__)"],
                               cwd=clone, env=env, check=True, capture_output=True, text=True)
        if not Path(where.stdout.strip()).resolve().is_relative_to(clone.resolve()):
            raise SystemExit(f"the clone's package does not shadow the installed one: "
                             f"{where.stdout.strip()}")
        shown = os.path.relpath(args.python, ROOT) if args.python.startswith(str(ROOT)) else args.python
        how = f"this checkout's venv ({shown}) with the clone first on PYTHONPATH"
        for step in (["demo-data"], ["run", *run_args]):
            seconds = timed([python, "-m", "mlclf_utils", *step], clone, env)
            rows.append({"step": f"python -m mlclf_utils {step[0]}", "seconds": round(seconds, 1)})
    run_dir = newest_run(runs_dir, before)
    return rows, run_dir, how


def result_rows(step_rows: list[dict], run_dir: Path) -> list[dict]:
    """The timed commands, then the stages of the run, then the total of the commands."""
    rows = [{**r, "minutes": round(r["seconds"] / 60, 2)} for r in step_rows]
    rows += [{**r, "step": f"  stage {r['step']}"} for r in stage_rows(run_dir)]
    total = sum(r["seconds"] for r in step_rows)
    rows.append({"step": "total (install excluded)", "seconds": round(total, 1),
                 "minutes": round(total / 60, 2)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true",
                        help="run `make install` in the clone (a venv of its own, not timed) and "
                             "time `make run`")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="the interpreter of an installed venv to reuse")
    parser.add_argument("--param", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a run parameter (for a quick check only)")
    parser.add_argument("--to", help="last stage (for a quick check only)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    parser.add_argument("--from-run", help="only re-read a finished run's manifest (no clone)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "make_run.json"))
    args = parser.parse_args(argv)

    if args.from_run:
        run_dir = Path(args.from_run)
        rows = stage_rows(run_dir)
        total = sum(r["seconds"] or 0 for r in rows)
        rows.append({"step": "total of the stages", "seconds": round(total, 1),
                     "minutes": round(total / 60, 2)})
        settings = {"run": run_dir.name, "how": "stages re-read from an existing run's manifest "
                    "(demo-data not timed)", "complete": complete(rows, False)}
        write_result("make_run_time", argv, settings, rows, args.out)
        return 0

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    holder = Path(tempfile.mkdtemp(prefix="mlclf-make-run-"))
    clone = holder / "mlclf"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    step_rows, run_dir, how = measure(clone, args)
    rows = result_rows(step_rows, run_dir)
    settings = {"commit": commit[:12], "run": run_dir.name, "how": how,
                "parameters": {name: value for name, value in args.param} or "defaults",
                "complete": complete(rows, bool(args.param or args.to))}
    write_result("make_run_time", argv, settings, rows, args.out)
    if args.keep:
        print(f"clone kept at {clone}")
    else:
        shutil.rmtree(holder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
