"""The model bundle: one folder that holds everything needed to use a trained model elsewhere.

A bundle is 03's model folder (safetensors weights, ``config.json`` with ``id2label``,
tokenizer files, ``label_map.json``, ``pos_weight.json``, ``hyperparameters.json``) plus:

``thresholds.json``
    ``{"thresholds": {label: float, ...}}`` in the model's label order. A label is predicted
    when its probability is ``>= threshold``; a threshold above 1 switches the label off.
    Readers need only the ``"thresholds"`` key, so extra keys are allowed.
``preprocess_config.json``
    01's config as saved by the run. Its ``"cleaning"`` dict feeds
    ``CleaningConfig.from_dict``, so production text is cleaned exactly as the training text
    was.
``bundle.json``
    Format version, creation time, source run, label count, ``max_length`` (the token limit
    inference cuts at: 01's, or 03's when smaller), how long texts are read (01's ``long_text``,
    ``window_stride``, ``max_windows``, ``window_aggregation``: ``data.windows``, which
    ``Classifier`` follows), the caller's metrics summary, and every
    other file with its size and SHA-256, so a truncated copy or a swapped file is caught
    before it predicts nonsense. A bundle whose list is empty or missing, or leaves out a file
    the loaders read, is corrupt: nothing is loaded unchecked.

``model.onnx``, ``model.int8.onnx`` (optional)
    The same model for ONNX Runtime, fp32 and int8 (``serving.onnx_export``; ``export_bundle``
    with ``onnx=True``, as 04 does by default, or ``add_onnx`` later). bundle.json's ``onnx``
    section records how each was made and checked; int8 is kept only within the macro-F1 limit.

Only files that are safe to load are copied (JSON, safetensors, tokenizer vocabularies); a
pickle never enters a bundle. The folder also loads as a plain Hugging Face model
(``AutoModelForSequenceClassification``, ``transformers.pipeline``).

Making a bundle lives here; reading and verifying one lives in ``bundle_reader``, the half
that the SageMaker export copies into the container. This module imports nothing heavy either
(no torch), so 04 can export without loading a model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.artifacts import write_json
from mlclf_utils.data.windows import WindowSettings
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.serving.bundle_reader import (CALIBRATION_FILE, CONFIG_FILE, FORMAT,
                                               FORMAT_VERSION, MANIFEST_FILE, ONNX_FILES,
                                               REQUIRED_FILES,
                                               SAFE_SUFFIXES, WEIGHTS_FILE, BundleInfo,
                                               check_bundle, check_preprocess_config,
                                               check_same_labels, check_thresholds,
                                               config_labels, label_map_labels, read_bundle,
                                               read_bundle_json, sha256_of)
from mlclf_utils.versions import SERVING_PACKAGES, package_versions

# The reading side, importable from here as well: a bundle is made and checked by one name.
__all__ = ["BundleInfo", "MANIFEST_FILE", "REQUIRED_FILES", "add_onnx", "check_bundle",
           "export_bundle", "read_bundle", "sha256_of", "staged_dir"]

# Written by export_bundle itself, so never taken from the model folder.
WRITTEN_FILES = (artifacts.THRESHOLDS, artifacts.PREPROCESS_CONFIG, MANIFEST_FILE,
                 CALIBRATION_FILE)
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.pkl")
THRESHOLD_RULE = "a label is predicted when its probability >= its threshold"
PIPELINE_NOTE = (
    "transformers.pipeline('text-classification', model=<this folder>, top_k=None, "
    "function_to_apply='sigmoid') returns the raw sigmoid outputs: it applies neither "
    "calibration.json nor thresholds.json. mlclf_utils.Classifier.load applies both, "
    "and the thresholds were tuned on its (calibrated) probabilities.")
ONNX_NOTE = (
    "model.onnx is the same model for ONNX Runtime (model.int8.onnx, when present, its int8 "
    "version, kept only within the macro-F1 limit recorded under 'onnx'): "
    "Classifier.load(<this folder>, backend='onnx') and `predict --backend onnx` apply the "
    "same calibration and thresholds to its logits. transformers.pipeline does not use it.")
MODEL_HINT = "pass the folder 03_train saved (runs/<run-id>/03_train/model)"


def _source_run(model_dir: Path) -> str | None:
    """The run id when the model is a run's ``03_train/model`` folder."""
    if model_dir.parent.name == artifacts.TRAIN:
        return model_dir.parent.parent.name
    return None


def plain_json(value, *, name: str, other=None):
    """``value`` as plain JSON data, checked before any file is written: numpy (and torch)
    scalars become numbers; any other object goes through ``other``, or is refused naming the
    parameter ``name``."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, name=name, other=other) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v, name=name, other=other) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "item") and callable(value.item):
        try:
            return plain_json(value.item(), name=name, other=other)
        except (TypeError, ValueError):
            pass
    if other is not None:
        return other(value)
    raise ParameterError(name, type(value).__name__,
                         f"must be JSON-serialisable ({type(value).__name__} is not)")


def _trained_cut(model_dir: Path, max_length: int) -> int:
    """03's token cut when it is smaller than 01's: 03 cut the training texts to it."""
    path = model_dir / artifacts.HYPERPARAMETERS
    hyperparameters = read_bundle_json(path, hint=MODEL_HINT) if path.is_file() else {}
    trained = hyperparameters.get("max_length") if isinstance(hyperparameters, dict) else None
    if isinstance(trained, int) and not isinstance(trained, bool) and 2 <= trained < max_length:
        return trained
    return max_length


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise DataError("no such model folder", file=str(model_dir), hint=MODEL_HINT)
    if not (model_dir / WEIGHTS_FILE).is_file():
        pickled = [name for name in PICKLE_WEIGHTS if (model_dir / name).is_file()]
        if pickled:
            raise DataError(f"the weights are only in pickled form ({pickled[0]}); bundles hold "
                            "safetensors only", file=str(model_dir / WEIGHTS_FILE),
                            hint="load the model and save_pretrained it again (transformers "
                                 "writes safetensors by default)")
    for name in REQUIRED_FILES:
        if name not in WRITTEN_FILES and not (model_dir / name).is_file():
            raise DataError("file is missing from the model folder", file=str(model_dir / name),
                            hint=MODEL_HINT)


def export_bundle(
    model_dir,
    out_dir,
    *,
    thresholds: dict[str, float],
    preprocess_config: dict,
    metrics: dict | None = None,
    calibration: dict | None = None,
    onnx: bool = False,
    onnx_check=None,
) -> Path:
    """Copy a trained model folder into a new bundle folder with thresholds and cleaning config.

    ``thresholds`` must name every model label once (any order; written in the model's
    order). ``calibration`` (from ``calibration.fit_calibration``) is stored as
    ``calibration.json`` and applied by ``Classifier``; the thresholds must then have been
    tuned on calibrated probabilities. The bundle's ``max_length`` is 01's, or 03's
    ``hyperparameters.json`` value when that is smaller, because 03 cut the training texts
    to it.

    Refuses an existing non-empty ``out_dir`` (a bundle is never overwritten), builds the
    bundle in a sibling temporary folder and renames it into place, so a failure never leaves
    half a bundle. Files that are not safe data formats (pickles) are not copied; they are
    listed under ``not_copied`` in ``bundle.json``.

    ``onnx=True`` adds ``model.onnx`` (``onnx_export.write_onnx_files``), and with
    ``onnx_check=(texts, targets)`` (04: test) ``model.int8.onnx`` when int8 holds
    macro-F1 there.
    """
    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParameterError("out_dir", str(out_dir), "already exists and is not empty; a bundle "
                             "is never overwritten: choose a new folder or delete this one")
    _check_model_dir(model_dir)
    config = read_bundle_json(model_dir / CONFIG_FILE, hint=MODEL_HINT)
    labels = config_labels(config, model_dir / CONFIG_FILE, MODEL_HINT)
    check_same_labels(labels, label_map_labels(model_dir / artifacts.LABEL_MAP, MODEL_HINT),
                      model_dir / artifacts.LABEL_MAP, MODEL_HINT)
    threshold_values = check_thresholds(thresholds, labels)
    if calibration is not None:
        from mlclf_utils.evaluation.calibration_maps import check_calibration_labels

        check_calibration_labels(calibration, labels)
    cleaning, max_length = check_preprocess_config(preprocess_config)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and max_length > positions:
        raise ParameterError("preprocess_config", {"max_length": max_length},
                             f"the model accepts at most {positions} tokens")
    max_length = _trained_cut(model_dir, max_length)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ParameterError("metrics", type(metrics).__name__, "must be a dict or None")
    metrics_json = plain_json(dict(metrics or {}), name="metrics")
    preprocess_json = plain_json(dict(preprocess_config), name="preprocess_config", other=str)
    preprocess_json["cleaning"] = cleaning.to_dict()  # every switch spelled out

    with staged_dir(out_dir) as tmp:
        not_copied = []
        for path in sorted(model_dir.iterdir()):
            if path.name in WRITTEN_FILES:
                continue
            if path.is_file() and path.suffix in SAFE_SUFFIXES:
                shutil.copyfile(path, tmp / path.name)
            else:
                not_copied.append(path.name + ("/" if path.is_dir() else ""))
        write_json(tmp / artifacts.THRESHOLDS, {
            "thresholds": dict(zip(labels, threshold_values)),
            "rule": THRESHOLD_RULE,
        })
        write_json(tmp / artifacts.PREPROCESS_CONFIG, preprocess_json)
        if calibration is not None:
            write_json(tmp / CALIBRATION_FILE, calibration)
        onnx_section = None
        if onnx:
            from mlclf_utils.serving.onnx_export import write_onnx_files

            reading = WindowSettings.from_config(preprocess_config).to_dict()
            onnx_section = write_onnx_files(
                BundleInfo(tmp, labels, threshold_values, cleaning, max_length, reading,
                           calibration), check=onnx_check)
        files = [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)}
                 for p in sorted(tmp.iterdir())]
        write_json(tmp / MANIFEST_FILE, {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source_model_dir": str(model_dir.resolve()),
            "source_run": _source_run(model_dir.resolve()),
            "model_type": config.get("model_type"),
            "num_labels": len(labels),
            "max_length": max_length,
            **WindowSettings.from_config(preprocess_config).to_dict(),  # how long texts are read
            "threshold_rule": THRESHOLD_RULE,
            "calibration": calibration["method"] if calibration is not None else None,
            "notes": PIPELINE_NOTE + (" " + ONNX_NOTE if onnx else ""),
            "onnx": onnx_section,
            "metrics": metrics_json,
            "versions": package_versions(SERVING_PACKAGES),
            "not_copied": not_copied,
            "files": files,
        })
    check_bundle(out_dir)
    return out_dir


def add_onnx(bundle_dir, *, int8: bool = False, check=None, overwrite: bool = False,
             threads: int | None = None) -> Path:
    """Export an existing bundle's model to ONNX inside it and list the files in bundle.json:
    for bundles made with ``export_onnx=False`` or before 04 wrote ONNX files.

    ``int8`` adds ``model.int8.onnx``; with ``check=(texts, targets)`` it is judged there as
    04 judges it (``write_onnx_files``). An existing ONNX file is replaced only with
    ``overwrite``. Each file is written under a temporary name and renamed, and bundle.json
    is rewritten last, so the bundle is checked again before this returns.
    """
    from mlclf_utils.serving.onnx_export import write_onnx_files

    info = read_bundle(bundle_dir)
    root = info.path
    present = [name for name in ONNX_FILES if (root / name).exists()]
    if present and not overwrite:
        raise ParameterError("overwrite", overwrite, f"the bundle already holds {present}; "
                             "pass overwrite=True (--overwrite) to export again")
    section = write_onnx_files(info, check=check, int8=int8 or check is not None,
                               threads=threads)
    kept = {section["fp32"]["file"]} | ({section["int8"]["file"]}
                                        if section["int8"] and section["int8"]["kept"] else set())
    for name in set(ONNX_FILES) - kept:
        (root / name).unlink(missing_ok=True)  # an older export that this one replaces
    manifest = dict(info.manifest)
    files = [e for e in manifest["files"] if e["name"] not in ONNX_FILES]
    files += [{"name": name, "bytes": (root / name).stat().st_size,
               "sha256": sha256_of(root / name)} for name in sorted(kept)]
    notes = str(manifest.get("notes") or PIPELINE_NOTE)
    manifest.update(files=sorted(files, key=lambda e: e["name"]), onnx=section,
                    notes=notes if ONNX_NOTE in notes else f"{notes} {ONNX_NOTE}")
    write_json(root / MANIFEST_FILE, manifest)
    check_bundle(root)
    return root


@contextlib.contextmanager
def staged_dir(out_dir: Path):
    """Build a folder under a temporary name and rename it into place only when complete, so a
    crash never leaves half a bundle under the real name. ``out_dir`` must be absent or empty
    (callers refuse anything else first)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
