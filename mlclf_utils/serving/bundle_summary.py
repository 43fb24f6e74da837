"""A bundle and one of its predictions as a person reads them, for 04's bundle cell.

Why a module of its own: bundle.json holds the ONNX verdict and every file, but as nested
JSON a notebook would dump whole, and ``Classifier.predict`` returns every label's
probability. These functions turn both into a few lines. They read only bundle.json and what
a loaded ``Classifier`` already holds, so they never load a model themselves.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

from mlclf_utils.errors import TruncationWarning
from mlclf_utils.serving.bundle_reader import MANIFEST_FILE, read_bundle_json

WIDTH = 100
ADD_ONNX_HINT = ("add it later with `python -m mlclf_utils export-onnx <bundle>` "
                 "(serving.bundle.add_onnx)")


def size_text(size: int) -> str:
    """Bytes in the unit a person would say: 712 B, 4.4 kB, 90.9 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def files_text(manifest: dict, where: str) -> str:
    """The bundle's files, largest first, with their sizes and the total."""
    files = sorted(manifest.get("files") or [], key=lambda e: (-int(e.get("bytes") or 0),
                                                              e["name"]))
    total = sum(int(e.get("bytes") or 0) for e in files)
    head = f"bundle {where}: {len(files)} files and {MANIFEST_FILE}, {size_text(total)}"
    listing = ", ".join(f"{e['name']} {size_text(int(e.get('bytes') or 0))}" for e in files)
    return head + "\n" + textwrap.fill(listing, WIDTH, initial_indent="  ",
                                       subsequent_indent="  ")


def wrapped(line: str) -> str:
    return textwrap.fill(line, WIDTH, subsequent_indent="  ")


def fp32_text(facts: dict) -> str:
    fused = ", ".join(facts.get("fused_ops") or []) or "none"
    return (f"ONNX fp32 ({facts['file']}): matches PyTorch, probabilities differ by at most "
            f"{facts['max_abs_prob_diff_vs_torch']:.1e} (limit {facts['tolerance']:.0e}); "
            f"fused ops: {fused}")


def int8_text(facts: dict | None) -> str:
    """Kept or dropped, and why: the macro-F1 change against the limit, on which texts."""
    if facts is None:
        return "ONNX int8: not made"
    judged = facts.get("judged")
    if not judged:
        return (f"ONNX int8 ({facts['file']}): written unjudged (no texts to check it on); "
                "compare its macro-F1 with fp32 before relying on it")
    change, limit = judged["macro_f1_change_points"], judged["limit_points"]
    measured = (f"macro-F1 on {judged['texts']} test texts {judged['macro_f1_fp32']:.4f} -> "
                f"{judged['macro_f1_int8']:.4f} ({change:+.2f} points), probabilities move by "
                f"up to {judged['max_abs_prob_diff']:.3f}")
    if judged["kept"]:
        return (f"ONNX int8 ({facts['file']}): kept, within the {limit:g}-point limit: "
                f"{measured}")
    return (f"ONNX int8: dropped, it costs more than the {limit:g}-point limit: {measured}; "
            f"the bundle serves fp32")


def describe_bundle(bundle_dir) -> str:
    """What 04 wrote: the files, and the ONNX checks bundle.json records."""
    root = Path(bundle_dir)
    manifest = read_bundle_json(root / MANIFEST_FILE)
    where = "/".join(root.resolve().parts[-3:])  # <run-id>/04_evaluate/bundle
    lines = [files_text(manifest, where)]
    section = manifest.get("onnx")
    if not section:
        lines.append(wrapped(f"ONNX: not exported (export_onnx=False); {ADD_ONNX_HINT}"))
    else:
        lines += [wrapped(fp32_text(section["fp32"])), wrapped(int8_text(section.get("int8")))]
    return "\n".join(lines)


def describe_prediction(classifier, text: str, *, top: int = 5, truth=None,
                        preview: int = 90) -> str:
    """One text's prediction: the labels it gets, and its ``top`` most probable labels as
    ``label: probability (threshold)``, never the whole probability vector. ``truth``: the
    text's labels as given, to set beside them: names, or a 0/1 row in the model's order."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        record = classifier.predict([text])[0]
    for warning in said:  # one text's truncation is a note here, not a red box
        if not issubclass(warning.category, TruncationWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    cut = any(issubclass(w.category, TruncationWarning) for w in said)
    if truth is not None and not all(isinstance(x, str) for x in truth):
        truth = [label for label, given in zip(classifier.labels, truth) if given]
    thresholds = dict(zip(classifier.labels, classifier.thresholds))
    ranked = sorted(record["probabilities"].items(), key=lambda item: -item[1])[:top]
    shown = text if len(text) <= preview else text[:preview - 3].rstrip() + "..."
    lines = [f"example: {shown!r}" + (f" (cut to {classifier.max_length} tokens, as in "
                                       "training)" if cut else ""),
             f"  predicted: {', '.join(record['labels']) or '(no label reaches its threshold)'}"]
    if truth is not None:
        lines.append(f"  as given: {', '.join(truth) or '(none)'}")
    lines.append(f"  top {len(ranked)} of {len(classifier.labels)} labels, probability "
                 "(threshold):")
    width = max(len(label) for label, _ in ranked)
    for label, probability in ranked:
        mark = "  <- predicted" if label in record["labels"] else ""
        lines.append(f"    {label:<{width}}  {probability:.3f}  ({thresholds[label]:.3f}){mark}")
    return "\n".join(lines)
