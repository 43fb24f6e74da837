"""The audit of a label column: rare labels removed, and what else looks wrong, reported.

Everything removed is counted, and the suspicious (contradictory duplicates, implication rules
that expose probably-missing labels) is only reported: whether a missing label is an error is
for a human to decide, with the CSV tables 01 writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlclf_utils.data.label_map import LabelMap, sparse_multi_hot
from mlclf_utils.data.labels import (LABEL_COLUMN, label_lists, object_series, require_table_columns,
                                     row_ids)
from mlclf_utils.errors import DataError, ParameterError, check_positive_int

TEXT_PREVIEW_CHARS = 60


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
    ids = row_ids(df)
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


def check_enough_labels(label_map: LabelMap, quality: QualityReport | None = None, *,
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
    check_positive_int("min_label_count", min_label_count)
    check_positive_int("implication_min_support", implication_min_support)
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
    require_table_columns(df, ["text", LABEL_COLUMN, "source_id"])

    labels = label_lists(df)
    ids = row_ids(df)
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
    out[LABEL_COLUMN] = object_series([kept_labels[i] for i in np.flatnonzero(keep)], out.index)
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
        row_ids(out),
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
