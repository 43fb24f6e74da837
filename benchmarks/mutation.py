"""Mutation testing of the core numeric modules, and docs/mutation.md from its results.

    python benchmarks/mutation.py [--label after2] [--max-children 2]
    python benchmarks/mutation.py --report-only

mutmut (``[tool.mutmut]`` in pyproject.toml says what it mutates and which tests it runs) works
in a scratch copy of the checkout, so the tree here is never touched and a run elsewhere in the
tree (the test suite, a notebook) is not disturbed. Each run writes
``benchmarks/results/mutation/<label>.json``; ``before`` is the suite as it stood before issue
18 added tests for the survivors, ``after`` the suite after the first round of them and
``after2`` after the second (the default: the current suite). The report shows every label
found, in that order, so nothing in it is typed by hand. It runs on demand (``make
mutation``), never in ``make test``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, command, machine  # noqa: E402

OUT_DIR = ROOT / "benchmarks" / "results" / "mutation"  # a folder: report.py globs results/*.json
REPORT = ROOT / "docs" / "mutation.md"
LABELS = ("before", "after", "after2")  # in the order the report shows them
# Survived or never tested: a mutant that no test notices. Everything else counts as found.
UNCAUGHT = ("survived", "no tests")


def mutmut_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def scratch_copy(dest: Path, config: dict) -> None:
    """Only what the selected tests need: the package, the shared conftest, the test files."""
    shutil.copytree(ROOT / "mlclf_utils", dest / "mlclf_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    (dest / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "conftest.py", dest / "tests" / "conftest.py")
    for test_file in config["pytest_add_cli_args_test_selection"]:
        (dest / test_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / test_file, dest / test_file)


def mutmut_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mutmut")
    except PackageNotFoundError:
        sys.exit("mutmut is not installed: run `make mutation` (it installs the `mutation` extra)")


def collect(work: Path, config: dict) -> dict[str, dict]:
    """Per mutated module: counts by status and the uncaught mutants with their diffs."""
    here = Path.cwd()
    os.chdir(work)  # mutmut reads its config and the mutants/ folder from the working directory
    try:
        return _collect(work, config)
    finally:
        os.chdir(here)


def _collect(work: Path, config: dict) -> dict[str, dict]:
    from mutmut.stats import status_by_exit_code

    modules = {}
    for module in config["only_mutate"]:
        meta = work / "mutants" / f"{module}.meta"
        if not meta.exists():
            raise SystemExit(f"mutmut wrote no results for {module} ({meta} is missing)")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts: dict[str, int] = {}
        uncaught = {}
        for name, code in sorted(codes.items()):
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status in UNCAUGHT:
                uncaught[name] = {"status": status, "diff": show(name, module)}
        total = sum(counts.values())
        missed = sum(counts.get(s, 0) for s in UNCAUGHT)
        modules[module] = {"mutants": total, "by_status": dict(sorted(counts.items())),
                           "uncaught": missed,
                           "survival_rate": round(missed / total, 4) if total else None,
                           "uncaught_mutants": uncaught}
    return modules


def show(name: str, module: str) -> str:
    """The mutant's changed lines (mutmut's own diff, without its headers)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=module)
    return "\n".join(line for line in diff.splitlines()
                     if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))


def mutmut_exe() -> str:
    return str(Path(sys.executable).with_name("mutmut"))


def run(label: str, max_children: int, argv: list[str]) -> Path:
    version = mutmut_version()
    config = mutmut_config()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="mlclf-mutation-"))
    scratch_copy(work, config)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    mutmut_command = [mutmut_exe(), "run", "--max-children", str(max_children)]
    print(f"mutmut in {work}: {' '.join(mutmut_command)}", flush=True)
    completed = subprocess.run(mutmut_command, cwd=work, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"mutmut exited with code {completed.returncode}; its files are in {work}")
    modules = collect(work, config)
    shutil.rmtree(work)  # kept above when something failed, for a look
    total = sum(m["mutants"] for m in modules.values())
    missed = sum(m["uncaught"] for m in modules.values())
    result = {
        "label": label,
        "command": command("mutation", argv),
        "mutmut_command": "mutmut run --max-children " + str(max_children),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mutmut": version,
        "tests": config["pytest_add_cli_args_test_selection"],
        "wall_time_s": round(time.time() - started, 1),
        "mutants": total,
        "uncaught": missed,
        "survival_rate": round(missed / total, 4) if total else None,
        "modules": modules,
        "machine": machine(),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def function_name(mutant: str) -> str:
    """``mlclf_utils.modeling.loss.x_naive_bce__mutmut_3`` -> ``naive_bce``; methods as ``Class.method``."""
    mangled = mutant.rsplit(".", 1)[-1].split("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        return mangled.removeprefix("xǁ").replace("ǁ", ".")
    return mangled.removeprefix("x_")


def _rate(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def render() -> str:
    results = {label: json.loads((OUT_DIR / f"{label}.json").read_text())
               for label in LABELS if (OUT_DIR / f"{label}.json").exists()}
    if not results:
        raise SystemExit(f"no results in {OUT_DIR}: run python benchmarks/mutation.py first")
    lines = [
        "# Mutation testing of the core numeric modules",
        "",
        "<!-- Generated by benchmarks/mutation.py from benchmarks/results/mutation/*.json. "
        "Do not edit by hand. -->",
        "",
        "mutmut changes one thing at a time in `loss`, `class_weights`, `thresholds` and "
        "`metrics` (an operator, a constant, an argument) and runs their unit tests against each "
        "change. A mutant that no test fails on has *survived*: either the tests miss a real "
        "bug of that shape, or the change is equivalent (it cannot alter any result). "
        "*No tests* means no selected test runs the mutated function. The survival rate counts "
        "both. `make mutation` re-measures *after2* and regenerates this page; it runs on "
        "demand, never in `make test`.",
        "",
        "*Before* is the suite before the tests written for the survivors; *after* is the "
        "suite with the first round of them; *after2* adds the second round (error values "
        "and names, bounds, save/load round trips, numeric edge cases).",
        "",
    ]
    for label, result in results.items():
        lines += [f"## {label.capitalize()}", "",
                  f"- command: `{result['command']}` (in a scratch copy: "
                  f"`{result['mutmut_command']}`, mutmut {result['mutmut']})",
                  f"- date: {result['date']}; wall time {result['wall_time_s']:.0f} s",
                  f"- tests: {', '.join('`' + t + '`' for t in result['tests'])}",
                  f"- machine: {result['machine'].get('cpus')} CPUs, Python "
                  f"{result['machine'].get('python')}, torch {result['machine'].get('torch')}",
                  ""]
    lines += ["## Survivors per module", "",
              "| module | " + " | ".join(f"{label}: mutants | {label}: uncaught | {label}: survival rate"
                                        for label in results) + " |",
              "|---|" + "---|---|---|" * len(results)]
    modules = list(dict.fromkeys(m for r in results.values() for m in r["modules"]))
    for module in modules:
        cells = []
        for result in results.values():
            m = result["modules"].get(module)
            cells += ["", "", ""] if m is None else [str(m["mutants"]), str(m["uncaught"]),
                                                     _rate(m["survival_rate"])]
        lines.append(f"| `{module}` | " + " | ".join(cells) + " |")
    cells = []
    for result in results.values():
        cells += [str(result["mutants"]), str(result["uncaught"]), _rate(result["survival_rate"])]
    lines.append("| **all** | " + " | ".join(f"**{c}**" for c in cells) + " |")
    lines.append("")
    lines += ["## Status counts", "",
              "| run | module | " + " | ".join(["status", "count"]) + " |", "|---|---|---|---|"]
    for label, result in results.items():
        for module, m in result["modules"].items():
            for status, count in m["by_status"].items():
                lines.append(f"| {label} | `{module}` | {status} | {count} |")
    lines.append("")
    last_label, last = list(results.items())[-1]
    lines += [f"## Uncaught mutants by function ({last_label})", "",
              "Where the uncaught mutants sit. The tests written for issue 18 target survivors "
              "in the numeric paths (loss values, weights, thresholds, metric edge cases). Most "
              "of the rest change error-message wording or plotting code, or are equivalent "
              "(a dtype numpy infers anyway, a keyword set to its default); they were not all "
              "reviewed one by one. Each mutant's diff is in "
              f"`benchmarks/results/mutation/{last_label}.json` (`uncaught_mutants`).", "",
              "| module | function | uncaught |", "|---|---|---|"]
    for module, m in last["modules"].items():
        counts: dict[str, int] = {}
        for name in m["uncaught_mutants"]:
            function = function_name(name)
            counts[function] = counts.get(function, 0) + 1
        for function, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"| `{module}` | `{function}` | {count} |")
    lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", choices=LABELS, default=LABELS[-1],
                        help="which result this run is: before (the baseline), after or after2 "
                             "(the rounds of tests for the survivors)")
    parser.add_argument("--max-children", type=int, default=2,
                        help="mutants tested side by side (each with OMP_NUM_THREADS=1)")
    parser.add_argument("--report-only", action="store_true",
                        help="only regenerate docs/mutation.md from the stored results")
    args = parser.parse_args(argv)
    if not args.report_only:
        run(args.label, args.max_children, sys.argv[1:] if argv is None else argv)
    REPORT.write_text(render())
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
