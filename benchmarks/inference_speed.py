"""Inference throughput: Classifier.predict vs a loop over transformers.pipeline.

    python benchmarks/inference_speed.py --bundle runs/<run-id>/04_evaluate/bundle [--run-dir RUN]

Same model, same texts (the demo run's test split). The baseline is what a tutorial does: a
``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")`` called
once per text. mlclf batches texts sorted by length under ``torch.inference_mode``; the int8 row
adds dynamic quantization and reports the macro-F1 it costs at the bundle's thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_result  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--run-dir", default=None, help="default: the bundle's run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_speed.json"))
    args = parser.parse_args(argv)

    from transformers import pipeline

    from mlclf_utils import artifacts
    from mlclf_utils.data import dataset
    from mlclf_utils.evaluation import metrics
    from mlclf_utils.stages import save_data
    from mlclf_utils import Classifier

    bundle = Path(args.bundle)
    run_dir = Path(args.run_dir) if args.run_dir else bundle.parents[1]
    test, label_map = dataset.load_split(run_dir / save_data.STAGE / artifacts.DATASET_DIR / "test")
    texts = list(test["text"])
    y = np.asarray(test["labels"], dtype=np.int8)

    rows = []
    classifier = Classifier.load(bundle)
    pipe = pipeline("text-classification", model=str(bundle), top_k=None,
                    function_to_apply="sigmoid", truncation=True, max_length=classifier.max_length)
    pipe(texts[0])  # warm-up
    start = time.perf_counter()
    outputs = [pipe(text) for text in texts]
    seconds = time.perf_counter() - start
    order = {name: i for i, name in enumerate(label_map.labels)}
    pipe_probs = np.zeros((len(texts), len(order)), dtype=np.float32)
    for i, out in enumerate(outputs):
        scores = out[0] if out and isinstance(out[0], list) else out
        for item in scores:
            pipe_probs[i, order[item["label"]]] = item["score"]
    rows.append({"variant": "transformers.pipeline, one text per call (baseline)",
                 "texts_per_second": round(len(texts) / seconds, 2),
                 "macro_f1_at_bundle_thresholds": round(metrics.multilabel_report(
                     y, pipe_probs, label_map.labels, classifier.thresholds)["macro_f1"], 4)})
    variants = (("Classifier.predict: batched, length-sorted, inference_mode", {}),
                ("Classifier.predict + bf16 autocast", {"bf16": True}),
                ("Classifier.predict + dynamic int8 quantization", {"quantize": True}))
    for name, options in variants:
        model = Classifier.load(bundle, **options)
        model.predict_proba(texts[:8])  # warm-up
        start = time.perf_counter()
        probs = model.predict_proba(texts, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        rows.append({"variant": name, "texts_per_second": round(len(texts) / seconds, 2),
                     "macro_f1_at_bundle_thresholds": round(metrics.multilabel_report(
                         y, probs, label_map.labels, model.thresholds)["macro_f1"], 4),
                     "max_abs_prob_diff_vs_pipeline": round(float(np.abs(probs - pipe_probs).max()), 5)})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup"] = round(row["texts_per_second"] / rows[0]["texts_per_second"], 2)
        row["macro_f1_change_points"] = round(
            100 * (row["macro_f1_at_bundle_thresholds"] - rows[0]["macro_f1_at_bundle_thresholds"]), 2)
    write_result("inference_speed", argv,
                 {"texts": len(texts), "labels": len(label_map), "batch_size": args.batch_size,
                  "max_length": classifier.max_length}, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
