"""Train/validation/test split by multi-label iterative stratification.

A random split of multi-label data leaves rare labels out of some splits, and a label with no
positive in train is a label the model can never learn while still being scored on it. So the
split is stratified (iterative-stratification, Sechidis et al. 2011) and then repaired so that
every label has a train positive (``split_repairs``); every repair is recorded in the report
(``split_report``).

iterstrat's ``MultilabelStratifiedShuffleSplit`` renormalises ``train_size`` + ``test_size`` to
cover all rows, so a three-way split is two calls that each set only ``test_size``: test off
all rows, then validation off the rest.

Minimum size: a table needs at least ``max(3, ceil(1 / min(split_proportions)))`` rows (10
for 0.8/0.1/0.1), so that every split's expected size is at least one row; fewer raises
DataError. Every label needs at least one positive row; a label with exactly one ends up in
train and the report lists it as absent from validation/test, where its metrics are undefined.

Scale: the label matrix is sparse (50,000 labels fit), and iterstrat's cost grows with
rows x labels per label, so with more than STRATIFY_MAX_LABELS labels only the most frequent
are stratified on; the others are placed by the train-positive repair. The summary says so
(``stratified_on_labels``).

A given split (``make_splits(..., given=True)``, a ``split`` column from the source) is
kept: only a missing validation split is carved out of train, by the same stratification.
Labels without a positive in the given train split are removed and counted, like rare labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from mlclf_utils.data.label_map import LabelMap, sparse_multi_hot
from mlclf_utils.data.labels import LABEL_COLUMN, require_table_columns, row_ids
from mlclf_utils.data.split_repairs import ensure_nonempty, ensure_train_positives
from mlclf_utils.data.split_report import (SPLITS, TEST, TRAIN, VALIDATION, SplitReport,
                                           build_report, column_counts)
from mlclf_utils.errors import DataError, ParameterError

# iterstrat recounts every label once per label it places: beyond this many labels, stratify on
# the most frequent ones only: 200 labels on 20,000 rows take about 2 s per iterstrat call,
# 1,000 took 27 s. The demo keeps 43 labels.
STRATIFY_MAX_LABELS = 200
SPLIT_COLUMN = "split"


def check_proportions(proportions: object) -> tuple[float, float, float]:
    """Three finite shares > 0 summing to 1; shared with 01's config, so a bad value fails
    before any row is read."""
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
    p = check_proportions(proportions)
    return max(3, math.ceil(1.0 / min(p) - 1e-9))


def target_sizes(n_rows: int, proportions: Sequence[float]) -> tuple[int, int, int]:
    """Split sizes aimed at: largest-remainder rounding, so they always sum to ``n_rows``."""
    p = check_proportions(proportions)
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


def stratified_codes(y: np.ndarray, targets: tuple[int, int, int], seed: int) -> np.ndarray:
    """Each row's split code as iterstrat alone places it, before any repair (tests force it)."""
    codes = np.full(len(y), TRAIN, dtype=np.int8)
    test = _held_out(y, targets[TEST], seed)
    codes[test] = TEST
    rest = np.flatnonzero(codes == TRAIN)
    if len(rest) >= 2:
        n_val = min(max(targets[VALIDATION], 1), len(rest) - 1)
        codes[rest[_held_out(y[rest], n_val, seed)]] = VALIDATION
    return codes


def _label_matrix(df: pd.DataFrame, label_map: LabelMap) -> tuple[list[str], object]:
    """Row ids and the sparse (N, K) label matrix; an unknown label names its rows."""
    ids = row_ids(df)
    lists = df[LABEL_COLUMN].tolist()
    unknown: dict[str, list[str]] = {}
    for row_id, row in zip(ids, lists):
        if isinstance(row, str) or not isinstance(row, (list, tuple, np.ndarray)):
            raise DataError(f"expected a list of labels, got {type(row).__name__} {row!r}",
                            rows=[row_id], hint="run normalise_label_column(df, policy) first")
        for name in row:
            if name not in label_map:
                unknown.setdefault(str(name), []).append(row_id)
    if unknown:
        raise DataError(
            f"{len(unknown)} label(s) not in the label map: {sorted(unknown)[:10]!r}",
            rows=[r for name in sorted(unknown) for r in unknown[name]],
            hint="rebuild the label map from this table, or drop those labels",
        )
    return ids, sparse_multi_hot(lists, label_map.names)


def _stratify_columns(y) -> np.ndarray:
    """The dense bool columns iterstrat balances: all, or the STRATIFY_MAX_LABELS most frequent."""
    counts = np.asarray(y.sum(axis=0)).ravel()
    if y.shape[1] > STRATIFY_MAX_LABELS:
        top = np.lexsort((np.arange(len(counts)), -counts))[:STRATIFY_MAX_LABELS]
        y = y[:, np.sort(top)]
    return np.asarray(y.toarray(), dtype=bool)


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ParameterError("seed", seed, "must be an integer in [0, 2**32)")


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
    props = check_proportions(proportions)
    _check_seed(seed)
    if not isinstance(label_map, LabelMap) or len(label_map) == 0:
        raise ParameterError("label_map", label_map, "must be a LabelMap with at least one label")
    require_table_columns(df, [LABEL_COLUMN, "source_id"])
    n = len(df)
    needed = min_rows_needed(props)
    if n < needed:
        raise DataError(
            f"too few rows to split: {n} row(s), but split_proportions={props} needs at least "
            f"{needed} so that every split's expected size is at least one row",
            hint="add rows or change split_proportions",
        )
    ids, y = _label_matrix(df, label_map)
    names = label_map.names
    _check_every_label_occurs(y, names)

    targets = target_sizes(n, props)
    dense = _stratify_columns(y)
    codes = stratified_codes(dense, targets, int(seed))
    rank = np.random.default_rng(int(seed)).permutation(n)
    moves = ensure_train_positives(codes, y, rank, names, ids)
    moves += ensure_nonempty(codes, y, rank, ids, len(names))

    out = df.copy()
    out[SPLIT_COLUMN] = np.array(SPLITS, dtype=object)[codes]
    return out, build_report(y, codes, names, props, seed, targets, moves, dense.shape[1])


def _check_every_label_occurs(y, names: list[str]) -> None:
    counts = np.asarray(y.sum(axis=0)).ravel()
    no_positive = [names[j] for j in np.flatnonzero(counts == 0)]
    if no_positive:
        raise DataError(
            f"{len(no_positive)} label(s) of the label map have no positive row at all: "
            f"{no_positive[:20]}",
            column=LABEL_COLUMN,
            hint="rebuild the label map from this table (LabelMap.from_table)",
        )


def make_splits(
    df: pd.DataFrame,
    label_map: LabelMap,
    *,
    proportions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    given: bool = False,
) -> tuple[pd.DataFrame, LabelMap, SplitReport]:
    """01's split step: (table, label map, report), with or without a given split.

    ``given=False`` is ``stratified_split``. ``given=True`` keeps the table's ``split`` column:
    a missing validation split is carved out of train (its share of train is validation /
    (train + validation) of ``proportions``) by the same stratification; labels with no
    positive in the given train split are removed from every row and counted, and rows left
    without labels are dropped and listed (``report.rows_emptied``). The label map returned
    is the one the table now uses.
    """
    if not given:
        out, report = stratified_split(df, label_map, proportions=proportions, seed=seed)
        return out, label_map, report
    props = check_proportions(proportions)
    _check_seed(seed)
    require_table_columns(df, [LABEL_COLUMN, "source_id", SPLIT_COLUMN])
    present = set(df[SPLIT_COLUMN])
    for name in ("train", "test"):
        if name not in present:
            raise DataError(
                f"the given split has no {name!r} rows (it has {sorted(present)})",
                column=SPLIT_COLUMN,
                hint="map some of the split column's values to it with split_values, or set "
                     "split_column=None to let 01 make the split",
            )
    ids, y = _label_matrix(df, label_map)
    names = label_map.names
    codes = np.array([SPLITS.index(v) for v in df[SPLIT_COLUMN]], dtype=np.int8)
    train_counts = column_counts(y, codes != TEST)  # carved validation is train's, for now
    all_counts = column_counts(y, np.ones(len(codes), dtype=bool))
    if "validation" in present:
        train_counts = column_counts(y, codes == TRAIN)
    absent = {names[j]: int(all_counts[j]) for j in np.flatnonzero(train_counts == 0)
              if all_counts[j] > 0}
    out = df.copy()
    emptied: list[str] = []
    if absent:
        kept_lists = [[x for x in row if x not in absent] for row in out[LABEL_COLUMN]]
        keep = np.array([bool(k) or not row for k, row in zip(kept_lists, out[LABEL_COLUMN])])
        emptied = [i for i, k in zip(ids, keep) if not k]
        out[LABEL_COLUMN] = pd.Series(kept_lists, index=out.index, dtype=object)
        out = out.loc[keep].reset_index(drop=True)
        label_map = LabelMap([x for x in names if x not in absent])
        ids, y = _label_matrix(out, label_map)
        names = label_map.names
        codes = codes[keep]
    made: tuple = ()
    moves: list[dict] = []
    if "validation" not in present:
        train_rows = np.flatnonzero(codes == TRAIN)
        share = props[VALIDATION] / (props[TRAIN] + props[VALIDATION])
        n_val = min(max(round(share * len(train_rows)), 1), len(train_rows) - 1)
        if n_val >= 1:
            dense = _stratify_columns(y[train_rows])
            codes[train_rows[_held_out(dense, n_val, int(seed))]] = VALIDATION
        rank = np.random.default_rng(int(seed)).permutation(len(codes))
        moves = ensure_train_positives(codes, y, rank, names, ids, sources=(VALIDATION,))
        made = ("validation",)
    out[SPLIT_COLUMN] = np.array(SPLITS, dtype=object)[codes]
    given_names = tuple(s for s in SPLITS if s in present)
    stratified_on = min(len(names), STRATIFY_MAX_LABELS) if made else 0
    report = build_report(y, codes, names, props, seed, dict.fromkeys(SPLITS, None).values(), moves,
                     stratified_on, given=given_names, made=made,
                     labels_absent_from_train=absent, rows_emptied=emptied)
    report.targets = {s: int((codes == i).sum()) for i, s in enumerate(SPLITS)}
    return out, label_map, report


def check_train_positives(df: pd.DataFrame, label_map: LabelMap) -> None:
    """Raise DataError naming every label of the map with no positive in the train split."""
    require_table_columns(df, [LABEL_COLUMN, SPLIT_COLUMN])
    train = df[df[SPLIT_COLUMN] == "train"]
    _, y = _label_matrix(train, label_map)
    counts = np.asarray(y.sum(axis=0)).ravel()
    missing = [label_map.labels[j] for j in np.flatnonzero(counts == 0)]
    if missing:
        raise DataError(
            f"{len(missing)} label(s) have no positive example in the train split "
            f"({len(train)} train rows): {missing}",
            column=SPLIT_COLUMN,
            hint="the model cannot learn them; re-split with stratified_split or drop them",
        )
