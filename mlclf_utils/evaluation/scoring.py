"""Scoring a model the way 04 does: thresholds tuned on validation, metrics on test.

Used wherever a second model must be compared with the first on equal terms: 04's TF-IDF
baseline, and the retrain with hard negatives in 05.
"""

from __future__ import annotations

import numpy as np

from mlclf_utils.errors import truncation_lines
from mlclf_utils.evaluation import metrics, thresholds
from mlclf_utils.serving.predict import Classifier


def tuned_threshold_values(y_val, probs_val, labels, *, min_support: int = 5,
                           fallback="global") -> np.ndarray:
    """Per-label thresholds tuned on validation, as an array in label order: the one rule
    every compared model is read with, so that no model wins by a better cut."""
    tuned = thresholds.tune_thresholds(y_val, probs_val, labels, min_support=min_support,
                                       fallback=fallback)
    return thresholds.thresholds_array(tuned, labels)


def evaluate_model_dir(model_dir, validation, test, labels, *, min_support: int = 5,
                       fallback="global", batch_size: int = 64, windows=None) -> dict:
    """``validation``/``test``: 02 splits, one row per text (datasets with ``text`` and
    ``labels``); ``windows``: 01's window settings when it cut long texts into windows.
    Texts cut at max_length are a printed line per split, as in 04; inside an outer
    ``truncation_lines`` block, a second model on the same splits repeats none of them."""
    classifier = Classifier.from_model_dir(model_dir, windows=windows)
    y_val = np.asarray(validation["labels"], dtype=np.int8)
    y_test = np.asarray(test["labels"], dtype=np.int8)
    with truncation_lines("validation"):
        probs_val = classifier.predict_proba(validation["text"], batch_size=batch_size)
    with truncation_lines("test"):
        probs_test = classifier.predict_proba(test["text"], batch_size=batch_size)
    tuned = thresholds.tune_thresholds(y_val, probs_val, labels, min_support=min_support,
                                       fallback=fallback)
    values = thresholds.thresholds_array(tuned, labels)
    return {
        "thresholds": tuned,
        "per_class": metrics.per_class_table(y_test, probs_test, labels, values),
        "report": metrics.multilabel_report(y_test, probs_test, labels, values),
    }


def comparison_summary(comparison, y_test, reference: str) -> str:
    """04's comparison table as structure and booleans only (for the nbval check).

    Chance is the expected macro-F1 of guessing each label at random at its test prevalence p
    (precision and recall are both p, so F1 is p); the all-negative baseline scores 0.
    """
    y = metrics.as_targets(y_test)
    present = y.any(axis=0)
    chance = float(y.mean(axis=0)[present].mean()) if present.any() else 0.0
    macro_f1 = float(comparison.loc["macro_f1", reference])
    macro_auc = float(comparison.loc["macro_roc_auc", reference])
    return "\n".join([
        f"rows: {list(comparison.index)}",
        f"columns: {list(comparison.columns)}",
        f"tuned macro-F1 above the all-negative baseline: {macro_f1 > 0}",
        f"tuned macro-F1 above chance (random at each label's prevalence): {macro_f1 > chance}",
        f"macro ROC AUC above 0.5: {macro_auc > 0.5}",
    ])
