"""Every file a run directory holds, named once, and the one way to read and write their JSON.

Stages talk only through these files (docs/artifacts.md describes each one). A stage finds an
earlier stage's output through ``path(run_dir, STAGE, NAME)``, never through a string literal
of its own, so renaming a file is a one-line change here and a broken run directory always
fails with the file's name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mlclf_utils.errors import DataError

# The stages, in order; each writes only into runs/<run-id>/<stage>/.
PREPROCESS, SAVE_DATA, TRAIN, EVALUATE, EXPLAIN = STAGES = (
    "01_preprocess", "02_save_data", "03_train", "04_evaluate", "05_explain")

# In the run directory itself.
MANIFEST = "manifest.json"
FIGURES_DIR = "figures"  # in every stage's folder

# 01_preprocess
TABLE = "processed.parquet"
LABEL_MAP = "label_map.json"  # also inside every 02 split, 03 model folder and bundle
PREPROCESS_CONFIG = "preprocess_config.json"  # also inside every 02 split and bundle
PREPROCESS_REPORT = "preprocess_report.json"
QUALITY_DIR = "quality"
DROPPED_ROWS = f"{QUALITY_DIR}/dropped_rows.csv"
SPLIT_LABEL_FREQUENCIES = "split_label_frequencies.csv"
SPLIT_MOVES = "split_moves.csv"
LABEL_AUDIT = f"{QUALITY_DIR}/label_audit.csv"  # cleanlab's ranked label issues

# 02_save_data
DATASET_DIR = "dataset"
SPLITS = ("train", "validation", "test")
CLASS_STATS = "class_stats.json"  # inside every split folder
CHANNELS = "channels.json"

# 03_train (the model folder is also what SageMaker's SM_MODEL_DIR receives)
MODEL_DIR = "model"
METRICS_DIR = "metrics"
CHECKPOINTS_DIR = "checkpoints"
SAGEMAKER_JOB = "sagemaker_job.json"
POS_WEIGHT = "pos_weight.json"  # in the model folder
HYPERPARAMETERS = "hyperparameters.json"  # in the model folder
TRAINING_METRICS = "metrics.json"  # in the metrics folder
LOG_HISTORY = "log_history.json"  # in the metrics folder
POS_WEIGHT_TABLE = "pos_weight.csv"  # in the metrics folder

# 04_evaluate
REPORT = "report.json"
PER_CLASS_TEST = "per_class_test.csv"
THRESHOLDS = "thresholds.json"  # also in the bundle
MISCLASSIFICATIONS = "misclassifications.parquet"  # with a .csv copy for people
BUNDLE_DIR = "bundle"
PLAIN_BCE_DIR = "plain_bce"
HELD_OUT_LABEL_AUDIT = "label_audit.csv"  # the same audit on validation and test
HELD_OUT_LABEL_AUDIT_SUMMARY = "label_audit.json"

# 05_explain
ATTRIBUTIONS = "attributions.parquet"
TOKEN_AUDIT = "token_audit.csv"
HARD_NEGATIVES = "hard_negatives.csv"
RETRAIN_DIR = "retrain"
RETRAIN_COMPARISON = "retrain_comparison.csv"
LABELS_TO_REVIEW = "labels_to_review.csv"  # hard negatives the label audit set aside


def path(run_dir: str | Path, stage: str, *parts: str) -> Path:
    """``runs/<run-id>/<stage>/<parts...>``, refusing a stage name that does not exist."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the stages are {STAGES}")
    return Path(run_dir, stage, *parts)


def read_json(path: str | Path, *, what: str = "file", hint: str | None = None):
    """Parsed JSON, or a DataError that names the file: missing and malformed alike.

    Every artifact reader (label map, thresholds, pos_weight, reports, bundle files) goes
    through here, so a broken run directory always says which file to fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found (the file is missing)", file=str(path), hint=hint)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", file=str(path), hint=hint) from None


def write_json(path: str | Path, payload) -> Path:
    """Write JSON atomically, so a crashed run never leaves half a file behind.

    NaN and infinity become null (strict JSON readers reject the bare tokens); numpy scalars
    and arrays and paths are written as plain JSON values.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(_finite(payload), indent=2, sort_keys=False, default=_json_default,
                      allow_nan=False, ensure_ascii=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _finite(value):
    import numpy as np

    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
