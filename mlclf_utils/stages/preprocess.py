"""Stage 01 glue: the parameters of the preprocessing stage and the artifacts it leaves.

The notebook calls the concern modules (sources, cleaning, labels, splitting, tokenization,
explore) step by step; this module only holds what ties them together, so that 02 can read
exactly what 01 wrote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from mlclf_utils.data import splitting
from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.data.dataset import SHARED_SETTINGS
from mlclf_utils.errors import MlclfError, ParameterError
from mlclf_utils.data.labels import LabelMap
from mlclf_utils.modeling.encoders import DEFAULT_MODEL
from mlclf_utils.runner.runs import stage_dir
from mlclf_utils.artifacts import read_json, write_json
from mlclf_utils.data.sources import EMPTY_POLICIES

STAGE = "01_preprocess"
TABLE_FILE = "processed.parquet"
LABEL_MAP_FILE = "label_map.json"
CONFIG_FILE = "preprocess_config.json"
REPORT_FILE = "preprocess_report.json"
FIGURES_DIR = "figures"
DROPPED_ROWS_FILE = "quality/dropped_rows.csv"
# Why a row was dropped, in the order 01 drops them, and how the warning says it.
DROP_REASONS = {
    "empty text": "with an empty text",
    "no labels": "without labels",
    "empty after cleaning": "empty after cleaning",
    "all labels rare": "whose labels were all rare",
    "all labels absent from train": "whose labels were all absent from the given train split",
}
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
    split_column: str | None = None
    split_values: dict = field(default_factory=dict)

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
        for name in ("on_empty_text", "on_empty_labels"):
            if getattr(self, name) not in EMPTY_POLICIES:
                raise ParameterError(name, getattr(self, name), f"choose one of {EMPTY_POLICIES}")
        props = self.split_proportions
        if (not isinstance(props, (list, tuple)) or len(props) != 3
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in props)):
            raise ParameterError("split_proportions", props,
                                 "must be three numbers: train, validation, test")
        # The split's own check (each > 0, the sum is 1), here so that it fails before any work.
        self.split_proportions = splitting._check_proportions(props)
        self.cleaning_config  # validates the cleaning switches early
        self._check_given_split()

    def _check_given_split(self) -> None:
        """split_column and split_values, checked before any work (and by the runner)."""
        column, mapping = self.split_column, self.split_values
        if column is not None and (not isinstance(column, str) or not column.strip()):
            raise ParameterError("split_column", column, "must be a column name or None")
        if not isinstance(mapping, dict):
            raise ParameterError("split_values", mapping,
                                 "must be a mapping {value: 'train'|'validation'|'test'}")
        if mapping and column is None:
            raise ParameterError("split_values", mapping, "is used only with a split_column")
        bad = {k: v for k, v in mapping.items() if v not in splitting.SPLITS}
        if bad:
            raise ParameterError("split_values", mapping,
                                 f"every value must be one of {splitting.SPLITS}; not {bad}")
        if mapping and not {"train", "test"} <= set(mapping.values()):
            raise ParameterError("split_values", mapping,
                                 "must map some value to 'train' and some to 'test' "
                                 "(validation, if absent, is carved out of train)")

    def with_values(self, **values) -> "PreprocessConfig":
        """A copy with some values changed, checked again (01 adds the given-split ones)."""
        import dataclasses

        return dataclasses.replace(self, **values)

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
        values["split_values"] = {str(k): v for k, v in self.split_values.items()}
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
    dropped = dropped_rows(reports, quality, split_report)
    paths["dropped_rows"] = out / DROPPED_ROWS_FILE
    paths["dropped_rows"].parent.mkdir(exist_ok=True)
    dropped.to_csv(paths["dropped_rows"], index=False)
    reports = {**reports, "dropped_rows": {
        "count": int(len(dropped)), "file": DROPPED_ROWS_FILE,
        "by_reason": {reason: int(n) for reason, n in dropped["reason"].value_counts(sort=False).items()}}}
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




def shared_settings(run_dir: str | Path) -> dict:
    """01's ``model_name`` and ``max_length``, as the run's preprocess_config.json records them."""
    config = read_json(stage_dir(run_dir, STAGE, create=False) / CONFIG_FILE)
    return {name: config.get(name) for name in SHARED_SETTINGS}


def dropped_rows(reports: dict, quality=None, split_report=None) -> pd.DataFrame:
    """Every row 01 dropped, with why: the source's empty rows (``on_empty_*="drop"``), texts
    that cleaning emptied, and rows left without a label once rare labels were removed."""
    source = reports.get("source") or {}
    cleaning = reports.get("cleaning") or {}
    records = [(i, "empty text") for i in source.get("dropped_ids_empty_text", [])]
    records += [(i, "no labels") for i in source.get("dropped_ids_empty_labels", [])]
    records += [(i, "empty after cleaning") for i in cleaning.get("empty_after_cleaning_ids", [])]
    if quality is not None:
        if quality.drop_empty:
            records += [(i, "no labels") for i in quality.empty_rows]
        records += [(i, "all labels rare") for i in quality.emptied_rows]
    if split_report is not None:
        records += [(i, "all labels absent from train")
                    for i in getattr(split_report, "rows_emptied", [])]
    return pd.DataFrame(records, columns=["source_id", "reason"])


def dropped_rows_warning(run_dir: str | Path) -> str | None:
    """One line for the notebook and the runner when 01 dropped rows; None when it dropped none."""
    folder = Path(run_dir) / STAGE
    report = read_json(folder / REPORT_FILE).get("dropped_rows") or {}
    if not report.get("count"):
        return None
    parts = ", ".join(f"{n} {DROP_REASONS.get(reason, reason)}"
                      for reason, n in report["by_reason"].items())
    count = report["count"]
    return (f"warning: {STAGE} dropped {count} row{'s' if count != 1 else ''} ({parts}); "
            f"their ids are listed in {folder / report['file']}")


def report_dropped_rows(run_dir: str | Path) -> None:
    """Print the warning (on stderr, so that it stands out) if 01 dropped rows."""
    import sys

    line = dropped_rows_warning(run_dir)
    if line:
        print(line, file=sys.stderr)


def check(params: dict) -> None:
    """01's parameters, before any row is read: the config's own checks and ``max_length``
    against the encoder's limit (read from its config.json, no model load)."""
    from mlclf_utils.data import tokenization
    from mlclf_utils.modeling import encoders

    config = PreprocessConfig.from_parameters(**{k: v for k, v in params.items() if k != "run_dir"})
    limit = encoders.declared_max_positions(config.model_name)
    if limit is None and config.max_length > encoders.MAX_LENGTH_BOUND:
        raise ParameterError("max_length", config.max_length,
                             f"{config.model_name}'s config.json is not on this machine, and more "
                             f"than {encoders.MAX_LENGTH_BOUND} tokens is refused")
    tokenization.check_max_length(config.max_length, limit or encoders.MAX_LENGTH_BOUND)
