"""The misclassification table: one row per text, with what went wrong and how confidently.

Stage 05 explains these rows, and people read them, so the table is saved twice: Parquet keeps
the lists as lists, CSV opens in a spreadsheet. ``probabilities`` is a JSON string
(label -> probability, rounded to 4 places, in label order) rather than a dict: a dict column
becomes a Parquet struct with one field per label, tied to this label set, and cannot go into a
CSV cell at all; a JSON string round-trips through both unchanged. ``parse_probabilities``
turns it back into a dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError
from mlclf_utils.evaluation.metrics import check_inputs, threshold_vector

FILE_STEM = "misclassifications"
LIST_COLUMNS = ("true_labels", "predicted_labels", "false_positives", "false_negatives")
COLUMNS = ("source_id", "text", *LIST_COLUMNS, "n_errors", "probabilities", "max_error_margin")
CSV_LIST_SEPARATOR = ","
PROBABILITY_DECIMALS = 4


def _as_list(values, name: str, n: int) -> list:
    if isinstance(values, (str, bytes)):
        raise ParameterError(name, values, "must be a sequence with one entry per text")
    out = list(values)
    if len(out) != n:
        raise DataError(f"{name} has {len(out)} entries but y_true has {n} rows")
    return out


def _object_column(values: list) -> np.ndarray:
    """An object array holding one list per row; numpy would otherwise try to stack them."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def misclassification_table(texts, source_ids, y_true, probs, labels, thresholds) -> pd.DataFrame:
    """One row per text (errors or not); ``n_errors > 0`` selects the misclassified ones.

    ``max_error_margin`` is how confidently wrong the text is: the largest p - threshold over
    its false positives and threshold - p over its false negatives; NaN without errors.
    """
    y, p, names = check_inputs(y_true, probs, labels)
    n, k = y.shape
    texts = _as_list(texts, "texts", n)
    ids = [str(x) for x in _as_list(source_ids, "source_ids", n)]
    t = threshold_vector(thresholds, k)
    pred = p >= t[None, :]
    fp, fn = ~y & pred, y & ~pred
    margin = np.where(fp, p - t, np.where(fn, t - p, -np.inf)).max(axis=1)
    n_errors = np.count_nonzero(fp | fn, axis=1)
    label_array = np.array(names, dtype=object)
    rounded = np.round(p, PROBABILITY_DECIMALS).tolist()

    def lists(mask: np.ndarray) -> np.ndarray:
        return _object_column([label_array[row].tolist() for row in mask])

    return pd.DataFrame({
        "source_id": ids,
        "text": [str(x) for x in texts],
        "true_labels": lists(y),
        "predicted_labels": lists(pred),
        "false_positives": lists(fp),
        "false_negatives": lists(fn),
        "n_errors": n_errors.astype(np.int64),
        "probabilities": [json.dumps(dict(zip(names, row)), ensure_ascii=False) for row in rounded],
        "max_error_margin": np.where(n_errors > 0, margin, np.nan),
    })


def parse_probabilities(value) -> dict[str, float]:
    """One ``probabilities`` cell back to a dict label -> probability."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as err:
        raise DataError(f"probabilities cell is not a JSON object: {err}",
                        column="probabilities") from None
    if not isinstance(parsed, dict):
        raise DataError("probabilities cell is not a JSON object", column="probabilities")
    return parsed


def _check_table(table) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ParameterError("table", type(table).__name__, "must be a misclassification table")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"not a misclassification table: no column(s) {missing}",
                        column=missing[0])


def save_misclassifications(table: pd.DataFrame, folder) -> dict[str, Path]:
    """Write misclassifications.parquet and .csv; returns {"parquet": path, "csv": path}.

    In the CSV the lists are comma-separated names. A label name containing a comma would make
    that ambiguous, so it is refused before anything is written.
    """
    _check_table(table)
    with_comma = sorted({name for col in LIST_COLUMNS for row in table[col] for name in row
                         if CSV_LIST_SEPARATOR in name})
    if with_comma:
        raise DataError(
            f"label names containing {CSV_LIST_SEPARATOR!r} cannot be listed in the CSV: "
            f"{with_comma[:5]}", hint="rename those labels (label_sep decides how they are split)"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"parquet": folder / f"{FILE_STEM}.parquet", "csv": folder / f"{FILE_STEM}.csv"}
    out = table[list(COLUMNS)].copy()
    for col in LIST_COLUMNS:
        out[col] = _object_column([list(row) for row in out[col]])
    out.to_parquet(paths["parquet"], index=False)
    for col in LIST_COLUMNS:
        out[col] = [CSV_LIST_SEPARATOR.join(row) for row in out[col]]
    out.to_csv(paths["csv"], index=False)
    return paths


def load_misclassifications(path) -> pd.DataFrame:
    """Read either file back into the same shape: lists as lists, source_id as str."""
    path = Path(path)
    if not path.exists():
        raise DataError("misclassification file not found", file=str(path))
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        for col in LIST_COLUMNS:
            table[col] = _object_column([[str(x) for x in row] for row in table[col]])
    elif path.suffix == ".csv":
        table = pd.read_csv(path, dtype={"source_id": str, "text": str, "probabilities": str},
                            keep_default_na=False, na_values={"max_error_margin": [""]})
        for col in LIST_COLUMNS:
            table[col] = _object_column(
                [str(v).split(CSV_LIST_SEPARATOR) if str(v) else [] for v in table[col]])
    else:
        raise DataError("expected a .parquet or .csv file", file=str(path))
    _check_table(table)
    return table


def worst_examples(table: pd.DataFrame, label: str, kind: str = "fp", n: int = 5) -> pd.DataFrame:
    """The n texts where ``label`` was most confidently wrong.

    kind="fp": wrongly predicted, highest probability first; kind="fn": missed, lowest
    probability first. Adds a ``probability`` column for that label; ties keep table order.
    """
    _check_table(table)
    if kind not in ("fp", "fn"):
        raise ParameterError("kind", kind,
                             'must be "fp" (false positives) or "fn" (false negatives)')
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError("n", n, "must be an integer >= 1")
    column = "false_positives" if kind == "fp" else "false_negatives"
    hits = table[[label in row for row in table[column]]].copy()
    if hits.empty:
        first = parse_probabilities(table["probabilities"].iloc[0]) if len(table) else {}
        if label not in first:
            raise DataError(f"unknown label {label!r}: the table has no probability for it")
        return hits.assign(probability=pd.Series(dtype=np.float64))
    hits["probability"] = [parse_probabilities(v)[label] for v in hits["probabilities"]]
    hits = hits.sort_values("probability", ascending=(kind == "fn"), kind="stable")
    return hits.head(int(n))
