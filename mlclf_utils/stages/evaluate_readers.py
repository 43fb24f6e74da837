"""Stage 04's files read back: what the sweep, the benchmarks and 05 know of an 04 run.

``stages.evaluate`` writes these files and re-exports every reader here, so callers keep
writing ``evaluate.read_report(run_dir)``. A reader never lets a caller spell a file name of
its own, and a missing or broken file always names itself and says how to make it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError

STAGE = artifacts.EVALUATE
# Where a reader of 04's files sends a person whose run lacks them.
READ_HINT = ("04_evaluate has not finished on this run: run it "
             "(python -m mlclf_utils run --resume RUN)")
# ... and one whose 04 files were changed after 04 wrote them.
CHANGED_HINT = ("04's files were changed after it wrote them: run 04 again "
                "(python -m mlclf_utils run --resume RUN --from 04 --to 04)")


def read_report(run_dir) -> dict:
    """report.json: ``test_at_0.5``, ``test_tuned``, ``validation_tuned`` and ``comparison``."""
    return artifacts.read_json(artifacts.path(run_dir, STAGE, artifacts.REPORT), what="04's report",
                               hint=READ_HINT)


def existing_file(run_dir, name: str, what: str) -> Path:
    """04's file ``name``, or a DataError naming it and how to make it."""
    path = artifacts.path(run_dir, STAGE, name)
    if not path.is_file():
        raise DataError(f"04's {what} not found (the file is missing)", file=str(path),
                        hint=READ_HINT)
    return path


def read_per_class(run_dir) -> pd.DataFrame:
    """per_class_test.csv, indexed by label."""
    return pd.read_csv(existing_file(run_dir, artifacts.PER_CLASS_TEST, "per-class table"),
                       index_col="label")


def read_thresholds(run_dir) -> dict[str, float]:
    """thresholds.json as label -> threshold, in label order."""
    from mlclf_utils.evaluation import thresholds

    return thresholds.load_thresholds(existing_file(run_dir, artifacts.THRESHOLDS, "thresholds"))


def read_misclassifications(run_dir) -> pd.DataFrame:
    """misclassifications.parquet, lists as lists: what 05 explains."""
    from mlclf_utils.evaluation import misclassifications

    return misclassifications.load_misclassifications(
        existing_file(run_dir, artifacts.MISCLASSIFICATIONS, "misclassification table"))


def calibration_of(run_dir) -> dict | None:
    """The per-label calibration 04 put in its bundle (checked), or None when 04 ran with
    ``calibration_method=None``. A run without 04's bundle is an error, not "uncalibrated":
    a later stage must not read a missing 04 as a choice."""
    from mlclf_utils.evaluation.calibration_maps import load_calibration
    from mlclf_utils.serving.bundle_reader import CALIBRATION_FILE

    bundle = artifacts.path(run_dir, STAGE, artifacts.BUNDLE_DIR)
    if not bundle.is_dir():
        raise DataError("04's bundle not found (the folder is missing)", file=str(bundle),
                        hint=READ_HINT)
    path = bundle / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return load_calibration(path)
    except DataError as exc:  # the same place, and what to do about it
        raise DataError(exc.message, file=str(path), hint=CHANGED_HINT) from None
