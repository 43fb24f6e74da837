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
    inference cuts at: 01's, or 03's when smaller), the caller's metrics summary, and every
    other file with its size and SHA-256, so a truncated copy or a swapped file is caught
    before it predicts nonsense. A bundle whose list is empty or missing, or leaves out a file
    the loaders read, is corrupt: nothing is loaded unchecked.

Only files that are safe to load are copied (JSON, safetensors, tokenizer vocabularies); a
pickle never enters a bundle. The folder also loads as a plain Hugging Face model
(``AutoModelForSequenceClassification``, ``transformers.pipeline``).

This module imports nothing heavy (no torch, no pandas beyond ``cleaning``), because the
SageMaker export copies it into the container next to ``predict.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.artifacts import read_json

FORMAT = "mlclf-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "bundle.json"
THRESHOLDS_FILE = "thresholds.json"
CALIBRATION_FILE = "calibration.json"  # optional: per-label maps from mlclf_utils.evaluation.calibration
PREPROCESS_CONFIG_FILE = "preprocess_config.json"
LABEL_MAP_FILE = "label_map.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What inference needs; pos_weight.json and hyperparameters.json are copied when present but
# are documentation, not inputs.
REQUIRED_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    LABEL_MAP_FILE,
    THRESHOLDS_FILE,
    PREPROCESS_CONFIG_FILE,
    MANIFEST_FILE,
)
# Files from the model folder that are copied: data formats that cannot run code on load.
SAFE_SUFFIXES = (".json", ".safetensors", ".txt", ".model")
# Files a loader may read from the folder; each must be listed (and so verified) in bundle.json.
LOADED_SUFFIXES = SAFE_SUFFIXES + (".jinja",)
# Written by export_bundle itself, so never taken from the model folder.
WRITTEN_FILES = (THRESHOLDS_FILE, PREPROCESS_CONFIG_FILE, MANIFEST_FILE, CALIBRATION_FILE)
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.pkl")
THRESHOLD_RULE = "a label is predicted when its probability >= its threshold"
PIPELINE_NOTE = (
    "transformers.pipeline('text-classification', model=<this folder>, top_k=None, "
    "function_to_apply='sigmoid') returns the raw sigmoid outputs: it applies neither "
    "calibration.json nor thresholds.json. mlclf_utils.serving.predict.Classifier.load applies both, "
    "and the thresholds were tuned on its (calibrated) probabilities.")
REEXPORT_HINT = (
    "copy the whole bundle folder again, or re-create it with "
    "mlclf_utils.serving.bundle.export_bundle (04_evaluate does this)"
)


@dataclass(frozen=True)
class BundleInfo:
    """What a checked bundle says about itself; ``predict.Classifier.load`` builds on it."""

    path: Path
    labels: list[str]
    thresholds: list[float]
    cleaning: CleaningConfig
    max_length: int
    manifest: dict = field(repr=False)
    calibration: dict | None = field(default=None, repr=False)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path, *, hint: str | None = None):
    return read_json(path, what="bundle file", hint=hint)


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _config_labels(config: dict, path: Path, hint: str | None) -> list[str]:
    """Label names in output-column order, from ``config.json``'s ``id2label``."""
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        raise DataError("has no id2label mapping, so the outputs have no names", file=str(path),
                        hint=hint)
    try:
        pairs = sorted((int(k), v) for k, v in id2label.items())
    except (TypeError, ValueError):
        raise DataError("id2label keys must be integers", file=str(path), hint=hint) from None
    if [k for k, _ in pairs] != list(range(len(pairs))):
        raise DataError("id2label keys must be 0..K-1", file=str(path), hint=hint)
    return [str(v) for _, v in pairs]


def _label_map_labels(path: Path, hint: str | None) -> list[str]:
    document = _read_json(path, hint=hint)
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError('expected {"labels": [names...]}', file=str(path), hint=hint)
    return labels


def _check_same_labels(labels: list[str], other: list[str], what: Path, hint: str | None) -> None:
    if other != labels:
        missing = [x for x in labels if x not in other]
        extra = [x for x in other if x not in labels]
        detail = (f"missing {missing[:10]}, unexpected {extra[:10]}" if missing or extra
                  else "same names in another order")
        raise DataError(f"its labels do not match config.json's id2label ({detail})",
                        file=str(what), hint=hint)


def _as_number(value) -> float:
    """A float for real numbers (numpy scalars included); NaN for anything else, bools too."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _check_thresholds(thresholds, labels: list[str]) -> list[float]:
    """Thresholds in the model's label order; every label exactly once, finite and >= 0."""
    if hasattr(thresholds, "to_dict") and not isinstance(thresholds, Mapping):
        thresholds = thresholds.to_dict()  # a pandas Series label -> threshold
    if not isinstance(thresholds, Mapping):
        raise ParameterError("thresholds", type(thresholds).__name__,
                             "must be a dict label -> threshold")
    missing = [x for x in labels if x not in thresholds]
    extra = [x for x in thresholds if x not in labels]
    if missing or extra:
        raise ParameterError("thresholds", f"{len(thresholds)} labels",
                             f"must cover exactly the model's {len(labels)} labels; missing "
                             f"{missing[:10]}, not in the model {extra[:10]}")
    values = []
    bad = []
    for label in labels:
        value = _as_number(thresholds[label])
        if not math.isfinite(value) or value < 0:
            bad.append(label)
        values.append(value)
    if bad:
        raise ParameterError("thresholds", {x: thresholds[x] for x in bad[:10]},
                             "must be finite numbers >= 0 (above 1 switches a label off)")
    return values


def _check_preprocess_config(preprocess_config) -> tuple[CleaningConfig, int]:
    if not isinstance(preprocess_config, Mapping):
        raise ParameterError("preprocess_config", type(preprocess_config).__name__,
                             "must be 01's preprocess_config.json as a dict")
    cleaning = CleaningConfig.from_dict(preprocess_config.get("cleaning"))
    max_length = preprocess_config.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ParameterError("preprocess_config", {"max_length": max_length},
                             "needs max_length, a positive token count (01 saves it)")
    return cleaning, max_length


def _source_run(model_dir: Path) -> str | None:
    """The run id when the model is a run's ``03_train/model`` folder."""
    if model_dir.parent.name == "03_train":
        return model_dir.parent.parent.name
    return None


def _package_versions() -> dict:
    """Versions that decide whether the bundle loads somewhere else; read without importing."""
    from importlib import metadata

    versions = {}
    for name in ("torch", "transformers", "tokenizers", "mlclf-utils"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def export_bundle(
    model_dir,
    out_dir,
    *,
    thresholds: dict[str, float],
    preprocess_config: dict,
    metrics: dict | None = None,
    calibration: dict | None = None,
) -> Path:
    """Copy a trained model folder into a new bundle folder with thresholds and cleaning config.

    ``thresholds`` must name every model label once (any order; written in the model's
    order). ``calibration`` (from ``calibration.fit_calibration``) is stored as
    ``calibration.json`` and applied by ``Classifier``; the thresholds must then have been
    tuned on calibrated probabilities. The bundle's ``max_length`` is 01's, or 03's ``hyperparameters.json`` value when
    that is smaller, because 03 cut the training texts to it.

    Refuses an existing non-empty ``out_dir`` (a bundle is never overwritten), builds the
    bundle in a sibling temporary folder and renames it into place, so a failure never leaves
    half a bundle. Files that are not safe data formats (pickles) are not copied; they are
    listed under ``not_copied`` in ``bundle.json``.
    """
    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ParameterError("out_dir", str(out_dir), "already exists and is not empty; a bundle "
                             "is never overwritten: choose a new folder or delete this one")
    hint = "pass the folder 03_train saved (runs/<run-id>/03_train/model)"
    if not model_dir.is_dir():
        raise DataError("no such model folder", file=str(model_dir), hint=hint)
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
                            hint=hint)
    config = _read_json(model_dir / CONFIG_FILE, hint=hint)
    labels = _config_labels(config, model_dir / CONFIG_FILE, hint)
    _check_same_labels(labels, _label_map_labels(model_dir / LABEL_MAP_FILE, hint),
                       model_dir / LABEL_MAP_FILE, hint)
    threshold_values = _check_thresholds(thresholds, labels)
    if calibration is not None:
        from mlclf_utils.evaluation.calibration import check_calibration_labels

        check_calibration_labels(calibration, labels)
    cleaning, max_length = _check_preprocess_config(preprocess_config)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and max_length > positions:
        raise ParameterError("preprocess_config", {"max_length": max_length},
                             f"the model accepts at most {positions} tokens")
    hyperparameters = (_read_json(model_dir / "hyperparameters.json", hint=hint)
                       if (model_dir / "hyperparameters.json").is_file() else {})
    trained = hyperparameters.get("max_length") if isinstance(hyperparameters, dict) else None
    if isinstance(trained, int) and not isinstance(trained, bool) and 2 <= trained < max_length:
        max_length = trained
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ParameterError("metrics", type(metrics).__name__, "must be a dict or None")
    try:
        metrics_json = json.loads(json.dumps(dict(metrics or {}), default=_plain_number))
    except (TypeError, ValueError) as exc:
        raise ParameterError("metrics", type(metrics).__name__,
                             f"must be JSON-serialisable ({exc})") from None
    preprocess_json = json.loads(json.dumps(dict(preprocess_config), default=str))
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
        _write_json(tmp / THRESHOLDS_FILE, {
            "thresholds": dict(zip(labels, threshold_values)),
            "rule": THRESHOLD_RULE,
        })
        _write_json(tmp / PREPROCESS_CONFIG_FILE, preprocess_json)
        if calibration is not None:
            _write_json(tmp / CALIBRATION_FILE, calibration)
        files = [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)}
                 for p in sorted(tmp.iterdir())]
        _write_json(tmp / MANIFEST_FILE, {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source_model_dir": str(model_dir.resolve()),
            "source_run": _source_run(model_dir.resolve()),
            "model_type": config.get("model_type"),
            "num_labels": len(labels),
            "max_length": max_length,
            "threshold_rule": THRESHOLD_RULE,
            "calibration": calibration["method"] if calibration is not None else None,
            "notes": PIPELINE_NOTE,
            "metrics": metrics_json,
            "versions": _package_versions(),
            "not_copied": not_copied,
            "files": files,
        })
    check_bundle(out_dir)
    return out_dir


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


def _plain_number(value):
    """numpy scalars in a metrics dict become plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def read_bundle(bundle_dir, *, verify_checksums: bool = True) -> BundleInfo:
    """Check a bundle and return its labels, thresholds and cleaning; errors name the file."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise DataError("no such bundle folder", file=str(root),
                        hint="pass the folder export_bundle wrote "
                             "(e.g. runs/<run-id>/04_evaluate/bundle)")
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise DataError("file is missing from the bundle", file=str(root / name),
                            hint=REEXPORT_HINT)
    manifest = _read_json(root / MANIFEST_FILE, hint=REEXPORT_HINT)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"not an {FORMAT} manifest", file=str(root / MANIFEST_FILE),
                        hint=REEXPORT_HINT)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"bundle format version {version!r}; this mlclf_utils reads up to "
                        f"{FORMAT_VERSION}", file=str(root / MANIFEST_FILE),
                        hint="upgrade mlclf_utils, or export the bundle again with this version")
    entries = manifest.get("files")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and "name" in e for e in entries):
        raise DataError("corrupt bundle: its file list is missing, empty or malformed, so no "
                        "file could be checked against its SHA-256", file=str(root / MANIFEST_FILE),
                        hint=REEXPORT_HINT)
    for entry in entries:
        name = entry["name"]
        if not isinstance(name, str) or name in ("", ".", "..", MANIFEST_FILE) or (
                Path(name).name != name):
            raise DataError(f"corrupt bundle: its file list names {name!r}, which is not a file "
                            "name in the bundle folder", file=str(root / MANIFEST_FILE),
                            hint=REEXPORT_HINT)
    # Every file a loader reads must be checked: the required ones, and any other file of a
    # kind transformers picks up by name (special_tokens_map.json, chat_template.jinja, ...).
    listed = {entry["name"] for entry in entries}
    unlisted = [name for name in REQUIRED_FILES if name != MANIFEST_FILE and name not in listed]
    unlisted += sorted(p.name for p in root.iterdir()
                       if p.is_file() and p.suffix in LOADED_SUFFIXES and not p.name.startswith(".")
                       and p.name not in listed and p.name != MANIFEST_FILE
                       and p.name not in unlisted)
    if unlisted:
        raise DataError("corrupt bundle: the file is not listed in bundle.json, so its SHA-256 "
                        "cannot be checked before it is loaded", file=str(root / unlisted[0]),
                        hint=REEXPORT_HINT)
    for entry in entries:
        path = root / str(entry["name"])
        if not path.is_file():
            raise DataError("file is missing from the bundle", file=str(path), hint=REEXPORT_HINT)
        if path.stat().st_size != entry.get("bytes"):
            raise DataError(f"corrupt: {path.stat().st_size} bytes, bundle.json says "
                            f"{entry.get('bytes')} (an interrupted copy?)", file=str(path),
                            hint=REEXPORT_HINT)
        if verify_checksums and sha256_of(path) != entry.get("sha256"):
            raise DataError("corrupt: its SHA-256 differs from the one in bundle.json (the file "
                            "was changed or damaged after export)", file=str(path),
                            hint=REEXPORT_HINT)

    config_path = root / CONFIG_FILE
    labels = _config_labels(_read_json(config_path, hint=REEXPORT_HINT), config_path,
                            REEXPORT_HINT)
    _check_same_labels(labels, _label_map_labels(root / LABEL_MAP_FILE, REEXPORT_HINT),
                       root / LABEL_MAP_FILE, REEXPORT_HINT)
    thresholds_path = root / THRESHOLDS_FILE
    document = _read_json(thresholds_path, hint=REEXPORT_HINT)
    stored = document.get("thresholds") if isinstance(document, dict) else None
    if not isinstance(stored, dict):
        raise DataError('expected {"thresholds": {label: number}}', file=str(thresholds_path),
                        hint=REEXPORT_HINT)
    try:  # by name: a hand-edited file in another order is still fine
        thresholds = _check_thresholds(stored, labels)
    except ParameterError as exc:
        raise DataError(str(exc), file=str(thresholds_path), hint=REEXPORT_HINT) from None
    preprocess_path = root / PREPROCESS_CONFIG_FILE
    try:
        cleaning, max_length = _check_preprocess_config(
            _read_json(preprocess_path, hint=REEXPORT_HINT))
    except ParameterError as exc:
        raise DataError(str(exc), file=str(preprocess_path), hint=REEXPORT_HINT) from None
    effective = manifest.get("max_length")  # may be 03's smaller cut, see export_bundle
    if isinstance(effective, int) and not isinstance(effective, bool) and effective >= 2:
        max_length = effective
    calibration = None
    if (root / CALIBRATION_FILE).is_file():
        from mlclf_utils.evaluation.calibration import check_calibration_labels, load_calibration

        calibration = load_calibration(root / CALIBRATION_FILE)
        try:
            check_calibration_labels(calibration, labels)
        except DataError as exc:
            raise DataError(exc.message, file=str(root / CALIBRATION_FILE),
                            hint=REEXPORT_HINT) from None
    return BundleInfo(root, labels, thresholds, cleaning, max_length, manifest, calibration)


def check_bundle(bundle_dir) -> None:
    """Raise DataError naming the first missing, corrupt or inconsistent file; else return."""
    read_bundle(bundle_dir)
