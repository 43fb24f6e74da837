"""The label map (label name <-> output column) and the multi-hot matrices built from it.

A saved model's output columns follow its ``label_map.json``; every stage after 01 reads that
file instead of re-deriving the order, so a changed sort or a new label can never silently
shift which probability belongs to which label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.artifacts import read_json, write_json
from mlclf_utils.data.labels import LABEL_COLUMN, label_lists
from mlclf_utils.errors import DataError

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
        names = sorted({name for labels in label_lists(df) for name in labels})
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
        write_json(path, {"labels": self.labels})

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


