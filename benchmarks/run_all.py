"""Everything `make bench` does, in order: a demo run, the class-weight sweep, each benchmark,
then docs/benchmarks.md.

    python benchmarks/run_all.py [--run-dir runs/<run-id>] [--sweep-dir runs/sweeps/<sweep-id>]

Without --run-dir it runs stages 01-04 on the demo data first (about 20 minutes on 2 cores);
without --sweep-dir it sweeps the four pos_weight strategies on that run (about 40 minutes).
Pass both to re-measure only the benchmarks (about 15 minutes). Each step is a separate
process, and any failure stops the chain before the report is rewritten.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = "none,ratio,sqrt,damped"


def step(*args: str, capture: bool = False) -> str:
    command = [sys.executable, *args]
    print("$", " ".join(command), flush=True)
    if capture:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(done.stdout, end="")
    else:
        done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"stopped: {' '.join(command)} exited with {done.returncode}")
    return done.stdout if capture else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="a finished demo run (01-04) to measure")
    parser.add_argument("--sweep-dir", help="a finished sweep on that run's data")
    parser.add_argument("--jobs", type=int, default=2, help="parallel sweep combinations")
    args = parser.parse_args(argv)

    run_dir = args.run_dir
    if run_dir is None:
        out = step("-m", "mlclf_utils", "run", "--to", "04", "--no-progress", capture=True)
        run_dir = re.search(r"^run finished: (.+)$", out, re.M).group(1)
    sweep_dir = args.sweep_dir
    if sweep_dir is None:
        out = step("-m", "mlclf_utils", "sweep", "--base", run_dir, "--grid",
                   f"pos_weight_strategy={STRATEGIES}", "--jobs", str(args.jobs), "--no-progress",
                   capture=True)
        sweep_dir = re.search(r"^sweep finished: (.+)$", out, re.M).group(1)
    run, sweep = Path(run_dir), Path(sweep_dir)
    step("benchmarks/quality.py", "--run-dir", str(run), "--sweep-dir", str(sweep))
    step("benchmarks/threshold_robustness.py", "--run-dir", str(run))
    step("benchmarks/train_throughput.py", "--run-dir", str(run), "--noise-seed", "43")
    step("benchmarks/bf16_quality.py", "--run-dir", str(run))
    step("benchmarks/inference_speed.py", "--bundle", str(run / "04_evaluate" / "bundle"),
         "--run-dir", str(run), "--repeats", "3")  # best of 3: one pass moved rows by 20 %
    step("benchmarks/held_out_pool.py", "--run-dir", str(run))
    step("benchmarks/long_documents.py", "--run-dir", str(run), "--work-dir",
         str(Path(tempfile.gettempdir()) / "mlclf-long-documents" / run.name))
    step("benchmarks/explain_speed.py", "--model-dir", str(run / "03_train" / "model"),
         "--run-dir", str(run), "--n", "40", "--true-labels")
    step("benchmarks/report.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
