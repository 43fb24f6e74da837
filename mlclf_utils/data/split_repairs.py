"""Repairs after stratification: no label without a train positive, no empty split.

Iterative stratification balances label shares but promises neither; a label the model never
saw as positive cannot be learned, and an empty test split scores nothing. Each repair moves
the one row that disturbs the balance least and records why.
"""

from __future__ import annotations

import numpy as np

from mlclf_utils.data.split_report import SPLITS, TEST, TRAIN, VALIDATION, column_counts
from mlclf_utils.errors import DataError


def _pick(rows: np.ndarray, sizes: np.ndarray, rank: np.ndarray) -> int:
    """The row that disturbs least: fewest labels, then a seeded (not file-order) tie-break."""
    return int(min(rows, key=lambda r: (int(sizes[r]), int(rank[r]))))


def ensure_train_positives(
    codes: np.ndarray, y, rank: np.ndarray, names: list[str], ids: list[str],
    sources: tuple[int, ...] = (VALIDATION, TEST),
) -> list[dict]:
    """Move one row into train for each label the stratifier left out of train.

    ``y`` is a sparse (N, K) 0/1 matrix; ``sources`` are the splits a row may come from (a
    given test split is never touched).
    """
    from scipy import sparse

    y = sparse.csr_matrix(y)
    columns = y.tocsc()
    sizes = np.diff(y.indptr)
    moves = []
    train_counts = column_counts(y, codes == TRAIN)
    for j in np.flatnonzero(train_counts == 0):
        if train_counts[j] > 0:  # an earlier move brought this label along
            continue
        rows = columns.indices[columns.indptr[j]:columns.indptr[j + 1]]
        rows = rows[codes[rows] != TRAIN]
        by_split = {s: rows[codes[rows] == s] for s in sources}
        if not any(len(v) for v in by_split.values()):
            continue
        # Take it from the split with more positives of the label (it keeps one there more
        # often), then from the larger split, then from validation.
        src = max(
            sources,
            key=lambda s: (len(by_split[s]), int((codes == s).sum()), -s),
        )
        r = _pick(by_split[src], sizes, rank)
        codes[r] = TRAIN
        train_counts[y.indices[y.indptr[r]:y.indptr[r + 1]]] += 1
        moves.append(
            {
                "source_id": ids[r],
                "from_split": SPLITS[src],
                "to_split": "train",
                "label": names[j],
                "reason": f"label {names[j]!r} had no positive in train",
            }
        )
    return moves


def ensure_nonempty(
    codes: np.ndarray, y, rank: np.ndarray, ids: list[str], n_labels: int
) -> list[dict]:
    """Give an empty validation/test split one row without costing train a label."""
    from scipy import sparse

    y = sparse.csr_matrix(y)
    sizes = np.diff(y.indptr)
    moves = []
    for s in (VALIDATION, TEST):
        if (codes == s).any():
            continue
        train_rows = np.flatnonzero(codes == TRAIN)
        train_counts = column_counts(y, codes == TRAIN)
        # A train row may leave only if each of its labels has another train positive.
        only = (train_counts < 2).astype(np.int64)
        movable = train_rows[np.asarray(y[train_rows] @ only).ravel() == 0]
        src = TRAIN
        if len(movable) == 0:
            src = TEST if s == VALIDATION else VALIDATION
            movable = np.flatnonzero(codes == src)
            if len(movable) < 2:
                raise DataError(
                    f"cannot give the {SPLITS[s]} split any row: with {len(codes)} rows and "
                    f"{n_labels} labels, every train row is the only train positive of some "
                    "label",
                    hint="add rows, raise min_label_count to drop rare labels, or change "
                    "split_proportions",
                )
        r = _pick(movable, sizes, rank)
        codes[r] = s
        moves.append(
            {
                "source_id": ids[r],
                "from_split": SPLITS[src],
                "to_split": SPLITS[s],
                "label": None,
                "reason": f"the {SPLITS[s]} split was empty",
            }
        )
    return moves
