"""Label parsing: how a labels cell (a separated string or a list) becomes a clean list of names.

Labels arrive as strings ("a, b,c") or as lists. They are normalised once, with one policy,
so that "Foo" and "foo " never become two labels and the label map saved with a model matches
the one used in training. The label map lives in ``label_map``, the audit of the label column
in ``label_quality``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError, require_columns

LABEL_COLUMN = "labels"
CASES = ("lower", "upper", "keep")
# Separators people actually use in label columns. "/" and "-" are left out on purpose: they
# occur inside real label names ("tcp/ip", "x86-64").
SEPARATOR_CANDIDATES = (",", ";", "|", "\t")
# A candidate separator is reported only if at least this share of the non-empty values
# (and at least two values) contain it, so one odd label with a ';' in it is no alarm.
WRONG_SEPARATOR_MIN_SHARE = 0.05


@dataclass(frozen=True)
class LabelPolicy:
    """How a labels value becomes a list of label names.

    The notebook parameters are ``label_sep``, ``label_case``, ``label_strip`` and
    ``label_dedupe``; errors name those.
    """

    separator: str = ","
    case: str = "lower"
    strip: bool = True
    dedupe: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.separator, str) or self.separator == "":
            raise ParameterError("label_sep", self.separator, "must be a non-empty string")
        if self.case not in CASES:
            raise ParameterError("label_case", self.case, f"must be one of {list(CASES)}")
        if not isinstance(self.strip, bool):
            raise ParameterError("label_strip", self.strip, "must be True or False")
        if not isinstance(self.dedupe, bool):
            raise ParameterError("label_dedupe", self.dedupe, "must be True or False")


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return False


def _normalise_pieces(pieces: Iterable[str], policy: LabelPolicy) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for piece in pieces:
        if piece.strip() == "":
            # Whitespace-only pieces are dropped even when strip=False: " " is never a label.
            continue
        if policy.strip:
            piece = piece.strip()
        if policy.case == "lower":
            piece = piece.lower()
        elif policy.case == "upper":
            piece = piece.upper()
        if policy.dedupe:
            if piece in seen:
                continue
            seen.add(piece)
        out.append(piece)
    return out


def parse_labels(
    value: object, policy: LabelPolicy = LabelPolicy(), *, where: str | None = None
) -> list[str]:
    """Turn one labels value into a clean list of names, keeping first-occurrence order.

    A string is split on ``policy.separator``; a list, tuple or 1-d array is taken as already
    split (its items are not split again) but still normalised; None/NaN means no labels.
    Anything else raises DataError naming ``where`` (usually the row's source_id).
    """
    rows = [where] if where is not None else None
    if _is_missing(value):
        return []
    if isinstance(value, str):
        return _normalise_pieces(value.split(policy.separator), policy)
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise DataError(
            f"labels must be a string or a flat list; got a {value.ndim}-d array", rows=rows
        )
    if isinstance(value, (list, tuple, np.ndarray)):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise DataError(
                f"every label must be a string; got {bad[0]!r} ({type(bad[0]).__name__})",
                rows=rows,
            )
        return _normalise_pieces((str(item) for item in value), policy)
    raise DataError(
        f"labels must be a string, a list of strings or empty; got {value!r} "
        f"({type(value).__name__})",
        rows=rows,
    )


def detect_wrong_separator(values: Iterable[object], separator: str = ",") -> str | None:
    """Guess the separator the data really uses, when it is not ``separator``.

    Returns the candidate found in most values, but only if no value contains ``separator``
    and the candidate occurs in at least 5% of the non-empty string values (and in two or
    more). Non-string values are ignored. None means nothing looks wrong.
    """
    strings = [v for v in values if isinstance(v, str) and v.strip() != ""]
    if not strings or any(separator in v for v in strings):
        return None
    best, best_count = None, 0
    for candidate in SEPARATOR_CANDIDATES:
        if candidate == separator or candidate in separator:
            continue
        count = sum(candidate in v for v in strings)
        if count > best_count:
            best, best_count = candidate, count
    if best is None or best_count < max(2, math.ceil(WRONG_SEPARATOR_MIN_SHARE * len(strings))):
        return None
    return best


def row_ids(df: pd.DataFrame) -> list[str]:
    """Row names for error messages: source_id if the table has it, else the index."""
    if "source_id" in df.columns:
        return [str(v) for v in df["source_id"].tolist()]
    return [str(v) for v in df.index]


def object_series(values: Sequence[object], index: pd.Index) -> pd.Series:
    """A Series holding one Python object (here a list) per row; pandas never unpacks it."""
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return pd.Series(arr, index=index, dtype=object)


def require_table_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """The one wording for a table missing a column, shared by the label and split steps."""
    require_columns(df, columns, "table", "the table")


def normalise_label_column(df: pd.DataFrame, policy: LabelPolicy = LabelPolicy()) -> pd.DataFrame:
    """Return a copy whose ``labels`` holds normalised lists of names.

    Checks the separator first: labels like "a;b" with label_sep="," would otherwise become
    one label "a;b" per row, which trains without error and means nothing.
    """
    require_table_columns(df, [LABEL_COLUMN])
    ids = row_ids(df)
    values = df[LABEL_COLUMN].tolist()
    wrong = detect_wrong_separator(values, policy.separator)
    if wrong is not None:
        hits = [(i, v) for i, v in zip(ids, values) if isinstance(v, str) and wrong in v]
        raise DataError(
            f"labels look separated by {wrong!r} but label_sep={policy.separator!r} "
            f"({len(hits)} of {len(values)} values contain {wrong!r}, none contains "
            f"{policy.separator!r}; e.g. {hits[0][1]!r})",
            column=LABEL_COLUMN,
            rows=[i for i, _ in hits],
            hint=f"set label_sep={wrong!r}",
        )
    parsed: list[list[str]] = []
    bad: list[str] = []
    first_problem = ""
    for row_id, value in zip(ids, values):
        try:
            parsed.append(parse_labels(value, policy, where=row_id))
        except DataError as err:
            bad.append(row_id)
            if not first_problem:
                first_problem = str(err)
            parsed.append([])
    if bad:
        raise DataError(
            f"{len(bad)} value(s) are not a string or a list of strings; first: {first_problem}",
            column=LABEL_COLUMN,
            rows=bad,
        )
    out = df.copy()
    out[LABEL_COLUMN] = object_series(parsed, out.index)
    return out


def label_lists(df: pd.DataFrame) -> list[list[str]]:
    """The labels column as lists of str; raises naming the rows that are not lists yet."""
    require_table_columns(df, [LABEL_COLUMN])
    values = df[LABEL_COLUMN].tolist()
    bad = [
        row_id
        for row_id, v in zip(row_ids(df), values)
        if not isinstance(v, (list, tuple, np.ndarray)) or not all(isinstance(x, str) for x in v)
    ]
    if bad:
        raise DataError(
            "labels must be lists of strings here",
            column=LABEL_COLUMN,
            rows=bad,
            hint="run normalise_label_column(df, policy) first",
        )
    return [[str(x) for x in v] for v in values]


