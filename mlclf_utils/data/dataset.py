"""A processed table as a Hugging Face ``DatasetDict``: built, saved as channels, loaded back.

Each split is saved as its own ``save_to_disk`` folder, and each folder also carries the small
JSON files a training job needs (label map, preprocessing config, class statistics). A
SageMaker Hugging Face job mounts ``s3://bucket/prefix/train`` at ``SM_CHANNEL_TRAIN``; with
everything inside the channel, the entry point needs nothing else. Where a run keeps these
folders is stage 02's business (``mlclf_utils.stages.save_data``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.artifacts import CLASS_STATS, LABEL_MAP, PREPROCESS_CONFIG, SPLITS, write_json
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.data.windows import TEXT_INDEX, WINDOW_IDS, WINDOW_INDEX
from mlclf_utils.errors import DataError, MlclfError


def class_statistics(table: pd.DataFrame, label_map: LabelMap) -> dict:
    """Rows per split and positives per label per split: what pos_weight and reports need."""
    targets = label_map.to_multi_hot(table["labels"].tolist())
    stats = {"labels": list(label_map.labels), "rows": {}, "positives": {}}
    for split in SPLITS:
        mask = (table["split"] == split).to_numpy()
        stats["rows"][split] = int(mask.sum())
        stats["positives"][split] = [int(x) for x in targets[mask].sum(axis=0)]
    return stats


def class_statistics_table(stats: dict) -> pd.DataFrame:
    """The statistics as one row per label, most frequent in train first, for people to read."""
    frame = pd.DataFrame({split: stats["positives"][split] for split in SPLITS},
                         index=pd.Index(stats["labels"], name="label"))
    frame["share_train"] = (frame["train"] / max(stats["rows"]["train"], 1)).round(4)
    return frame.sort_values("train", ascending=False, kind="stable")


def build_dataset_dict(table: pd.DataFrame, label_map: LabelMap):
    """input_ids, attention_mask, float multi-hot labels, length (for length-grouped batches),
    plus text and source_id for the later stages (evaluation tables, explanations).

    A table with ``window_ids`` (01's ``long_text="chunks"``) gives one row per window, with
    the text's labels, text and source_id, its ``text_index`` (the text's position in its split)
    and ``window_index``; a text's windows all stay in the text's split."""
    import datasets

    if WINDOW_IDS in table.columns:
        table = window_rows(table)

    missing = {"split", "input_ids", "labels", "text", "source_id"} - set(table.columns)
    if missing:
        raise MlclfError(f"the 01 table lacks columns {sorted(missing)}; re-run 01_preprocess")
    unknown = sorted(set(table["split"]) - set(SPLITS))
    if unknown:
        raise DataError(f"unknown split names {unknown}", column="split")
    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")),
        "labels": datasets.Sequence(datasets.Value("float32"), length=len(label_map)),
        "length": datasets.Value("int32"),
        "text": datasets.Value("string"),
        "source_id": datasets.Value("string"),
        **({name: datasets.Value("int32") for name in (TEXT_INDEX, WINDOW_INDEX)}
           if TEXT_INDEX in table.columns else {}),
    })
    splits = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        if part.empty:
            raise DataError(f"the {split} split is empty", column="split")
        ids = [np.asarray(x, dtype=np.int32) for x in part["input_ids"]]
        targets = label_map.to_multi_hot(part["labels"].tolist())
        splits[split] = datasets.Dataset.from_dict(
            {
                "input_ids": ids,
                "attention_mask": [np.ones(len(x), dtype=np.int8) for x in ids],
                "labels": list(targets.astype(np.float32)),
                "length": [len(x) for x in ids],
                "text": part["text"].tolist(),
                "source_id": part["source_id"].tolist(),
                **{name: part[name].tolist() for name in (TEXT_INDEX, WINDOW_INDEX)
                   if name in part.columns},
            },
            features=features,
        )
    return datasets.DatasetDict(splits)


def window_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per window of 01's table: ``input_ids`` becomes the window's ids."""
    table = table.copy()
    table[TEXT_INDEX] = table.groupby("split", sort=False).cumcount()
    table[WINDOW_INDEX] = [list(range(len(ids))) for ids in table[WINDOW_IDS]]
    table["input_ids"] = table[WINDOW_IDS]
    rows = table.drop(columns=[WINDOW_IDS]).explode(["input_ids", WINDOW_INDEX], ignore_index=True)
    rows[WINDOW_INDEX] = rows[WINDOW_INDEX].astype(int)
    return rows


def save_dataset(dataset_dict, target: str | Path, *, label_map: LabelMap, class_stats: dict,
                 preprocess_config: dict) -> Path:
    """save_to_disk into ``target`` (a new folder), then drop the small JSON files into every
    split folder, so that each one is a self-contained channel."""
    target = Path(target)
    if target.exists():
        raise MlclfError(f"{target} exists; a run never overwrites its data")
    dataset_dict.save_to_disk(str(target))
    for split in dataset_dict:
        label_map.to_json(target / split / LABEL_MAP)
        write_json(target / split / CLASS_STATS, class_stats)
        write_json(target / split / PREPROCESS_CONFIG, preprocess_config)
    return target


def read_split_json(folder: str | Path, name: str):
    """One of the small JSON files of a split folder (``artifacts.CLASS_STATS`` or
    ``artifacts.PREPROCESS_CONFIG``), with an error that says which folder wrote it."""
    return artifacts.read_json(Path(folder) / name, what=name,
                               hint="expected a split folder written by 02_save_data")


def load_split(folder: str | Path):
    """One split folder (local or a mounted SageMaker channel) and its label map."""
    import datasets

    folder = Path(folder)
    if not (folder / LABEL_MAP).exists():
        raise MlclfError(
            f"{folder} holds no {LABEL_MAP}: expected a split folder written by 02_save_data"
        )
    return datasets.load_from_disk(str(folder)), LabelMap.from_json(folder / LABEL_MAP)


def copy_split(folder: str | Path, dest: str | Path) -> Path:
    """A copy of a split folder, e.g. to stage a fake SageMaker channel in tests."""
    return Path(shutil.copytree(folder, dest))
