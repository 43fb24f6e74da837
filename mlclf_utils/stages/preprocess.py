"""Stage 01: from a raw source to a clean, audited, split and tokenized table.

The notebook tells the story step by step and ``run()`` does the same steps headless; both
call the functions below, which hand the work to the concern modules (sources, cleaning,
labels, splitting, tokenization, explore, label_audit). This module also owns the stage's files, so that 02
reads exactly what 01 wrote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.artifacts import read_json, write_json
from mlclf_utils.data import label_audit, labels, splitting, windows
from mlclf_utils.data.cleaning import CleaningConfig
from mlclf_utils.data.dropped_rows import drop_warning, dropped_rows
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.data.sources import EMPTY_POLICIES
from mlclf_utils.errors import MlclfError, ParameterError, check_positive_int
from mlclf_utils.modeling.encoders import DEFAULT_MAX_LENGTH, DEFAULT_MODEL
from mlclf_utils.runner.runs import stage_dir
from mlclf_utils.stages.save_data import SHARED_SETTINGS

STAGE = artifacts.PREPROCESS
TABLE_COLUMNS = ["source_id", "text", "labels", "split", "input_ids", "n_tokens"]
# The quality tables, one CSV each under quality/, for a person to open in a spreadsheet.
QUALITY_TABLES = ("implication_rules", "possibly_missing_labels", "conflicting_duplicates",
                  "label_counts")
# 01's figures under figures/. The notebook names each one it draws (so that its source shows
# which PNG a cell saves) and figure_path refuses any other name, so the two cannot drift.
FIGURES = ("label_frequency.png", "labels_per_text.png", "cooccurrence.png", "token_lengths.png",
           label_audit.FIGURE)


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides what 01 produces, with the stage's defaults (the notebook's
    parameters cell repeats them, and a test holds the two equal); saved as
    ``preprocess_config.json``."""

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
    split_proportions: tuple = (0.7, 0.2, 0.1)
    model_name: str = DEFAULT_MODEL
    max_length: int = DEFAULT_MAX_LENGTH
    split_column: str | None = None
    split_values: dict = field(default_factory=dict)
    long_text: str = "truncate"  # or "chunks": data.windows (window_stride, max_windows too)
    window_stride: int = 32
    max_windows: int | None = None
    window_aggregation: str = "max"
    label_audit: bool = True  # data.label_audit: cleanlab on out-of-fold TF-IDF + LR
    label_audit_folds: int = 5

    def __post_init__(self) -> None:
        if self.sample_size is not None:
            check_positive_int("sample_size", self.sample_size)
        check_positive_int("min_label_count", self.min_label_count)
        check_positive_int("max_length", self.max_length)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ParameterError("seed", self.seed, "must be an integer")
        if self.label_case not in labels.CASES:
            raise ParameterError("label_case", self.label_case, f"choose one of {labels.CASES}")
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
        object.__setattr__(self, "split_proportions", splitting.check_proportions(props))
        self.cleaning_config  # validates the cleaning switches early
        self._check_given_split()
        label_audit.check_parameters(self.label_audit, self.label_audit_folds)
        windows.WindowSettings.from_config(asdict(self)).check_fits(self.max_length)

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
        bad = {k: v for k, v in mapping.items() if v not in artifacts.SPLITS}
        if bad:
            raise ParameterError("split_values", mapping,
                                 f"every value must be one of {artifacts.SPLITS}; not {bad}")
        if mapping and not {"train", "test"} <= set(mapping.values()):
            raise ParameterError("split_values", mapping,
                                 "must map some value to 'train' and some to 'test' "
                                 "(validation, if absent, is carved out of train)")

    @property
    def cleaning_config(self) -> CleaningConfig:
        return CleaningConfig.from_dict(self.cleaning)

    @classmethod
    def from_parameters(cls, **values) -> "PreprocessConfig":
        """Build from a notebook's parameters; unknown names are an error, not ignored."""
        from mlclf_utils.stages import config_values

        return cls(**config_values(cls, values, strict=True))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["split_proportions"] = list(self.split_proportions)
        values["cleaning"] = self.cleaning_config.to_dict()
        values["split_values"] = {str(k): v for k, v in self.split_values.items()}
        return values


Config = PreprocessConfig  # the name every stage module gives its defaults


def check(params: dict) -> None:
    """01's parameters, before any row is read: the config's own checks and ``max_length``
    against the encoder's limit (read from its config.json, no model load)."""
    from mlclf_utils.data import tokenization
    from mlclf_utils.modeling import encoders

    config = Config.from_parameters(**{k: v for k, v in params.items() if k != "run_dir"})
    limit = encoders.declared_max_positions(config.model_name)
    if limit is None and config.max_length > encoders.MAX_LENGTH_BOUND:
        raise ParameterError("max_length", config.max_length,
                             f"{config.model_name}'s config.json is not on this machine, and more "
                             f"than {encoders.MAX_LENGTH_BOUND} tokens is refused")
    tokenization.check_max_length(config.max_length, limit or encoders.MAX_LENGTH_BOUND)


# --- the steps, in the notebook's order ---------------------------------------------------------

def load(config: Config) -> tuple[pd.DataFrame, dict, dict]:
    """Section 1: the source as the common table, sampled; ``(table, source_report,
    sample_report)``."""
    from mlclf_utils.data import sources

    table, source_report = sources.load_source(
        config.source, text_column=config.text_column, labels_column=config.labels_column,
        label_sep=config.label_sep, encoding=config.encoding, on_empty_text=config.on_empty_text,
        on_empty_labels=config.on_empty_labels, debtags_label_set=config.debtags_label_set,
        split_column=config.split_column, split_values=config.split_values,
    )
    table, sample_report = sources.subsample(table, config.sample_size, seed=config.seed)
    return table, source_report, sample_report


def clean(table: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, dict]:
    """Section 2: every cleaning switch of ``config.cleaning`` applied to the texts."""
    from mlclf_utils.data import cleaning

    return cleaning.clean_column(table, config.cleaning_config)


def audit_labels(table: pd.DataFrame, config: Config, *, source: str | None = None):
    """Section 3: labels normalised, rare ones removed, the quality report, and the label map;
    ``(table, label_map, quality)``. One label left is refused, naming ``source``."""
    from mlclf_utils.data import label_quality

    policy = labels.LabelPolicy(separator=config.label_sep, case=config.label_case)
    table = labels.normalise_label_column(table, policy)
    table, quality = label_quality.quality_report(table, min_label_count=config.min_label_count)
    label_map = LabelMap.from_table(table)
    label_quality.check_enough_labels(label_map, quality, file=source,
                                      column=config.labels_column)
    return table, label_map, quality


def split(table: pd.DataFrame, label_map: LabelMap, config: Config):
    """Section 4: the stratified (or given) split, with every label positive in train;
    ``(table, label_map, split_report)``; the label map shrinks when a given split lacks some."""
    table, label_map, report = splitting.make_splits(
        table, label_map, proportions=config.split_proportions, seed=config.seed,
        given=config.split_column is not None,
    )
    splitting.check_train_positives(table, label_map)
    return table, label_map, report


def check_model_limit(config: Config) -> None:
    """``max_length`` against the limit the encoder itself declares (the notebook's first cell:
    a text cut to more tokens than the model has positions for would fail in 03, not here)."""
    from mlclf_utils.data import tokenization
    from mlclf_utils.modeling import encoders

    tokenization.check_max_length(config.max_length, encoders.max_positions(config.model_name))


def tokenize(table: pd.DataFrame, config: Config, *, progress: bool = True):
    """Section 6: ``input_ids`` and ``n_tokens`` with the model's fast tokenizer (the limit was
    checked by ``check_model_limit`` before any work)."""
    from mlclf_utils.data import tokenization
    from mlclf_utils.modeling import encoders

    tokenizer = encoders.load_tokenizer(config.model_name)
    return tokenization.tokenize_table(table, tokenizer, max_length=config.max_length,
                                       progress=progress,
                                       windows=windows.WindowSettings.from_config(asdict(config)))


def audit_with_model(run_dir: str | Path, table: pd.DataFrame, label_map: LabelMap, config: Config,
                     *, progress: bool = True, show: bool = True):
    """Section 7: cleanlab on out-of-fold TF-IDF + LR probabilities of train and validation,
    saved as quality/label_audit.csv and figures/label_audit.png; ``(issues, summary)``, issues
    None with ``label_audit=False``. It reports: no row is changed or dropped."""
    if not config.label_audit:
        return None, {"skipped": "label_audit=False"}
    return label_audit.run_01(table, label_map, folds=config.label_audit_folds, seed=config.seed,
                              table_path=artifacts.path(run_dir, STAGE, artifacts.LABEL_AUDIT),
                              figure_path=figure_path(run_dir, label_audit.FIGURE),
                              progress=progress, show=show)


def figure_path(run_dir: str | Path, name: str) -> Path:
    """Where 01 saves one of its ``FIGURES``; another name is refused."""
    if name not in FIGURES:
        raise ParameterError("name", name, f"01's figures are {FIGURES}")
    return artifacts.path(run_dir, STAGE, artifacts.FIGURES_DIR, name)


def save_figures(run_dir: str | Path, table: pd.DataFrame, label_map: LabelMap,
                 config: Config) -> list[Path]:
    """Section 5's and 6's figures, saved and closed (a headless run shows none)."""
    from mlclf_utils.data import explore
    from mlclf_utils.figures import pyplot

    plt, _ = pyplot()
    figures = [
        explore.plot_label_frequency(table, figure_path(run_dir, FIGURES[0])),
        explore.plot_labels_per_text(table, figure_path(run_dir, FIGURES[1])),
        explore.plot_cooccurrence(table, label_map.labels, figure_path(run_dir, FIGURES[2])),
        explore.plot_token_lengths(table, config.max_length, figure_path(run_dir, FIGURES[3])),
    ]
    for fig in figures:
        plt.close(fig)
    return [figure_path(run_dir, name) for name in FIGURES]


def collect_reports(*, source: dict, sample: dict, cleaning: dict, quality, split, tokens: dict,
                    label_audit: dict | None = None) -> dict:
    """Every step's report, as ``preprocess_report.json`` keeps them."""
    return {"source": source, "sample": sample, "cleaning": cleaning,
            "quality": quality.summary(), "split": split.summary(), "tokens": tokens,
            **({"label_audit": label_audit} if label_audit is not None else {})}


def run(run_dir: str | Path, config: Config = Config(), *, progress: bool = False) -> dict:
    """The whole of 01 headless (figures saved, nothing shown); returns a small summary."""
    check_model_limit(config)
    stage_dir(run_dir, STAGE)  # refuses a folder that already holds artifacts, before any work
    table, source_report, sample_report = load(config)
    table, cleaning_report = clean(table, config)
    table, label_map, quality = audit_labels(table, config, source=source_report["source"])
    table, label_map, split_report = split(table, label_map, config)
    table, token_report = tokenize(table, config, progress=progress)
    save_figures(run_dir, table, label_map, config)
    _, audit = audit_with_model(run_dir, table, label_map, config, progress=progress, show=False)
    reports = collect_reports(source=source_report, sample=sample_report, cleaning=cleaning_report,
                              quality=quality, split=split_report, tokens=token_report,
                              label_audit=audit)
    save_artifacts(run_dir, table, label_map, config, reports, quality=quality,
                   split_report=split_report)
    dropped = read_report(run_dir)["dropped_rows"]["count"]
    return {"rows": int(len(table)), "labels": len(label_map),
            "splits": dict(split_report.sizes), "dropped_rows": int(dropped),
            "label_issues": audit.get("issues")}


# --- the stage's files --------------------------------------------------------------------------

def save_artifacts(
    run_dir: str | Path,
    table: pd.DataFrame,
    label_map: LabelMap,
    config: Config,
    reports: dict,
    *,
    quality=None,
    split_report=None,
) -> dict[str, Path]:
    """Write the stage's outputs; the figures were already saved under ``figures/``.

    The quality and split tables go out as CSV, so that a person can open the list of
    possibly-missing labels in a spreadsheet and fix the source data.
    """
    out = artifacts.path(run_dir, STAGE)
    out.mkdir(parents=True, exist_ok=True)
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise MlclfError(f"the processed table lacks columns {missing}; run every step of 01")
    paths = {
        "table": out / artifacts.TABLE,
        "label_map": out / artifacts.LABEL_MAP,
        "config": out / artifacts.PREPROCESS_CONFIG,
        "report": out / artifacts.PREPROCESS_REPORT,
    }
    tmp = paths["table"].with_name(f".{artifacts.TABLE}.tmp")
    kept = TABLE_COLUMNS + [c for c in (windows.WINDOW_IDS,) if c in table]  # chunks: windows
    table[kept].to_parquet(tmp, index=False)
    tmp.replace(paths["table"])
    label_map.to_json(paths["label_map"])
    write_json(paths["config"], config.to_dict())
    dropped = dropped_rows(reports, quality, split_report)
    paths["dropped_rows"] = out / artifacts.DROPPED_ROWS
    paths["dropped_rows"].parent.mkdir(exist_ok=True)
    dropped.to_csv(paths["dropped_rows"], index=False)
    reports = {**reports, "dropped_rows": {
        "count": int(len(dropped)), "file": artifacts.DROPPED_ROWS,
        "by_reason": {reason: int(n) for reason, n in dropped["reason"].value_counts(sort=False).items()}}}
    write_json(paths["report"], reports)
    if quality is not None:
        frames = dict(zip(QUALITY_TABLES, (
            quality.implications, quality.implication_violations, quality.conflicting_duplicates,
            quality.label_counts.rename("count").to_frame())))
        for name, frame in frames.items():
            paths[name] = out / artifacts.QUALITY_DIR / f"{name}.csv"
            paths[name].parent.mkdir(exist_ok=True)
            frame.to_csv(paths[name], index=name == "label_counts")
    if split_report is not None:
        paths["split_label_frequencies"] = out / artifacts.SPLIT_LABEL_FREQUENCIES
        split_report.label_frequencies.to_csv(paths["split_label_frequencies"])
        paths["split_moves"] = out / artifacts.SPLIT_MOVES
        split_report.moves.to_csv(paths["split_moves"], index=False)
    return paths


def load_artifacts(run_dir: str | Path) -> tuple[pd.DataFrame, LabelMap, dict]:
    """What later stages read from 01: the table, the label map and the config."""
    folder = stage_dir(run_dir, STAGE, create=False)
    table = pd.read_parquet(folder / artifacts.TABLE)
    table["labels"] = table["labels"].map(list)
    return (table, LabelMap.from_json(folder / artifacts.LABEL_MAP),
            read_json(folder / artifacts.PREPROCESS_CONFIG, what="01's config"))


def read_report(run_dir: str | Path) -> dict:
    """``preprocess_report.json``: every step's report and the dropped rows' count."""
    return read_json(artifacts.path(run_dir, STAGE, artifacts.PREPROCESS_REPORT),
                     what="01's report", hint="run 01_preprocess on this run first")


def read_label_audit(run_dir: str | Path) -> pd.DataFrame | None:
    """quality/label_audit.csv, cleanlab's ranked label issues of train and validation, or None
    when 01 ran without the audit (``label_audit=False``, or a run older than it)."""
    path = artifacts.path(run_dir, STAGE, artifacts.LABEL_AUDIT)
    return label_audit.read_issues(path) if path.is_file() else None


def shared_settings(run_dir: str | Path) -> dict:
    """01's ``model_name`` and ``max_length``, as the run's preprocess_config.json records them."""
    config = read_json(stage_dir(run_dir, STAGE, create=False) / artifacts.PREPROCESS_CONFIG,
                       what="01's config")
    return {name: config.get(name) for name in SHARED_SETTINGS}


def dropped_rows_warning(run_dir: str | Path) -> str | None:
    """One line for the notebook and the runner when 01 dropped rows; None when it dropped none."""
    report = read_report(run_dir).get("dropped_rows") or {}
    listed = artifacts.path(run_dir, STAGE, report.get("file") or artifacts.DROPPED_ROWS)
    return drop_warning(report, STAGE, listed)


notice = dropped_rows_warning  # what the runner prints after 01 (mlclf_utils.stages.notice)


def report_dropped_rows(run_dir: str | Path) -> None:
    """Print the warning (on stderr, so that it stands out) if 01 dropped rows."""
    import sys

    line = dropped_rows_warning(run_dir)
    if line:
        print(line, file=sys.stderr)
