"""Inference throughput: Classifier (torch and ONNX Runtime) vs a loop over transformers.pipeline.

    python benchmarks/inference_speed.py --bundle runs/<run-id>/04_evaluate/bundle [--run-dir RUN]

Same model, same texts (the demo run's test split). The baseline is what a tutorial does: a
``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")`` called
once per text. mlclf batches texts sorted by length; the torch rows run under
``torch.inference_mode`` (fp32, bf16 autocast, dynamic int8), the ONNX rows run the bundle's
model exported by ``serving.onnx_export`` (plain export, fused by onnxruntime's optimizer, and
int8: dynamic per tensor, dynamic per channel, static with calibration on validation texts).

Every row's probabilities go through the bundle's calibration, the pipeline's too (it cannot
apply it itself), so macro-F1 is read at the bundle's tuned thresholds on one scale. Issue 14's
bar: at least 3x the pipeline's texts/s within 0.5 macro-F1 points of it. The given bundle is
never written to: the ONNX variants are exported into a temporary copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import write_result  # noqa: E402

BAR_SPEEDUP, BAR_POINTS = 3.0, 0.5


def pipeline_probs(bundle: Path, texts: list[str], labels: list[str], max_length: int):
    """The baseline: one pipeline call per text, raw sigmoid outputs in label order."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(bundle), top_k=None,
                    function_to_apply="sigmoid", truncation=True, max_length=max_length)
    pipe(texts[0])  # warm-up
    start = time.perf_counter()
    outputs = [pipe(text) for text in texts]
    seconds = time.perf_counter() - start
    order = {name: i for i, name in enumerate(labels)}
    probs = np.zeros((len(texts), len(labels)), dtype=np.float32)
    for i, out in enumerate(outputs):
        scores = out[0] if out and isinstance(out[0], list) else out
        for item in scores:
            probs[i, order[item["label"]]] = item["score"]
    return probs, seconds


def timed(classifier, texts: list[str], batch_size: int, repeats: int):
    """Probabilities and the best of ``repeats`` timed passes (after a warm-up)."""
    classifier.predict_proba(texts[:8])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        probs = classifier.predict_proba(texts, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return probs, best


def static_int8(src: Path, dst: Path, classifier, texts: list[str], batch_size: int) -> None:
    """Static int8 (QDQ, per channel): activation ranges calibrated on ``texts``."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    batches = []
    for i in range(0, len(texts), batch_size):
        batch = classifier.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                     max_length=classifier.max_length, return_tensors="np")
        batches.append((batch["input_ids"].astype(np.int64),
                        batch["attention_mask"].astype(np.int64)))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"input_ids": ids, "attention_mask": mask} for ids, mask in batches])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--run-dir", default=None, help="default: the bundle's run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch and ONNX Runtime threads (the same for every row)")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per row; best kept")
    parser.add_argument("--limit", type=int, default=None, help="first N test texts (a quick try)")
    parser.add_argument("--calibration-texts", type=int, default=128,
                        help="validation texts that calibrate static int8")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_speed.json"))
    args = parser.parse_args(argv)

    import torch

    from mlclf_utils import Classifier, artifacts
    from mlclf_utils.data import dataset
    from mlclf_utils.evaluation import metrics
    from mlclf_utils.evaluation.calibration_maps import apply_calibration
    from mlclf_utils.serving import onnx_export
    from mlclf_utils.serving.bundle_reader import read_bundle
    from mlclf_utils.serving.onnx_backend import OnnxModel
    from mlclf_utils.stages import save_data

    torch.set_num_threads(args.threads)
    bundle = Path(args.bundle)
    run_dir = Path(args.run_dir) if args.run_dir else bundle.parents[1]
    splits = run_dir / save_data.STAGE / artifacts.DATASET_DIR
    test, label_map = dataset.load_split(splits / "test")
    texts = list(test["text"])[: args.limit]
    y = np.asarray(test["labels"], dtype=np.int8)[: len(texts)]
    calibration_texts = list(dataset.load_split(splits / "validation")[0]["text"])[
        : args.calibration_texts]
    warnings.filterwarnings("ignore", message=".*were truncated")  # the pipeline cuts them too

    reference = Classifier.load(bundle)
    info = read_bundle(bundle)

    def score(probs):
        return metrics.multilabel_report(y, probs, label_map.labels,
                                         reference.thresholds)["macro_f1"]

    raw, seconds = pipeline_probs(bundle, texts, label_map.labels, reference.max_length)
    baseline = apply_calibration(info.calibration, raw).astype(np.float32)
    rows = [{"variant": "transformers.pipeline, one text per call (baseline)", "backend": "torch",
             "texts_per_second": round(len(texts) / seconds, 2),
             "macro_f1_at_bundle_thresholds": round(score(baseline), 4)}]

    def add(name, backend, classifier, **facts):
        probs, best = timed(classifier, texts, args.batch_size, args.repeats)
        rows.append({"variant": name, "backend": backend,
                     "texts_per_second": round(len(texts) / best, 2),
                     "macro_f1_at_bundle_thresholds": round(score(probs), 4),
                     "max_abs_prob_diff_vs_baseline": round(float(np.abs(probs - baseline).max()), 5),
                     **facts})
        print(json.dumps(rows[-1]), flush=True)

    add("Classifier.predict: batched, length-sorted, inference_mode", "torch", reference)
    add("Classifier.predict + bf16 autocast", "torch", Classifier.load(bundle, bf16=True))
    add("Classifier.predict + dynamic int8 quantization", "torch",
        Classifier.load(bundle, quantize=True))

    with tempfile.TemporaryDirectory(prefix="mlclf-onnx-bench-") as scratch:
        copy = Path(shutil.copytree(bundle, Path(scratch) / "bundle"))
        for name in ("model.onnx", "model.int8.onnx"):
            (copy / name).unlink(missing_ok=True)  # export afresh, whatever the bundle holds
        plain, fused = copy / "plain.onnx", copy / "fused.onnx"
        start = time.perf_counter()
        onnx_export.export_onnx(copy, plain, optimize=False, threads=args.threads)
        export_seconds = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        facts = onnx_export.export_onnx(copy, fused, threads=args.threads)
        fused_seconds = round(time.perf_counter() - start, 1)
        onnx_runner = Classifier.from_bundle_info(info, backend="torch")  # tokenizer and maps
        variants = [("ONNX Runtime fp32: plain export", plain,
                     {"export_seconds": export_seconds}),
                    ("ONNX Runtime fp32: fused by the transformer optimizer (model.onnx)", fused,
                     {"export_seconds": fused_seconds, "fused_ops": ", ".join(facts["fused_ops"])})]
        int8_kinds = [  # (file, per channel, op types, what the row says)
            ("int8-all.onnx", True, None,
             "dynamic, per channel, every op ONNX Runtime quantizes (embedding tables too)"),
            ("int8-tensor.onnx", False, onnx_export.INT8_OP_TYPES,
             "dynamic, per tensor, matrix products only"),
            ("int8-channel.onnx", True, onnx_export.INT8_OP_TYPES,
             "dynamic, per channel, matrix products only (model.int8.onnx)")]
        for file, per_channel, op_types, kind in int8_kinds:
            out = copy / file
            start = time.perf_counter()
            onnx_export.quantize_onnx(fused, out, per_channel=per_channel, op_types=op_types)
            variants.append((f"ONNX Runtime int8: {kind}", out,
                             {"export_seconds": round(time.perf_counter() - start, 1)}))
        out = copy / "int8-static.onnx"
        start = time.perf_counter()
        static_int8(plain, out, onnx_runner, calibration_texts, args.batch_size)
        variants.append((f"ONNX Runtime int8: static QDQ per channel, {len(calibration_texts)} "
                         "validation texts calibrate", out,
                         {"export_seconds": round(time.perf_counter() - start, 1)}))
        for name, path, extra in variants:
            onnx_runner.model = OnnxModel(path, threads=args.threads)
            add(name, "onnx", onnx_runner, file_mb=round(path.stat().st_size / 2**20, 1), **extra)

    for row in rows:
        row["speedup"] = round(row["texts_per_second"] / rows[0]["texts_per_second"], 2)
        row["macro_f1_change_points"] = round(
            100 * (row["macro_f1_at_bundle_thresholds"] - rows[0]["macro_f1_at_bundle_thresholds"]), 2)
        row["meets_bar"] = bool(row["speedup"] >= BAR_SPEEDUP
                                and row["macro_f1_change_points"] >= -BAR_POINTS)
    write_result("inference_speed", argv,
                 {"texts": len(texts), "labels": len(label_map), "batch_size": args.batch_size,
                  "max_length": reference.max_length, "threads": args.threads,
                  "repeats": args.repeats,
                  "bar": f">= {BAR_SPEEDUP:g}x the baseline within {BAR_POINTS:g} macro-F1 points",
                  "load_average": [round(x, 2) for x in os.getloadavg()]}, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
