"""Quality on the demo's test split: the fine-tuned model against its baselines and the sweep.

    python benchmarks/quality.py --run-dir runs/<run-id> --sweep-dir runs/sweeps/<sweep-id>

Reads what the pipeline already wrote (04's report.json for the model and both baselines; the
sweep's comparison and its best combination's report.json), so the numbers here are exactly
the ones in the executed notebooks. The sweep's best is chosen on validation macro-F1, never
on test. Writes benchmarks/results/quality.json for benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

METRICS = ("macro_f1", "micro_f1", "samples_f1", "macro_precision", "macro_recall")


def _row(name: str, report: dict, reference: dict | None) -> dict:
    row = {"model": name, **{m: round(report[m], 4) for m in METRICS}}
    if reference is not None:
        row["macro_f1_vs_fine_tuned_points"] = round(100 * (report["macro_f1"] - reference["macro_f1"]), 2)
    return row


def main(argv=None) -> int:
    from mlclf_utils.runner import sweep
    from mlclf_utils.stages import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a demo run with a finished 04_evaluate")
    parser.add_argument("--sweep-dir", required=True, help="a finished sweep on the same data")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    args = parser.parse_args(argv)

    run_dir, sweep_dir = Path(args.run_dir), Path(args.sweep_dir)
    report = evaluate.read_report(run_dir)
    table, info = sweep.load(sweep_dir)
    if info["data_fingerprint"] != sweep.data_fingerprint(run_dir):
        raise SystemExit(f"{sweep_dir} was trained on other data than {run_dir}: "
                         "the comparison would be meaningless")
    if "best" not in info:
        raise SystemExit(f"{sweep_dir} has no finished combination")

    # 04 stores its comparison table by column: one per model, then the difference columns.
    comparison = {name: values for name, values in report["comparison"].items()
                  if not name.startswith("Δ") and name != "better"}
    reference = comparison[evaluate.REFERENCE]
    rows = [_row(name, values, None if name == evaluate.REFERENCE else reference)
            for name, values in comparison.items()]
    best = info["best"]["name"]
    best_report = evaluate.read_report(sweep_dir / best)  # each combination is a run directory
    values = ", ".join(f"{k}={v}" for k, v in info["best"]["values"].items())
    rows.append(_row(f"sweep's best on validation ({values}), tuned thresholds",
                     best_report["test_tuned"], reference))

    summary = sweep.summary(table).reset_index()
    sweep_rows = json.loads(summary.to_json(orient="records"))
    write_result("quality", argv, {
        "run": run_dir.name,
        "sweep": sweep_dir.name,
        "test_texts": report["test_tuned"].get("n_texts"),
        "labels": report["test_tuned"].get("n_labels"),
        "sweep_grid": info["grid"],
        "sweep_selection": "highest validation macro-F1 (thresholds tuned on validation)",
    }, rows, args.out, tables={"Class-weight sweep (test split; sorted by validation macro-F1)": sweep_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
