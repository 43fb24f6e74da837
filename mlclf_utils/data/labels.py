"""Label parsing, the label map, and a data-quality report on the label column.

Labels arrive as strings ("a, b,c") or as lists. They are normalised once, with one policy,
so that "Foo" and "foo " never become two labels and the label map saved with a model matches
the one used in training. Everything this module removes is counted in a report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError, require_columns
from mlclf_utils.artifacts import read_json

LABEL_COLUMN = "labels"
CASES = ("lower", "upper", "keep")
# Separators people actually use in label columns. "/" and "-" are left out on purpose: they
# occur inside real label names ("tcp/ip", "x86-64").
SEPARATOR_CANDIDATES = (",", ";", "|", "\t")
# A candidate separator is reported only if at least this share of the non-empty values
# (and at least two values) contain it, so one odd label with a ';' in it is no alarm.
WRONG_SEPARATOR_MIN_SHARE = 0.05
TEXT_PREVIEW_CHARS = 60


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


def _row_ids(df: pd.DataFrame) -> list[str]:
    """Row names for error messages: source_id if the table has it, else the index."""
    if "source_id" in df.columns:
        return [str(v) for v in df["source_id"].tolist()]
    return [str(v) for v in df.index]


def _object_series(values: Sequence[object], index: pd.Index) -> pd.Series:
    """A Series holding one Python object (here a list) per row; pandas never unpacks it."""
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return pd.Series(arr, index=index, dtype=object)


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    require_columns(df, columns, "table", "the table")


def normalise_label_column(df: pd.DataFrame, policy: LabelPolicy = LabelPolicy()) -> pd.DataFrame:
    """Return a copy whose ``labels`` holds normalised lists of names.

    Checks the separator first: labels like "a;b" with label_sep="," would otherwise become
    one label "a;b" per row, which trains without error and means nothing.
    """
    _require_columns(df, [LABEL_COLUMN])
    ids = _row_ids(df)
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
    out[LABEL_COLUMN] = _object_series(parsed, out.index)
    return out


def _label_lists(df: pd.DataFrame) -> list[list[str]]:
    """The labels column as lists of str; raises naming the rows that are not lists yet."""
    _require_columns(df, [LABEL_COLUMN])
    values = df[LABEL_COLUMN].tolist()
    bad = [
        row_id
        for row_id, v in zip(_row_ids(df), values)
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


@dataclass
class LabelMap:
    """Label name <-> column index of the model's output; saved with every model.

    ``from_table`` sorts the names so the same data always gives the same map; the
    constructor and ``from_json`` keep the order given, because a saved model's output
    columns follow the saved order.
    """

    labels: list[str]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        bad = [x for x in self.labels if not isinstance(x, str) or x == ""]
        if bad:
            raise DataError(f"label names must be non-empty strings; got {bad[:5]!r}")
        self._index = {name: i for i, name in enumerate(self.labels)}
        if len(self._index) != len(self.labels):
            dupes = sorted({x for x in self.labels if self.labels.count(x) > 1})
            raise DataError(f"label names must be unique; repeated: {dupes[:10]!r}")

    @classmethod
    def from_table(cls, df: pd.DataFrame) -> "LabelMap":
        names = sorted({name for labels in _label_lists(df) for name in labels})
        if not names:
            raise DataError(
                "no labels in the table: every row has an empty list", column=LABEL_COLUMN
            )
        return cls(names)

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index_of(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise DataError(
                f"unknown label {name!r}; the label map has {len(self)} labels"
            ) from None

    def to_json(self, path: str | Path) -> None:
        text = json.dumps({"labels": self.labels}, indent=2, ensure_ascii=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> "LabelMap":
        path = Path(path)
        data = read_json(path, what="label map")
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise DataError('expected an object {"labels": [...]}', file=str(path))
        try:
            return cls(data["labels"])
        except DataError as err:
            raise DataError(str(err), file=str(path)) from None

    def to_multi_hot(
        self, label_lists: Iterable[Sequence[str]], *, row_ids: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, K) float32 0/1 matrix, the target format of BCE-with-logits.

        An unknown label raises DataError naming the rows (by ``row_ids`` if given, else by
        position), because a silently ignored label is a silently wrong target.
        """
        label_lists = list(label_lists)
        names = list(row_ids) if row_ids is not None else [str(i) for i in range(len(label_lists))]
        out = np.zeros((len(label_lists), len(self.labels)), dtype=np.float32)
        unknown: dict[str, list[str]] = {}
        for r, labels in enumerate(label_lists):
            if isinstance(labels, str) or not isinstance(labels, (list, tuple, np.ndarray)):
                raise DataError(
                    f"expected a list of labels, got {type(labels).__name__} {labels!r}",
                    rows=[names[r]],
                    hint="run normalise_label_column(df, policy) first",
                )
            for name in labels:
                j = self._index.get(name) if isinstance(name, str) else None
                if j is None:
                    unknown.setdefault(str(name), []).append(names[r])
                else:
                    out[r, j] = 1.0
        if unknown:
            shown = sorted(unknown)[:10]
            rows = [row for name in sorted(unknown) for row in unknown[name]]
            raise DataError(
                f"{len(unknown)} label(s) not in the label map: {shown!r}",
                rows=rows,
                hint="rebuild the label map from this table, or drop those labels",
            )
        return out

    def from_multi_hot(self, matrix: np.ndarray) -> list[list[str]]:
        """Label lists from a 0/1 matrix; probabilities are refused (threshold them first)."""
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[1] != len(self.labels):
            raise DataError(
                f"expected a matrix of shape (N, {len(self.labels)}); got {m.shape}"
            )
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise DataError(
                "expected a 0/1 matrix; got other values (apply per-label thresholds first)"
            )
        m = m.astype(bool)
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in m]


@dataclass
class QualityReport:
    """What quality_report found and removed; ``summary()`` is what the notebook prints."""

    rows_in: int
    rows_out: int
    drop_empty: bool
    min_label_count: int
    implication_min_support: int
    implication_min_confidence: float
    empty_rows: list[str]  # source_ids of rows that had no label in the input
    emptied_rows: list[str]  # source_ids of rows whose only labels were rare
    rare_labels: dict[str, int]  # removed label -> its count
    label_counts: pd.Series  # kept label -> count in the output table, sorted by name
    duplicate_text_rows: int  # output rows whose text occurs more than once
    conflicting_duplicates: pd.DataFrame  # text, n_rows, source_ids, label_sets
    implications: pd.DataFrame  # antecedent, consequent, support, confidence, n_violations
    implication_violations: pd.DataFrame  # source_id, text_preview, antecedent, missing_label

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def summary(self) -> dict:
        n_labels_out = int(len(self.label_counts))
        mean_labels = (
            round(float(self.label_counts.sum()) / self.rows_out, 3) if self.rows_out else 0.0
        )
        return {
            "rows_in": int(self.rows_in),
            "rows_out": int(self.rows_out),
            "rows_dropped": int(self.rows_dropped),
            "rows_without_labels": len(self.empty_rows),
            "rows_emptied_by_rare_labels": len(self.emptied_rows),
            "drop_empty": bool(self.drop_empty),
            "min_label_count": int(self.min_label_count),
            "labels_in": n_labels_out + len(self.rare_labels),
            "labels_out": n_labels_out,
            "rare_labels_removed": len(self.rare_labels),
            "rare_label_occurrences_removed": int(sum(self.rare_labels.values())),
            "labels_per_row_mean": mean_labels,
            "duplicate_text_rows": int(self.duplicate_text_rows),
            "conflicting_duplicate_groups": int(len(self.conflicting_duplicates)),
            "implication_rules": int(len(self.implications)),
            "possibly_missing_labels": int(len(self.implication_violations)),
            "cooccurrence": "sparse",  # Y^T Y of the implication rules; no K x K matrix
        }


def _preview(text: object) -> str:
    text = str(text)
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 3] + "..."


def _conflicting_duplicates(df: pd.DataFrame, labels: list[list[str]]) -> tuple[int, pd.DataFrame]:
    texts = df["text"].tolist()
    ids = _row_ids(df)
    dup = df["text"].duplicated(keep=False).to_numpy()
    groups: dict[object, list[int]] = {}
    for i in np.flatnonzero(dup):
        groups.setdefault(texts[i], []).append(int(i))
    records = []
    for text, members in groups.items():
        sets: list[list[str]] = []
        for i in members:
            s = sorted(set(labels[i]))
            if s not in sets:
                sets.append(s)
        if len(sets) > 1:
            records.append(
                {
                    "text": text,
                    "n_rows": len(members),
                    "source_ids": [ids[i] for i in members],
                    "label_sets": sets,
                }
            )
    columns = ["text", "n_rows", "source_ids", "label_sets"]
    return int(dup.sum()), pd.DataFrame.from_records(records, columns=columns)


def sparse_multi_hot(label_lists: Sequence[Sequence[str]], names: Sequence[str]):
    """(N, K) scipy CSR 0/1 matrix (int32): the multi-hot without its N x K dense memory.

    Labels not in ``names`` are ignored here; callers pass lists already filtered to them.
    """
    from scipy import sparse

    index = {name: j for j, name in enumerate(names)}
    indptr = [0]
    indices: list[int] = []
    for row in label_lists:
        cols = sorted({index[x] for x in row if x in index})
        indices.extend(cols)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.int32)
    return sparse.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                             shape=(len(indptr) - 1, len(names)))


def _implications(
    y,
    names: list[str],
    ids: list[str],
    texts: list[object],
    min_support: int,
    min_confidence: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rules A => B from the co-occurrence matrix Y^T Y, computed sparse.

    A dense K x K product was 50,000^2 cells for 50,000 labels (OpenBLAS segfaulted in the
    kernel); the sparse product holds only the pairs that occur together, and since a rule
    needs confidence > 0 it finds exactly the rules the dense one did.
    """
    from scipy import sparse

    rule_cols = ["antecedent", "consequent", "support", "confidence", "n_violations"]
    viol_cols = ["source_id", "text_preview", "antecedent", "missing_label"]
    y = sparse.csr_matrix(y)
    k = y.shape[1]
    if k < 2 or y.shape[0] == 0:
        return pd.DataFrame(columns=rule_cols), pd.DataFrame(columns=viol_cols)
    y = y.astype(np.int64)
    support = np.asarray(y.sum(axis=0)).ravel()
    co = (y.T @ y).tocoo()
    a_idx, b_idx, together = co.row, co.col, co.data
    conf = together / support[a_idx]
    ok = (a_idx != b_idx) & (support[a_idx] >= min_support) & (conf >= min_confidence)
    a_idx, b_idx, together, cnf = a_idx[ok], b_idx[ok], together[ok], conf[ok]
    sup = support[a_idx]
    # Strongest rules first; names break ties so the order never depends on the input order.
    order = sorted(
        range(len(a_idx)),
        key=lambda i: (-cnf[i], -sup[i], names[a_idx[i]], names[b_idx[i]]),
    )
    rules = []
    violations = []
    columns = y.tocsc()
    for i in order:
        a, b = int(a_idx[i]), int(b_idx[i])
        n_viol = int(sup[i] - together[i])
        rules.append(
            {
                "antecedent": names[a],
                "consequent": names[b],
                "support": int(sup[i]),
                "confidence": round(float(cnf[i]), 3),
                "n_violations": n_viol,
            }
        )
        if n_viol:
            with_a = columns.indices[columns.indptr[a]:columns.indptr[a + 1]]
            with_b = columns.indices[columns.indptr[b]:columns.indptr[b + 1]]
            for r in np.setdiff1d(with_a, with_b):
                violations.append(
                    {
                        "source_id": ids[r],
                        "text_preview": _preview(texts[r]),
                        "antecedent": names[a],
                        "missing_label": names[b],
                    }
                )
    return (
        pd.DataFrame.from_records(rules, columns=rule_cols),
        pd.DataFrame.from_records(violations, columns=viol_cols),
    )


def check_enough_labels(label_map: "LabelMap", quality: "QualityReport" | None = None, *,
                        file: str | None = None, column: str | None = None) -> None:
    """Refuse a label set of one: every kept row then carries it, so there is nothing to learn.

    Without this, 03 trained a one-output model and 04 died on a shape error. Chosen over a
    binary path because a yes/no task needs negatives, which a labels column without empty
    rows cannot hold; the hint says how to express one.
    """
    if len(label_map) >= 2:
        return
    only = label_map.labels[0] if len(label_map) else None
    rare = sorted((quality.rare_labels if quality is not None else {}).items())
    why = ""
    if rare:
        shown = ", ".join(f"{name!r} ({n})" for name, n in rare[:10])
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        why = (f"; min_label_count={quality.min_label_count} removed the others: {shown}{more}")
    raise DataError(
        f"only one label ({only!r}) is left{why}. Multi-label classification needs at least "
        "two labels: with one, every kept row carries it and there is nothing to learn",
        file=file, column=column,
        hint=("lower min_label_count" if rare else
              f"for a yes/no task, label the other rows too (e.g. 'not-{only}')"),
    )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(name, value, f"must be an integer >= {minimum}")


def quality_report(
    df: pd.DataFrame,
    *,
    min_label_count: int,
    implication_min_support: int = 20,
    implication_min_confidence: float = 0.95,
    drop_empty: bool = True,
) -> tuple[pd.DataFrame, QualityReport]:
    """Filter rare labels (and rows left empty) and report what else looks wrong.

    Expects normalised label lists (normalise_label_column). Conflicting duplicates and
    implication rules are computed on the filtered table, i.e. on what training will see,
    and are only reported: whether a missing label is an error is for a human to decide.
    """
    _check_int("min_label_count", min_label_count, 1)
    _check_int("implication_min_support", implication_min_support, 1)
    if (
        isinstance(implication_min_confidence, bool)
        or not isinstance(implication_min_confidence, (int, float, np.floating))
        or not 0 < implication_min_confidence <= 1
    ):
        raise ParameterError(
            "implication_min_confidence", implication_min_confidence, "must be in (0, 1]"
        )
    if not isinstance(drop_empty, bool):
        raise ParameterError("drop_empty", drop_empty, "must be True or False")
    _require_columns(df, ["text", LABEL_COLUMN, "source_id"])

    labels = _label_lists(df)
    ids = _row_ids(df)
    counts: dict[str, int] = {}
    for row in labels:
        for name in set(row):
            counts[name] = counts.get(name, 0) + 1
    rare = {name: counts[name] for name in sorted(counts) if counts[name] < min_label_count}

    empty_rows = [ids[i] for i, row in enumerate(labels) if not row]
    kept_labels = [[x for x in row if x not in rare] for row in labels]
    emptied_rows = [
        ids[i] for i, (old, new) in enumerate(zip(labels, kept_labels)) if old and not new
    ]
    keep = np.array([bool(row) or not drop_empty for row in kept_labels], dtype=bool)

    out = df.loc[keep].copy()
    out[LABEL_COLUMN] = _object_series([kept_labels[i] for i in np.flatnonzero(keep)], out.index)
    out = out.reset_index(drop=True)
    out_labels = out[LABEL_COLUMN].tolist()

    names = sorted(name for name in counts if name not in rare)
    y = sparse_multi_hot(out_labels, names)  # sparse: 50,000 labels fit (issue 12)
    label_counts = pd.Series(
        np.asarray(y.sum(axis=0)).ravel().astype(np.int64),
        index=pd.Index(names, name="label"), name="count",
    )
    n_dup, conflicts = _conflicting_duplicates(out, out_labels)
    rules, violators = _implications(
        y,
        names,
        _row_ids(out),
        out["text"].tolist(),
        int(implication_min_support),
        float(implication_min_confidence),
    )
    report = QualityReport(
        rows_in=len(df),
        rows_out=len(out),
        drop_empty=drop_empty,
        min_label_count=int(min_label_count),
        implication_min_support=int(implication_min_support),
        implication_min_confidence=float(implication_min_confidence),
        empty_rows=empty_rows,
        emptied_rows=emptied_rows,
        rare_labels=rare,
        label_counts=label_counts,
        duplicate_text_rows=n_dup,
        conflicting_duplicates=conflicts,
        implications=rules,
        implication_violations=violators,
    )
    return out, report
