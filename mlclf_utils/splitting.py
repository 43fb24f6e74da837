"""Train/validation/test split by multi-label iterative stratification.

A random split of multi-label data leaves rare labels out of some splits, and a label with no
positive in train is a label the model can never learn while still being scored on it. So the
split is stratified (iterative-stratification, Sechidis et al. 2011) and then repaired so that
every label has a train positive; every repair is recorded in the report.

iterstrat's ``MultilabelStratifiedShuffleSplit`` renormalises ``train_size`` + ``test_size`` to
cover all rows, so a three-way split is two calls that each set only ``test_size``: test off
all rows, then validation off the rest.

Minimum size: a table needs at least ``max(3, ceil(1 / min(split_proportions)))`` rows (10
for 0.8/0.1/0.1), so that every split's expected size is at least one row; fewer raises
DataError. Every label needs at least one positive row; a label with exactly one ends up in
train and the report lists it as absent from validation/test, where its metrics are undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from .errors import DataError, ParameterError
from .labels import LABEL_COLUMN, LabelMap, _require_columns, _row_ids

SPLITS = ("train", "validation", "test")
SPLIT_COLUMN = "split"
TRAIN, VALIDATION, TEST = 0, 1, 2


def _check_proportions(proportions: object) -> tuple[float, float, float]:
    name = "split_proportions"
    if not isinstance(proportions, (Sequence, np.ndarray)) or isinstance(proportions, str):
        raise ParameterError(name, proportions, "must be three numbers (train, validation, test)")
    values = list(proportions)
    if len(values) != 3 or any(
        isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
        for v in values
    ):
        raise ParameterError(name, proportions, "must be three numbers (train, validation, test)")
    values = [float(v) for v in values]
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ParameterError(name, proportions, "every proportion must be > 0")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ParameterError(name, proportions, f"must sum to 1; they sum to {sum(values):.6g}")
    return values[0], values[1], values[2]


def min_rows_needed(proportions: Sequence[float]) -> int:
    """Fewest rows for which every split's expected size (proportion x rows) is >= 1."""
    p = _check_proportions(proportions)
    return max(3, math.ceil(1.0 / min(p) - 1e-9))


def target_sizes(n_rows: int, proportions: Sequence[float]) -> tuple[int, int, int]:
    """Split sizes aimed at: largest-remainder rounding, so they always sum to ``n_rows``."""
    p = _check_proportions(proportions)
    exact = [share * n_rows for share in p]
    sizes = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in by_remainder[: n_rows - sum(sizes)]:
        sizes[i] += 1
    return sizes[0], sizes[1], sizes[2]


def _held_out(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions (into y) of ``size`` rows stratified away from the rest; one iterstrat call."""
    if y.shape[1] == 1:
        # iterstrat refuses a single column (sklearn calls it binary); its complement makes
        # the same split and also spreads the label-free rows.
        y = np.column_stack([y, ~y[:, 0]])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
    _, held = next(splitter.split(np.zeros((len(y), 1)), y))
    return held


def _stratify(y: np.ndarray, targets: tuple[int, int, int], seed: int) -> np.ndarray:
    codes = np.full(len(y), TRAIN, dtype=np.int8)
    test = _held_out(y, targets[TEST], seed)
    codes[test] = TEST
    rest = np.flatnonzero(codes == TRAIN)
    if len(rest) >= 2:
        n_val = min(max(targets[VALIDATION], 1), len(rest) - 1)
        codes[rest[_held_out(y[rest], n_val, seed)]] = VALIDATION
    return codes


def _pick(rows: np.ndarray, y: np.ndarray, rank: np.ndarray) -> int:
    """The row that disturbs least: fewest labels, then a seeded (not file-order) tie-break."""
    return int(min(rows, key=lambda r: (int(y[r].sum()), int(rank[r]))))


def _ensure_train_positives(
    codes: np.ndarray, y: np.ndarray, rank: np.ndarray, names: list[str], ids: list[str]
) -> list[dict]:
    """Move one row into train for each label the stratifier left out of train."""
    moves = []
    train_counts = y[codes == TRAIN].sum(axis=0)
    for j in np.flatnonzero(train_counts == 0):
        if train_counts[j] > 0:  # an earlier move brought this label along
            continue
        rows = np.flatnonzero(y[:, j] & (codes != TRAIN))
        by_split = {s: rows[codes[rows] == s] for s in (VALIDATION, TEST)}
        # Take it from the split with more positives of the label (it keeps one there more
        # often), then from the larger split, then from validation.
        src = max(
            (VALIDATION, TEST),
            key=lambda s: (len(by_split[s]), int((codes == s).sum()), -s),
        )
        r = _pick(by_split[src], y, rank)
        codes[r] = TRAIN
        train_counts += y[r]
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


def _ensure_nonempty(
    codes: np.ndarray, y: np.ndarray, rank: np.ndarray, ids: list[str], n_labels: int
) -> list[dict]:
    """Give an empty validation/test split one row without costing train a label."""
    moves = []
    for s in (VALIDATION, TEST):
        if (codes == s).any():
            continue
        train_rows = np.flatnonzero(codes == TRAIN)
        train_counts = y[train_rows].sum(axis=0)
        # A train row may leave only if each of its labels has another train positive.
        movable = train_rows[~(y[train_rows] & (train_counts < 2)).any(axis=1)]
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
        r = _pick(movable, y, rank)
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


@dataclass
class SplitReport:
    """Sizes, label balance and repairs of one split; ``summary()`` is what notebooks print."""

    proportions: tuple[float, float, float]
    seed: int
    sizes: dict[str, int]
    targets: dict[str, int]
    # index: label; columns count_<s> and share_<s> for s in all/train/validation/test.
    label_frequencies: pd.DataFrame
    # label, split, deviation_pp: |share in split - share overall| in percentage points.
    worst_deviation: dict
    moves: pd.DataFrame  # source_id, from_split, to_split, label, reason
    labels_missing: dict[str, list[str]]  # split -> labels with no positive there

    @property
    def labels_moved_into_train(self) -> list[str]:
        return [x for x in self.moves["label"].tolist() if x is not None]

    def summary(self) -> dict:
        return {
            "rows": int(sum(self.sizes.values())),
            "train_rows": int(self.sizes["train"]),
            "validation_rows": int(self.sizes["validation"]),
            "test_rows": int(self.sizes["test"]),
            "labels": int(len(self.label_frequencies)),
            "seed": int(self.seed),
            "worst_deviation_label": str(self.worst_deviation["label"]),
            "worst_deviation_split": str(self.worst_deviation["split"]),
            "worst_deviation_pp": round(float(self.worst_deviation["deviation_pp"]), 3),
            "rows_moved": int(len(self.moves)),
            "labels_moved_into_train": len(self.labels_moved_into_train),
            "labels_without_validation_positive": len(self.labels_missing["validation"]),
            "labels_without_test_positive": len(self.labels_missing["test"]),
        }


def _frequencies(
    y: np.ndarray, codes: np.ndarray, names: list[str]
) -> tuple[pd.DataFrame, dict]:
    data: dict[str, np.ndarray] = {}
    shares = []
    for key, mask in [("all", np.ones(len(codes), dtype=bool))] + [
        (name, codes == i) for i, name in enumerate(SPLITS)
    ]:
        count = y[mask].sum(axis=0).astype(np.int64)
        size = int(mask.sum())
        share = count / size if size else np.full(len(names), np.nan)
        data[f"count_{key}"] = count
        data[f"share_{key}"] = share
        shares.append(share)
    freq = pd.DataFrame(data, index=pd.Index(names, name="label"))
    keys = ("all",) + SPLITS
    freq = freq[[f"count_{k}" for k in keys] + [f"share_{k}" for k in keys]]
    dev = np.abs(np.column_stack(shares[1:]) - shares[0][:, None]) * 100.0
    k, s = np.unravel_index(int(np.nanargmax(dev)), dev.shape)
    worst = {"label": names[k], "split": SPLITS[s], "deviation_pp": round(float(dev[k, s]), 3)}
    return freq, worst


def stratified_split(
    df: pd.DataFrame,
    label_map: LabelMap,
    *,
    proportions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> tuple[pd.DataFrame, SplitReport]:
    """Return a copy with a ``split`` column (train/validation/test) and a report.

    Same table, label map, proportions and seed give the same split. Every label of the map
    ends with at least one train positive; rows are moved (and reported) to make sure.
    """
    props = _check_proportions(proportions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ParameterError("seed", seed, "must be an integer in [0, 2**32)")
    if not isinstance(label_map, LabelMap) or len(label_map) == 0:
        raise ParameterError("label_map", label_map, "must be a LabelMap with at least one label")
    _require_columns(df, [LABEL_COLUMN, "source_id"])
    n = len(df)
    needed = min_rows_needed(props)
    if n < needed:
        raise DataError(
            f"too few rows to split: {n} row(s), but split_proportions={props} needs at least "
            f"{needed} so that every split's expected size is at least one row",
            hint="add rows or change split_proportions",
        )
    ids = _row_ids(df)
    names = label_map.names
    y = label_map.to_multi_hot(df[LABEL_COLUMN].tolist(), row_ids=ids).astype(bool)
    no_positive = [names[j] for j in np.flatnonzero(~y.any(axis=0))]
    if no_positive:
        raise DataError(
            f"{len(no_positive)} label(s) of the label map have no positive row at all: "
            f"{no_positive}",
            column=LABEL_COLUMN,
            hint="rebuild the label map from this table (LabelMap.from_table)",
        )

    targets = target_sizes(n, props)
    codes = _stratify(y, targets, int(seed))
    rank = np.random.default_rng(int(seed)).permutation(n)
    moves = _ensure_train_positives(codes, y, rank, names, ids)
    moves += _ensure_nonempty(codes, y, rank, ids, len(names))

    out = df.copy()
    out[SPLIT_COLUMN] = np.array(SPLITS, dtype=object)[codes]
    freq, worst = _frequencies(y, codes, names)
    report = SplitReport(
        proportions=props,
        seed=int(seed),
        sizes={name: int((codes == i).sum()) for i, name in enumerate(SPLITS)},
        targets=dict(zip(SPLITS, targets)),
        label_frequencies=freq,
        worst_deviation=worst,
        moves=pd.DataFrame.from_records(
            moves, columns=["source_id", "from_split", "to_split", "label", "reason"]
        ),
        labels_missing={
            s: [names[j] for j in np.flatnonzero(freq[f"count_{s}"].to_numpy() == 0)]
            for s in ("validation", "test")
        },
    )
    return out, report


def check_train_positives(df: pd.DataFrame, label_map: LabelMap) -> None:
    """Raise DataError naming every label of the map with no positive in the train split."""
    _require_columns(df, [LABEL_COLUMN, SPLIT_COLUMN])
    train = df[df[SPLIT_COLUMN] == "train"]
    y = label_map.to_multi_hot(train[LABEL_COLUMN].tolist(), row_ids=_row_ids(train))
    missing = [label_map.labels[j] for j in np.flatnonzero(y.sum(axis=0) == 0)]
    if missing:
        raise DataError(
            f"{len(missing)} label(s) have no positive example in the train split "
            f"({len(train)} train rows): {missing}",
            column=SPLIT_COLUMN,
            hint="the model cannot learn them; re-split with stratified_split or drop them",
        )
