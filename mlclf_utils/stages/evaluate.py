"""Stage 04: probabilities, calibration, thresholds, metrics, baselines and the bundle.

The notebook takes these steps one cell at a time, with the narrative between them; ``run()``
takes the same steps in the same order without displaying anything, for tests and scripts.
Every file 04 leaves in ``runs/<run-id>/04_evaluate/`` is written here and read back through
the readers in ``stages/evaluate_readers`` (``read_report``, ``calibration_of``, ...), which
this module re-exports: the sweep, the benchmarks and 05 never spell a file name of their own
and a missing file always names itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.errors import ParameterError, check_positive_int, truncation_lines
from mlclf_utils.evaluation import comparison as baseline_comparison
from mlclf_utils.evaluation.comparison import PLAIN, REFERENCE, TFIDF  # noqa: F401 (04's names)
from mlclf_utils.stages.evaluate_readers import (  # noqa: F401 (04's readers, as evaluate.*)
    READ_HINT, calibration_of, existing_file, read_misclassifications, read_per_class,
    read_report, read_thresholds)

STAGE = artifacts.EVALUATE


@dataclass(frozen=True)
class Config:
    """04's parameters with their defaults, the one place they are written down: the
    notebook's parameters cell repeats them for papermill, and a test holds the two equal."""

    min_support: int = 5
    calibration_method: str | None = "platt"
    threshold_fallback: str | float = "global"
    threshold_shrinkage: float = 0.0
    frozen_baseline: bool = True
    plain_baseline: bool = True
    plain_budget: float = 0.1
    batch_size: int = 64
    worst_n: int = 3
    sweep_dir: str | bool | None = None
    export_onnx: bool = True

    def __post_init__(self) -> None:
        check(asdict(self))

    @classmethod
    def from_params(cls, params: dict) -> "Config":
        """The stage's values among a notebook's parameters (``run_dir`` is not one of them)."""
        from mlclf_utils.stages import config_values

        return cls(**config_values(cls, params))


def check(params: dict) -> None:
    """04's parameters, before any model loads: what the runner's preflight and ``Config`` call."""
    from mlclf_utils.evaluation import calibration, thresholds

    for name in ("min_support", "batch_size", "worst_n"):
        if name in params:
            check_positive_int(name, params[name])
    if "threshold_fallback" in params:
        thresholds.check_fallback(params["threshold_fallback"], "threshold_fallback")
    if "threshold_shrinkage" in params:
        thresholds.check_shrinkage(params["threshold_shrinkage"], "threshold_shrinkage")
    method = params.get("calibration_method")
    if method is not None and method not in calibration.METHODS:
        raise ParameterError("calibration_method", method,
                             f"choose one of {list(calibration.METHODS)} or None")
    if "export_onnx" in params and not isinstance(params["export_onnx"], bool):
        raise ParameterError("export_onnx", params["export_onnx"], "must be True or False")
    baseline_comparison.check(params)


@dataclass
class Inputs:
    """What 04 reads from 02 (the splits) and 03 (the model), loaded once."""

    run_dir: Path
    model_dir: Path
    splits: dict  # split name -> datasets.Dataset with text, labels, source_id
    labels: list[str]
    y: dict  # split name -> (N, K) int8 targets
    windows: object = None  # data.windows.WindowSettings when 01 read long texts as windows

    @property
    def out_dir(self) -> Path:
        return artifacts.path(self.run_dir, STAGE)

    def figure(self, name: str) -> Path:
        return self.out_dir / artifacts.FIGURES_DIR / name


def load_inputs(run_dir) -> Inputs:
    """The three 02 splits and 03's model folder; also makes 04's own folder, refusing one
    that already holds files (a run never overwrites another)."""
    from mlclf_utils.data import dataset, windows
    from mlclf_utils.runner import runs
    from mlclf_utils.stages import save_data, train as train_stage

    run_dir = Path(run_dir)
    runs.stage_dir(run_dir, STAGE)
    loaded = {name: dataset.load_split(save_data.split_dir(run_dir, name))
              for name in artifacts.SPLITS}
    splits = {name: windows.text_rows(split) for name, (split, _) in loaded.items()}  # per text
    return Inputs(run_dir=run_dir, model_dir=train_stage.model_dir(run_dir), splits=splits,
                  labels=loaded["train"][1].labels,
                  y={name: np.asarray(s["labels"], dtype=np.int8) for name, s in splits.items()},
                  windows=windows.for_classifier(windows.read_settings(
                      save_data.split_dir(run_dir, "train"))))


# --- 1 · probabilities and calibration ---------------------------------------------------------

def predict_probabilities(inputs: Inputs, config: Config, *, progress: bool = True) -> dict:
    """Raw sigmoid outputs of 03's model on validation and test (never on train: it saw it);
    with 01's chunks, one row per text, aggregated from its windows as ``Classifier`` does.
    Texts cut at max_length are one printed line per split, not a warning (errors.py)."""
    from mlclf_utils.serving.predict import Classifier

    classifier = Classifier.from_model_dir(inputs.model_dir, windows=inputs.windows)
    probs = {}
    for name in ("validation", "test"):
        with truncation_lines(name):
            probs[name] = classifier.predict_proba(inputs.splits[name]["text"],
                                                   batch_size=config.batch_size, progress=progress)
    return probs


def calibrate(inputs: Inputs, raw_probs: dict, config: Config):
    """``(calibration or None, calibrated probs by split, ECE table)``, fitted on validation."""
    from mlclf_utils.evaluation import calibration

    return calibration.calibrate_splits(inputs.y, raw_probs, inputs.labels,
                                        method=config.calibration_method,
                                        min_support=config.min_support)


def plot_raw_reliability(inputs: Inputs, raw_probs: dict):
    """The raw outputs' reliability on test: how far class weights pushed them up."""
    from mlclf_utils.evaluation import plots

    return plots.reliability_diagram(inputs.y["test"], raw_probs["test"],
                                     path=inputs.figure("reliability_raw.png"))


# --- 2 · thresholds ----------------------------------------------------------------------------

def tune_thresholds(inputs: Inputs, probs: dict, config: Config):
    """``(table, values)``: one threshold per label tuned on validation, and them as an array
    in label order for applying to test."""
    from mlclf_utils.evaluation import thresholds

    table = thresholds.tune_thresholds(inputs.y["validation"], probs["validation"], inputs.labels,
                                       min_support=config.min_support,
                                       fallback=config.threshold_fallback,
                                       shrinkage=config.threshold_shrinkage)
    return table, thresholds.thresholds_array(table, inputs.labels)


def plot_threshold_curves(inputs: Inputs, probs: dict, tuned: pd.DataFrame):
    """F1 against the threshold for the two most and the two least frequent labels, where the
    difference a tuned threshold makes shows best."""
    from mlclf_utils.evaluation import plots, thresholds

    curves = thresholds.f1_threshold_curves(inputs.y["validation"], probs["validation"],
                                            inputs.labels)
    by_support = tuned[tuned["support"] > 0].sort_values("support").index.tolist()
    return plots.plot_f1_vs_threshold(curves, by_support[-2:] + by_support[:2], tuned,
                                      inputs.figure("f1_vs_threshold.png"))


# --- 3 · metrics -------------------------------------------------------------------------------

def metric_reports(inputs: Inputs, probs: dict, tuned_values) -> dict:
    """Every metric on test at 0.5 and at the tuned thresholds, and on validation at the tuned
    thresholds (the sweep chooses by validation, never by test): report.json's sections."""
    from mlclf_utils.evaluation import metrics

    def report(split, cut):
        return metrics.multilabel_report(inputs.y[split], probs[split], inputs.labels, cut)

    return {"test_at_0.5": report("test", 0.5), "test_tuned": report("test", tuned_values),
            "validation_tuned": report("validation", tuned_values)}


def per_class_tables(inputs: Inputs, probs: dict, tuned_values) -> dict:
    """Per-label counts and scores on test, ``{"0.5": ..., "tuned": ...}``."""
    from mlclf_utils.evaluation import metrics

    return {"0.5": metrics.per_class_table(inputs.y["test"], probs["test"], inputs.labels, 0.5),
            "tuned": metrics.per_class_table(inputs.y["test"], probs["test"], inputs.labels,
                                             tuned_values)}


def plot_per_class_f1(inputs: Inputs, per_class: dict):
    from mlclf_utils.evaluation import plots

    return plots.plot_per_class_f1(per_class["0.5"], per_class["tuned"],
                                   inputs.figure("per_class_f1.png"))


def plot_pr_curves(inputs: Inputs, probs: dict):
    from mlclf_utils.evaluation import plots

    return plots.plot_pr_curves(inputs.y["test"], probs["test"], inputs.labels,
                                path=inputs.figure("pr_curves.png"))


def plot_confusion_counts(inputs: Inputs, per_class: dict):
    from mlclf_utils.evaluation import plots

    return plots.plot_confusion_counts(per_class["tuned"], inputs.figure("confusion_counts.png"))


def plot_reliability(inputs: Inputs, probs: dict):
    """``(figure, ECE)`` of the calibrated probabilities on test, which the maps never saw."""
    from mlclf_utils.evaluation import plots

    return plots.reliability_diagram(inputs.y["test"], probs["test"],
                                     path=inputs.figure("reliability.png"))


def plot_label_confusion(inputs: Inputs, probs: dict, tuned_values):
    """Which label is predicted where another was missed, at the tuned thresholds."""
    from mlclf_utils.evaluation import metrics, plots

    predicted = metrics.predict_with_thresholds(probs["test"], tuned_values)
    confusion = plots.label_confusion(inputs.y["test"], predicted, inputs.labels)
    return plots.plot_label_confusion(confusion, inputs.figure("label_confusion.png"))


# --- 4 · misclassifications ----------------------------------------------------------------------

def save_misclassifications(inputs: Inputs, probs: dict, tuned_values) -> pd.DataFrame:
    """One row per test text with what went wrong, written for 05 (Parquet) and people (CSV)."""
    from mlclf_utils.evaluation import misclassifications

    test = inputs.splits["test"]
    table = misclassifications.misclassification_table(
        test["text"], test["source_id"], inputs.y["test"], probs["test"], inputs.labels,
        tuned_values)
    misclassifications.save_misclassifications(table, inputs.out_dir)
    return table


def worst_classes(per_class: dict, n: int = 3) -> list[str]:
    """The n labels with the lowest tuned test F1 (labels without positives left out)."""
    return per_class["tuned"].dropna(subset=["f1"]).sort_values("f1").index[:n].tolist()


# --- 5 · baselines -----------------------------------------------------------------------------

def compare_with_baselines(inputs: Inputs, config: Config, reports: dict, *,
                           progress: bool = True) -> pd.DataFrame:
    """The tuned model beside its baselines on the same test split (evaluation/comparison)."""
    with truncation_lines("test, plain recipe"):  # when it is trained here and scored
        return baseline_comparison.compare_with_baselines(inputs, config, reports,
                                                          progress=progress)


# --- 6 · the files and the bundle --------------------------------------------------------------

def save_outputs(inputs: Inputs, tuned: pd.DataFrame, per_class: dict, reports: dict,
                 comparison: pd.DataFrame) -> dict[str, Path]:
    """thresholds.json, per_class_test.csv and report.json (docs/artifacts.md)."""
    from mlclf_utils.evaluation import thresholds

    out = inputs.out_dir
    paths = {"thresholds": out / artifacts.THRESHOLDS, "per_class": out / artifacts.PER_CLASS_TEST,
             "report": out / artifacts.REPORT}
    thresholds.save_thresholds(tuned, paths["thresholds"])
    per_class["tuned"].to_csv(paths["per_class"])
    artifacts.write_json(paths["report"], {**reports, "comparison": comparison.to_dict()})
    return paths


def export_bundle(inputs: Inputs, tuned_values, calibration, reports: dict, *,
                  onnx: bool) -> Path:
    """The model with its thresholds, calibration and 01's cleaning config in one folder, so
    that ``Classifier.load`` cleans, cuts and decides exactly as 04 measured."""
    from mlclf_utils.serving import bundle
    from mlclf_utils.stages import save_data

    train_dir = save_data.split_dir(inputs.run_dir, "train")
    preprocess_config = artifacts.read_json(train_dir / artifacts.PREPROCESS_CONFIG,
                                            what="01's preprocess config")
    with truncation_lines("test, ONNX int8 check"):
        return bundle.export_bundle(
            inputs.model_dir, inputs.out_dir / artifacts.BUNDLE_DIR,
            thresholds=dict(zip(inputs.labels, map(float, tuned_values))),
            preprocess_config=preprocess_config, calibration=calibration, onnx=onnx,
            # int8 is judged on test: validation's tuned thresholds sit on its own scores, where
            # any shift flips texts (serving/onnx_export.py says more).
            onnx_check=(inputs.splits["test"]["text"], inputs.y["test"]),
            metrics={k: v for k, v in reports["test_tuned"].items() if isinstance(v, (int, float))})


# --- 7 · the class-weight sweep ----------------------------------------------------------------

def load_sweep(inputs: Inputs, config: Config):
    """``(table, sweep.json)`` of the sweep to show, or None when there is none."""
    from mlclf_utils.runner import sweep

    found = sweep.find_sweep(inputs.run_dir, config.sweep_dir)
    return None if found is None else sweep.load(found)


def plot_sweep(inputs: Inputs, table: pd.DataFrame) -> None:
    from mlclf_utils.runner import sweep

    sweep.plot_f1(table, inputs.figure("sweep_f1.png"))
    sweep.plot_rare_labels(table, inputs.figure("sweep_rare_labels.png"))


# --- the whole stage ---------------------------------------------------------------------------

def run(run_dir, config: Config = Config(), *, progress: bool = False) -> dict:
    """Stage 04 headless, in the notebook's order; figures are saved, none is shown."""
    from mlclf_utils.figures import pyplot

    inputs = load_inputs(run_dir)
    raw_probs = predict_probabilities(inputs, config, progress=progress)
    calibration, probs, _ = calibrate(inputs, raw_probs, config)
    plot_raw_reliability(inputs, raw_probs)
    tuned, tuned_values = tune_thresholds(inputs, probs, config)
    plot_threshold_curves(inputs, probs, tuned)
    reports = metric_reports(inputs, probs, tuned_values)
    per_class = per_class_tables(inputs, probs, tuned_values)
    plot_per_class_f1(inputs, per_class)
    plot_pr_curves(inputs, probs)
    plot_confusion_counts(inputs, per_class)
    plot_reliability(inputs, probs)
    plot_label_confusion(inputs, probs, tuned_values)
    errors = save_misclassifications(inputs, probs, tuned_values)
    from mlclf_utils.data import label_audit  # cleanlab on validation and test (issue 12)
    label_audit.run_04(inputs, probs, min_support=config.min_support, show=False)
    comparison = compare_with_baselines(inputs, config, reports, progress=progress)
    bundle_dir = export_bundle(inputs, tuned_values, calibration, reports,
                               onnx=config.export_onnx)
    paths = save_outputs(inputs, tuned, per_class, reports, comparison)
    found = load_sweep(inputs, config)
    if found is not None:
        plot_sweep(inputs, found[0])
    pyplot()[0].close("all")
    return {"run_dir": str(inputs.run_dir), "bundle": str(bundle_dir),
            "report": str(paths["report"]),
            "test_macro_f1": reports["test_tuned"]["macro_f1"],
            "test_micro_f1": reports["test_tuned"]["micro_f1"],
            "texts_with_errors": int((errors["n_errors"] > 0).sum()),
            "models_compared": [c for c in comparison.columns
                                if not c.startswith("Δ") and c != "better"]}
