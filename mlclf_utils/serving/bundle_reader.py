"""What a model bundle holds, and how it is read and verified before anything loads from it.

A bundle (``mlclf_utils.serving.bundle`` makes one) is 03's model folder plus thresholds,
01's cleaning config and a manifest, ``bundle.json``, that lists every other file with its
size and SHA-256. Reading is kept apart from making because the reading side travels: the
SageMaker export copies this module into the container, where mlclf_utils is not installed,
so it imports only ``artifacts``, ``errors`` and ``cleaning`` (no torch, no pandas beyond
``cleaning``).

A bundle whose file list is empty or missing, or leaves out a file the loaders read, is
corrupt: nothing is loaded unchecked, because a truncated copy or a swapped file would
otherwise predict nonsense without a word.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.artifacts import read_json
from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.errors import DataError, ParameterError

FORMAT = "mlclf-bundle"
FORMAT_VERSION = 1
# The bundle's own files; those it shares with the run directory are named in artifacts.
MANIFEST_FILE = "bundle.json"
CALIBRATION_FILE = "calibration.json"  # optional: per-label maps from evaluation.calibration
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Optional: the model for ONNX Runtime (serving.onnx_export writes them; backend="onnx" reads).
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
ONNX_FILES = (ONNX_FILE, ONNX_INT8_FILE)
# What inference needs; pos_weight.json and hyperparameters.json are copied when present but
# are documentation, not inputs.
REQUIRED_FILES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    artifacts.LABEL_MAP,
    artifacts.THRESHOLDS,
    artifacts.PREPROCESS_CONFIG,
    MANIFEST_FILE,
)
# Files from the model folder that are copied: data formats that cannot run code on load.
SAFE_SUFFIXES = (".json", ".safetensors", ".txt", ".model")
# Files a loader may read from the folder; each must be listed (and so verified) in bundle.json.
LOADED_SUFFIXES = SAFE_SUFFIXES + (".jinja", ".onnx")
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
    """Read in blocks: a model's weights need not fit in memory twice to be checked."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundle_json(path: Path, *, hint: str | None = None):
    return read_json(path, what="bundle file", hint=hint)


def config_labels(config: dict, path: Path, hint: str | None) -> list[str]:
    """Label names in output-column order: ``id2label`` is what ties logit k to a name."""
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


def label_map_labels(path: Path, hint: str | None) -> list[str]:
    document = read_bundle_json(path, hint=hint)
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError('expected {"labels": [names...]}', file=str(path), hint=hint)
    return labels


def check_same_labels(labels: list[str], other: list[str], what: Path, hint: str | None) -> None:
    """Two files that disagree on the label order would silently swap the labels' names."""
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


def check_thresholds(thresholds, labels: list[str]) -> list[float]:
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


def check_preprocess_config(preprocess_config) -> tuple[CleaningConfig, int]:
    """Production text must be cleaned and cut as the training text was, so both must be known."""
    if not isinstance(preprocess_config, Mapping):
        raise ParameterError("preprocess_config", type(preprocess_config).__name__,
                             "must be 01's preprocess_config.json as a dict")
    cleaning = CleaningConfig.from_dict(preprocess_config.get("cleaning"))
    max_length = preprocess_config.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ParameterError("preprocess_config", {"max_length": max_length},
                             "needs max_length, a positive token count (01 saves it)")
    return cleaning, max_length


def _check_manifest(root: Path) -> dict:
    """The manifest itself: its format, its version and a file list that names only files."""
    manifest = read_bundle_json(root / MANIFEST_FILE, hint=REEXPORT_HINT)
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
    return manifest


def _verify_files(root: Path, entries: list[dict], *, verify_checksums: bool) -> None:
    """Every file a loader reads must be listed and match its size (and SHA-256): the required
    ones, and any other file of a kind transformers picks up by name (special_tokens_map.json,
    chat_template.jinja, ...)."""
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


def _read_thresholds(root: Path, labels: list[str]) -> list[float]:
    path = root / artifacts.THRESHOLDS
    document = read_bundle_json(path, hint=REEXPORT_HINT)
    stored = document.get("thresholds") if isinstance(document, dict) else None
    if not isinstance(stored, dict):
        raise DataError('expected {"thresholds": {label: number}}', file=str(path),
                        hint=REEXPORT_HINT)
    try:  # by name: a hand-edited file in another order is still fine
        return check_thresholds(stored, labels)
    except ParameterError as exc:
        raise DataError(str(exc), file=str(path), hint=REEXPORT_HINT) from None


def _read_calibration(root: Path, labels: list[str]) -> dict | None:
    if not (root / CALIBRATION_FILE).is_file():
        return None
    from mlclf_utils.evaluation.calibration_maps import check_calibration_labels, load_calibration

    calibration = load_calibration(root / CALIBRATION_FILE)
    try:
        check_calibration_labels(calibration, labels)
    except DataError as exc:
        raise DataError(exc.message, file=str(root / CALIBRATION_FILE),
                        hint=REEXPORT_HINT) from None
    return calibration


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
    manifest = _check_manifest(root)
    _verify_files(root, manifest["files"], verify_checksums=verify_checksums)

    config_path = root / CONFIG_FILE
    labels = config_labels(read_bundle_json(config_path, hint=REEXPORT_HINT), config_path,
                           REEXPORT_HINT)
    check_same_labels(labels, label_map_labels(root / artifacts.LABEL_MAP, REEXPORT_HINT),
                      root / artifacts.LABEL_MAP, REEXPORT_HINT)
    thresholds = _read_thresholds(root, labels)
    preprocess_path = root / artifacts.PREPROCESS_CONFIG
    try:
        cleaning, max_length = check_preprocess_config(
            read_bundle_json(preprocess_path, hint=REEXPORT_HINT))
    except ParameterError as exc:
        raise DataError(str(exc), file=str(preprocess_path), hint=REEXPORT_HINT) from None
    effective = manifest.get("max_length")  # may be 03's smaller cut, see export_bundle
    if isinstance(effective, int) and not isinstance(effective, bool) and effective >= 2:
        max_length = effective
    return BundleInfo(root, labels, thresholds, cleaning, max_length, manifest,
                      _read_calibration(root, labels))


def check_bundle(bundle_dir) -> None:
    """Raise DataError naming the first missing, corrupt or inconsistent file; else return."""
    read_bundle(bundle_dir)
