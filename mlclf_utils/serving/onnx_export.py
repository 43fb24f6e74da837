"""Export a bundle's model to ONNX for ONNX Runtime, check it against PyTorch, and judge int8.

Why ONNX Runtime: on a CPU it runs the same MiniLM several times faster than a
``transformers.pipeline`` loop, because the graph is fused (one ``Attention`` op per layer,
``SkipLayerNormalization``, ``BiasGelu``) and, in int8, the matrix products run on integer
kernels. docs/benchmarks.md shows each variant beside the pipeline baseline.

What is written (names in ``bundle_reader``):

``model.onnx``
    fp32, inputs ``input_ids`` and ``attention_mask`` (int64, batch and sequence axes
    dynamic), output ``logits``; fused by onnxruntime's transformer optimizer. Refused unless
    its probabilities match PyTorch's within ``FP32_TOLERANCE`` on padded probe batches.
``model.int8.onnx``
    ``model.onnx`` with dynamic int8 weights, per output channel. int8 moves probabilities by
    up to a few tenths, so it is kept only when macro-F1 at the bundle's thresholds on texts
    the caller supplies stays within ``INT8_LIMIT_POINTS`` of fp32. 04 supplies test, not
    validation: tuned thresholds sit exactly on validation scores (a label's threshold is one
    of its validation probabilities), so any shift flips those texts, almost always for the
    worse. Measured on the demo bundle, per-channel int8: -2.46 points on validation, -0.41
    on test; on the tiny smoke model a 0.0007 probability shift cost 19 validation points.
    int8 is a yes/no choice made on test, never a tuned value.

The export runs from the bundle's own files (weights, config, tokenizer), so what ONNX
Runtime computes is what ``Classifier`` computes with torch; the calibration maps and the
thresholds are applied afterwards in numpy, to both backends alike. torch, onnx and
onnxruntime are imported inside the functions: ``bundle`` imports this module only when asked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mlclf_utils.errors import DataError
from mlclf_utils.serving.bundle_reader import ONNX_FILE, ONNX_INT8_FILE

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
FP32_TOLERANCE = 1e-4  # max abs probability difference from PyTorch on the probe batches
INT8_LIMIT_POINTS = 0.5  # issue 14's quality bar for a faster variant, in macro-F1 points
PROBE_TEXTS = (
    "plays music",
    "a small web server with a plugin system, written in C, with a manual and examples",
    "network tools for administrators " * 6,
    "x",
)


def _load_torch_model(model_dir: Path):
    """The bundle's model in eval mode with plain (eager) attention: the graph the optimizer
    knows how to fuse; the numbers are the same as with SDPA."""
    from transformers import AutoModelForSequenceClassification

    from mlclf_utils.modeling import pooling  # noqa: F401  (registers the mean-pooling type)

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    model.set_attn_implementation("eager")
    return model.eval()


def probe_batch(model_dir) -> tuple[np.ndarray, np.ndarray]:
    """Real token ids of ``PROBE_TEXTS``, right-padded into one batch, so a check sees padding,
    short and long rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    batch = tokenizer(list(PROBE_TEXTS), padding=True, truncation=True, max_length=64,
                      return_tensors="np")
    return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)


def torch_logits(model, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(input_ids),
                     attention_mask=torch.from_numpy(attention_mask)).logits.float().numpy()


def _trace_to_onnx(model, input_ids: np.ndarray, attention_mask: np.ndarray, path: Path) -> None:
    """torch.onnx's TorchScript exporter (``dynamo=False``): seconds, and a graph that
    onnxruntime's BERT fusions recognise."""
    import torch

    class LogitsOnly(torch.nn.Module):
        """ONNX wants tensors out, not a ModelOutput."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    axes = {"batch": 0, "sequence": 1}
    dynamic = {name: {i: axis for axis, i in axes.items()} for name in INPUT_NAMES}
    dynamic[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings():
        # The tracer's notes on Python conditionals inside transformers' mask code: the
        # probes below check the exported graph on other shapes and on padding instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model).eval(),
                          (torch.from_numpy(input_ids), torch.from_numpy(attention_mask)),
                          str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def _fuse(path: Path, config) -> list[str]:
    """onnxruntime's transformer optimizer, in place; returns the fused op kinds it made."""
    import logging

    from onnxruntime.transformers import optimizer

    encoder = getattr(config, "encoder", None)  # the mean-pooling classifier wraps one
    values = encoder if isinstance(encoder, dict) else config.to_dict()
    heads = values.get("num_attention_heads", values.get("n_heads", 0))
    hidden = values.get("hidden_size", values.get("dim", 0))
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimizer.optimize_model(str(path), model_type="bert", num_heads=int(heads),
                                         hidden_size=int(hidden))
    optimized.save_model_to_file(str(path))
    return sorted(name for name, n in optimized.get_fused_operator_statistics().items() if n)


def export_onnx(model_dir, out_path=None, *, optimize: bool = True, threads: int | None = None
                ) -> dict:
    """``model_dir``'s model as ONNX (default ``model_dir/model.onnx``), checked against
    PyTorch on padded probe batches before it is returned; the facts for bundle.json.

    An export whose probabilities differ by more than ``FP32_TOLERANCE`` raises DataError and
    leaves no file: a graph that disagrees with the model must not ship.
    """
    from mlclf_utils.serving.onnx_backend import OnnxModel

    model_dir = Path(model_dir)
    out_path = Path(out_path) if out_path is not None else model_dir / ONNX_FILE
    model = _load_torch_model(model_dir)
    input_ids, attention_mask = probe_batch(model_dir)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        _trace_to_onnx(model, input_ids[:2, :8], attention_mask[:2, :8], tmp)
        fused = _fuse(tmp, model.config) if optimize else []
        diff = _max_prob_diff(torch_logits(model, input_ids, attention_mask),
                              OnnxModel(tmp, threads=threads).logits(input_ids, attention_mask))
        if not diff <= FP32_TOLERANCE:
            raise DataError(f"the ONNX export disagrees with PyTorch: probabilities differ by up "
                            f"to {diff:.2g} (> {FP32_TOLERANCE})", file=str(out_path),
                            hint="export with optimize=False; if that differs too, report it "
                                 "with the model's config.json")
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"file": out_path.name, "precision": "fp32", "opset": OPSET,
            "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME, "optimized": bool(optimize),
            "fused_ops": fused, "max_abs_prob_diff_vs_torch": float(diff),
            "tolerance": FP32_TOLERANCE}


# What int8 quantizes: the matrix products, where the time goes (the fused Attention holds the
# query/key/value projection). The embedding tables are lookups that cost no arithmetic, so
# int8 there buys only a smaller file; on the demo it doubled the largest probability change
# (docs/benchmarks.md, the "all ops" row).
INT8_OP_TYPES = ("MatMul", "Attention")


def quantize_onnx(src, dst=None, *, per_channel: bool = True,
                  op_types: tuple[str, ...] | None = INT8_OP_TYPES) -> dict:
    """Dynamic int8 weights for the matrix products of an ONNX model (activations quantized
    on the fly), per output channel by default: per-tensor scales cost more macro-F1 on the
    demo (docs/benchmarks.md). ``op_types=None`` is ONNX Runtime's own choice of ops, the
    embedding tables included."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_name(ONNX_INT8_FILE)
    tmp = dst.with_name(f".{dst.name}.tmp")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    try:
        # Fused ops (com.microsoft) defeat ONNX shape inference; their outputs are float.
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8,
                         per_channel=per_channel,
                         op_types_to_quantize=None if op_types is None else list(op_types),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    scales = "per channel" if per_channel else "per tensor"
    ops = ("ONNX Runtime's default ops" if op_types is None
           else f"{', '.join(op_types)} only (embeddings stay fp32)")
    return {"file": dst.name, "precision": "int8", "from": src.name,
            "quantization": f"dynamic, {scales}, {ops}"}


def _max_prob_diff(a: np.ndarray, b: np.ndarray) -> float:
    from mlclf_utils.evaluation.calibration_maps import sigmoid

    return float(np.abs(sigmoid(a) - sigmoid(b)).max())


def judge_int8(fp32, int8, texts, targets, *, batch_size: int = 64) -> dict:
    """Macro-F1 of two Classifiers (fp32 and int8 ONNX) at their thresholds on the same texts,
    and whether int8 stays within ``INT8_LIMIT_POINTS``; both apply the same calibration."""
    from mlclf_utils.evaluation import metrics

    targets = np.asarray(targets, dtype=np.int8)
    scores, probs = {}, {}
    for name, classifier in (("fp32", fp32), ("int8", int8)):
        probs[name] = classifier.predict_proba(list(texts), batch_size=batch_size)
        scores[name] = metrics.multilabel_report(targets, probs[name], classifier.labels,
                                                 classifier.thresholds)["macro_f1"]
    change = 100 * (scores["int8"] - scores["fp32"])
    return {"texts": len(targets), "macro_f1_fp32": round(scores["fp32"], 5),
            "macro_f1_int8": round(scores["int8"], 5), "macro_f1_change_points": round(change, 3),
            "max_abs_prob_diff": round(float(np.abs(probs["int8"] - probs["fp32"]).max()), 5),
            "limit_points": INT8_LIMIT_POINTS, "kept": bool(change >= -INT8_LIMIT_POINTS)}


def write_onnx_files(info, *, check=None, int8: bool | None = None,
                     threads: int | None = None) -> dict:
    """Write ``model.onnx`` into the folder ``info`` describes (a ``BundleInfo``, perhaps of a
    bundle still being built), and ``model.int8.onnx`` when ``int8`` (default: when ``check``
    is given); returns the ``onnx`` section of bundle.json.

    ``check`` = ``(texts, targets)``, texts the thresholds were not tuned on (04 passes test):
    int8 is judged there with ``judge_int8`` and removed again when it costs more than
    ``INT8_LIMIT_POINTS``. Without ``check`` an int8 file is written unjudged, and the
    section says so.
    """
    from mlclf_utils.serving.predict import Classifier

    import onnxruntime

    folder = Path(info.path)
    section = {"onnxruntime": onnxruntime.__version__,
               "fp32": export_onnx(folder, folder / ONNX_FILE, threads=threads), "int8": None}
    if not (check is not None if int8 is None else int8):
        return section
    facts = quantize_onnx(folder / ONNX_FILE, folder / ONNX_INT8_FILE)
    if check is None:
        section["int8"] = {**facts, "judged": None, "kept": True}
        return section
    texts, targets = check
    fp32 = Classifier.from_bundle_info(info, backend="onnx", threads=threads)
    small = Classifier.from_bundle_info(info, backend="onnx", quantize=True, threads=threads)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*were truncated")  # as 04 already said
        verdict = judge_int8(fp32, small, texts, targets)
    if not verdict["kept"]:
        (folder / ONNX_INT8_FILE).unlink()
    section["int8"] = {**facts, "judged": verdict, "kept": verdict["kept"]}
    return section
