"""What a split did: sizes, each label's share per split, and every row moved to repair it.

The report is what 01 prints and saves (``split_label_frequencies.csv``, ``split_moves.csv``),
so that a reader can see how far each split strays from the overall label shares and why any
row left the split the stratifier chose for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlclf_utils import artifacts

SPLITS = artifacts.SPLITS
# A split as a small integer code, the index into SPLITS; the split arrays hold these.
TRAIN, VALIDATION, TEST = 0, 1, 2


def column_counts(y, mask: np.ndarray) -> np.ndarray:
    """Positives per label among the rows of ``mask`` (``y`` dense or sparse)."""
    return np.asarray(y[np.flatnonzero(mask)].sum(axis=0)).ravel().astype(np.int64)


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
    stratified_on: int = 0  # labels iterstrat balanced (the most frequent, at most the cap)
    given: tuple = ()  # splits taken from the source's split column
    made: tuple = SPLITS  # splits this stage made
    labels_absent_from_train: dict = field(default_factory=dict)  # label -> rows outside train
    rows_emptied: list = field(default_factory=list)  # source_ids left with no label (dropped)

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
            "stratified_on_labels": int(self.stratified_on),
            "splits_given": ",".join(self.given),
            "splits_made": ",".join(self.made),
            "labels_absent_from_train": len(self.labels_absent_from_train),
            "labels_absent_from_train_names": ", ".join(
                f"{name} ({n})" for name, n in sorted(self.labels_absent_from_train.items())),
            "rows_dropped_absent_labels": len(self.rows_emptied),
        }


def label_frequencies(
    y: np.ndarray, codes: np.ndarray, names: list[str]
) -> tuple[pd.DataFrame, dict]:
    data: dict[str, np.ndarray] = {}
    shares = []
    for key, mask in [("all", np.ones(len(codes), dtype=bool))] + [
        (name, codes == i) for i, name in enumerate(SPLITS)
    ]:
        count = column_counts(y, mask)
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


def build_report(y, codes, names, props, seed, targets, moves, stratified_on, **extra) -> SplitReport:
    """The report of split ``codes`` (TRAIN/VALIDATION/TEST per row) of the label matrix ``y``."""
    freq, worst = label_frequencies(y, codes, names)
    return SplitReport(
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
        stratified_on=int(stratified_on),
        **extra,
    )
