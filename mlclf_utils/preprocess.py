"""Stage 01 glue: the parameters of the preprocessing stage and the artifacts it leaves.

The notebook calls the concern modules (sources, cleaning, labels, splitting, tokenization,
explore) step by step; this module only holds what ties them together, so that 02 can read
exactly what 01 wrote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from .cleaning import CleaningConfig
from .errors import MlclfError, ParameterError
from .labels import LabelMap
from .models import DEFAULT_MODEL
from .runs import read_json, stage_dir, write_json

STAGE = "01_preprocess"
TABLE_FILE = "processed.parquet"
LABEL_MAP_FILE = "label_map.json"
CONFIG_FILE = "preprocess_config.json"
REPORT_FILE = "preprocess_report.json"
FIGURES_DIR = "figures"
LABEL_CASES = ("lower", "upper", "keep")


@dataclass
class PreprocessConfig:
    """Everything that decides what 01 produces; saved as ``preprocess_config.json``."""

    source: str = "debtags"
    text_column: str = "text"
    labels_column: str = "labels"
    label_sep: str = ","
    encoding: str = "utf-8"
    on_empty_text: str = "error"
    on_empty_labels: str = "error"
    debtags_label_set: str | list = "default"
    sample_size: int | None = 4000
    seed: int = 42
    cleaning: dict = field(default_factory=dict)
    label_case: str = "lower"
    min_label_count: int = 10
    split_proportions: tuple = (0.8, 0.1, 0.1)
    model_name: str = DEFAULT_MODEL
    max_length: int = 128

    def __post_init__(self) -> None:
        def positive_int(name, value, allow_none=False):
            if allow_none and value is None:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(name, value, "must be a positive integer"
                                     + (" or None" if allow_none else ""))

        positive_int("sample_size", self.sample_size, allow_none=True)
        positive_int("min_label_count", self.min_label_count)
        positive_int("max_length", self.max_length)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ParameterError("seed", self.seed, "must be an integer")
        if self.label_case not in LABEL_CASES:
            raise ParameterError("label_case", self.label_case, f"choose one of {LABEL_CASES}")
        if not isinstance(self.label_sep, str) or not self.label_sep:
            raise ParameterError("label_sep", self.label_sep, "must be a non-empty string")
        props = self.split_proportions
        if (not isinstance(props, (list, tuple)) or len(props) != 3
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in props)):
            raise ParameterError("split_proportions", props,
                                 "must be three numbers: train, validation, test")
        self.split_proportions = tuple(float(p) for p in props)
        self.cleaning_config  # validates the cleaning switches early

    @property
    def cleaning_config(self) -> CleaningConfig:
        return CleaningConfig.from_dict(self.cleaning)

    @classmethod
    def from_parameters(cls, **values) -> "PreprocessConfig":
        """Build from a notebook's parameters; unknown names are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError("parameters", unknown, f"unknown; known are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["split_proportions"] = list(self.split_proportions)
        values["cleaning"] = self.cleaning_config.to_dict()
        return values


def save_artifacts(
    run_dir: str | Path,
    table: pd.DataFrame,
    label_map: LabelMap,
    config: PreprocessConfig,
    reports: dict,
    *,
    quality=None,
    split_report=None,
) -> dict[str, Path]:
    """Write the stage's outputs; the figures were already saved under ``figures/``.

    The quality and split tables go out as CSV, so that a person can open the list of
    possibly-missing labels in a spreadsheet and fix the source data.
    """
    out = Path(run_dir) / STAGE
    out.mkdir(parents=True, exist_ok=True)
    columns = ["source_id", "text", "labels", "split", "input_ids", "n_tokens"]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise MlclfError(f"the processed table lacks columns {missing}; run every step of 01")
    paths = {
        "table": out / TABLE_FILE,
        "label_map": out / LABEL_MAP_FILE,
        "config": out / CONFIG_FILE,
        "report": out / REPORT_FILE,
    }
    tmp = paths["table"].with_name(f".{TABLE_FILE}.tmp")
    table[columns].to_parquet(tmp, index=False)
    tmp.replace(paths["table"])
    label_map.to_json(paths["label_map"])
    write_json(paths["config"], config.to_dict())
    write_json(paths["report"], reports)
    if quality is not None:
        tables = {
            "implication_rules": quality.implications,
            "possibly_missing_labels": quality.implication_violations,
            "conflicting_duplicates": quality.conflicting_duplicates,
            "label_counts": quality.label_counts.rename("count").to_frame(),
        }
        for name, frame in tables.items():
            paths[name] = out / "quality" / f"{name}.csv"
            paths[name].parent.mkdir(exist_ok=True)
            frame.to_csv(paths[name], index=name == "label_counts")
    if split_report is not None:
        paths["split_label_frequencies"] = out / "split_label_frequencies.csv"
        split_report.label_frequencies.to_csv(paths["split_label_frequencies"])
        paths["split_moves"] = out / "split_moves.csv"
        split_report.moves.to_csv(paths["split_moves"], index=False)
    return paths


def load_artifacts(run_dir: str | Path) -> tuple[pd.DataFrame, LabelMap, dict]:
    """What later stages read from 01: the table, the label map and the config."""
    folder = stage_dir(run_dir, STAGE, create=False)
    table = pd.read_parquet(folder / TABLE_FILE)
    table["labels"] = table["labels"].map(list)
    return table, LabelMap.from_json(folder / LABEL_MAP_FILE), read_json(folder / CONFIG_FILE)
