"""Stage 05: integrated gradients, over-fitted tokens, hard negatives and the retrain.

The notebook takes these steps one cell at a time, with the narrative between them; ``run()``
takes the same steps in the same order without displaying anything. 05 reads 04's mistakes
only through ``stages.evaluate.read_misclassifications``, and its own files are written and
read back here, so that no other module spells their names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError, check_positive_int, truncation_lines
from mlclf_utils.explain import attributions

STAGE = artifacts.EXPLAIN
KINDS = ("fp", "fn")  # the mistakes explained: false positives, then false negatives
SHOWN = 6  # explanations drawn in the figure and the HTML table; the rest are in the table file
READ_HINT = ("05_explain has not finished on this run: run it "
             "(python -m mlclf_utils run --resume RUN)")


@dataclass(frozen=True)
class Config:
    """05's parameters with their defaults, the one place they are written down: the
    notebook's parameters cell repeats them for papermill, and a test holds the two equal."""

    n_classes: int = 6
    n_per_kind: int = 3
    n_steps: int = attributions.N_STEPS
    internal_batch_size: int = attributions.INTERNAL_BATCH_SIZE
    max_pairs: int = 8
    oversample_factor: int = 3
    retrain: bool = True
    retrain_budget: float = 0.1

    def __post_init__(self) -> None:
        check(asdict(self))

    @classmethod
    def from_params(cls, params: dict) -> "Config":
        """The stage's values among a notebook's parameters (``run_dir`` is not one of them)."""
        from mlclf_utils.stages import config_values

        return cls(**config_values(cls, params))


def check(params: dict) -> None:
    """05's parameters, before any model loads: what the runner's preflight and ``Config`` call."""
    for name in ("n_classes", "n_per_kind", "n_steps", "internal_batch_size", "max_pairs",
                 "oversample_factor"):
        if name in params:
            check_positive_int(name, params[name])
    if "retrain" in params and not isinstance(params["retrain"], bool):
        raise ParameterError("retrain", params["retrain"], "must be True or False")
    if "retrain_budget" in params:
        from mlclf_utils.evaluation.baselines import check_budget

        check_budget("retrain_budget", params["retrain_budget"])


@dataclass
class Inputs:
    """What 05 reads: 02's train split, 03's model and 04's misclassification table."""

    run_dir: Path
    model_dir: Path
    data_dir: Path
    train_split: object  # datasets.Dataset
    label_map: object  # data.label_map.LabelMap
    errors: pd.DataFrame
    thresholds: dict | None = None  # 04's, label -> threshold: what 04 decided on, with errors
    calibrated: bool = True  # whether 04's probabilities (errors) went through its calibration

    @property
    def out_dir(self) -> Path:
        return artifacts.path(self.run_dir, STAGE)

    def figure(self, name: str) -> Path:
        return self.out_dir / artifacts.FIGURES_DIR / name

    @property
    def train_label_sets(self) -> list[list[str]]:
        """The train split's labels by name, which the audit and the hard negatives count in."""
        return self.label_map.from_multi_hot(np.asarray(self.train_split["labels"]) > 0.5)


def load_inputs(run_dir) -> Inputs:
    """Everything 05 reads; also makes 05's own folder, refusing one that already holds files."""
    from mlclf_utils.data import dataset, windows
    from mlclf_utils.runner import runs
    from mlclf_utils.stages import evaluate, save_data, train as train_stage

    run_dir = Path(run_dir)
    errors = evaluate.read_misclassifications(run_dir)
    thresholds = evaluate.read_thresholds(run_dir)
    calibrated = evaluate.calibration_of(run_dir) is not None
    runs.stage_dir(run_dir, STAGE)
    data_dir = save_data.dataset_dir(run_dir)
    train_split, label_map = dataset.load_split(data_dir / "train")
    train_split = windows.text_rows(train_split)  # one row per text, also with 01's chunks
    return Inputs(run_dir=run_dir, model_dir=train_stage.model_dir(run_dir), data_dir=data_dir,
                  train_split=train_split, label_map=label_map, errors=errors,
                  thresholds=thresholds, calibrated=calibrated)


def load_explainer(inputs: Inputs, config: Config):
    """Integrated gradients on 03's model, cutting texts where 04's ``Classifier`` cuts them."""
    return attributions.Explainer.from_model_dir(inputs.model_dir, n_steps=config.n_steps,
                                    internal_batch_size=config.internal_batch_size)


# --- 1 · explain the mistakes ------------------------------------------------------------------

def pick_mistakes(inputs: Inputs, config: Config) -> tuple[list[tuple[str, str]], dict, list[str]]:
    """``(items, kinds, classes)``: the most confident false positives and negatives of the
    ``n_classes`` labels with the most test errors, as (text, label) pairs; ``kinds`` maps a
    pair's position to "fp" or "fn", which the token audit needs to spot shortcuts."""
    from mlclf_utils.evaluation import misclassifications

    errors, labels = inputs.errors, inputs.label_map.labels
    counts = {label: sum(int(errors[f"false_{side}"].map(lambda xs: label in xs).sum())
                         for side in ("positives", "negatives")) for label in labels}
    classes = [label for label in sorted(labels, key=lambda label: -counts[label])
               if counts[label]][:config.n_classes]  # a class without errors explains nothing
    items, kinds = [], {}
    for label in classes:
        for kind in KINDS:
            worst = misclassifications.worst_examples(errors, label, kind=kind, n=config.n_per_kind)
            for text in worst["text"]:
                kinds[len(items)] = kind
                items.append((text, label))
    return items, kinds, classes


def explain_mistakes(inputs: Inputs, explainer, items, *, progress: bool = True) -> list:
    """One explanation per (text, label), also saved word by word as attributions.parquet;
    with 01's chunks, of the window that carries the decision (explain/decisive_window.py)."""
    from mlclf_utils.data import windows
    from mlclf_utils.explain import attribution_views, decisive_window

    items = decisive_window.decisive_items(items, explainer,
                                           windows.read_settings(inputs.data_dir / "train"))
    with truncation_lines("explained mistakes"):  # a printed line, not a warning (errors.py)
        explanations = explainer.explain_many(items, progress=progress)
    attribution_views.explanations_table(explanations).to_parquet(
        inputs.out_dir / artifacts.ATTRIBUTIONS)
    return explanations


def decisions(inputs: Inputs, items, n: int = SHOWN) -> list:
    """04's calibrated p and threshold for the first ``n`` items, which the views show beside
    each mistake (the raw sigmoid that IG explains can sit on the other side of the threshold)."""
    from mlclf_utils.explain import attribution_views

    return attribution_views.decisions_for(items[:n], inputs.errors, inputs.thresholds,
                                           calibrated=inputs.calibrated)


def plot_explanations(inputs: Inputs, explanations, n: int = SHOWN, *, kinds=None, items=None):
    from mlclf_utils.explain import attribution_views

    decided = None if items is None else decisions(inputs, items, n)
    return attribution_views.plot_attributions(explanations[:n], inputs.figure("attributions.png"),
                                               kinds=kinds, decisions=decided)


def show_explanations(inputs: Inputs, items, explanations, kinds, n: int = SHOWN):
    """The figure's first ``n`` explanations as HTML, with each text's true labels and 04's
    decision (looked up by the text picked, since a chunked text is explained by one window)."""
    from mlclf_utils.explain import attribution_views

    truth = dict(zip(inputs.errors["text"], inputs.errors["true_labels"]))
    true_labels = [truth.get(text) for text, _ in items[:n]]  # None: not in 04's table
    return attribution_views.attribution_html(explanations[:n], kinds=kinds,
                                              true_labels=true_labels,
                                              decisions=decisions(inputs, items, n))


# --- 2 · the over-fitted token audit -----------------------------------------------------------

def audit_tokens(inputs: Inputs, explanations, kinds: dict) -> pd.DataFrame:
    """Attribution, lift and false positives driven per (class, word), saved as token_audit.csv."""
    from mlclf_utils.explain import token_audit

    audit = token_audit.audit_tokens(explanations, inputs.train_split["text"],
                                     inputs.train_label_sets, kinds=kinds)
    audit.to_csv(inputs.out_dir / artifacts.TOKEN_AUDIT)
    return audit


def plot_top_tokens(inputs: Inputs, audit: pd.DataFrame):
    from mlclf_utils.explain import token_audit

    return token_audit.plot_top_tokens(audit, inputs.figure("top_tokens.png"))


# --- 3 · hard negatives ------------------------------------------------------------------------

def find_hard_negatives(inputs: Inputs, audit: pd.DataFrame, config: Config):
    """``(pairs, negatives, to_review)``: the first ``max_pairs`` suspicious (class, word) pairs
    and the train texts holding the word without the class, saved as hard_negatives.csv, less
    those whose class 01's label audit flags as probably missing: labels to review, saved as
    labels_to_review.csv (``to_review`` is None when 01 ran without the audit)."""
    from mlclf_utils.explain import hard_negatives
    from mlclf_utils.stages import preprocess

    suspicious = audit[audit["suspicious"]].reset_index()[["class", "token"]]
    pairs = list(suspicious.itertuples(index=False, name=None))[:config.max_pairs]
    negatives = hard_negatives.find_hard_negatives(
        inputs.train_split["text"], inputs.train_label_sets, inputs.train_split["source_id"], pairs)
    negatives, review = hard_negatives.set_aside_flagged(
        negatives, preprocess.read_label_audit(inputs.run_dir))
    hard_negatives.save_hard_negatives(negatives, inputs.out_dir / artifacts.HARD_NEGATIVES)
    if review is not None:
        hard_negatives.save_labels_to_review(review, inputs.out_dir / artifacts.LABELS_TO_REVIEW)
    return pairs, negatives, review


# --- 4 · the retrain ---------------------------------------------------------------------------

CONTROL_DIR = "control"  # in retrain/: the budget retrain without the hard negatives


def retrain_skipped(config: Config, negatives: pd.DataFrame) -> str | None:
    """Why the retrain will not run, or None when it will: a retrain costs two budget
    trainings (or one full one with ``retrain_budget=1.0``)."""
    if not config.retrain:
        return "retrain=False"
    if not len(negatives):
        return "no hard negatives found"
    return None


def retrain_with_hard_negatives(inputs: Inputs, negatives: pd.DataFrame, pairs, config: Config,
                                ) -> pd.DataFrame:
    """03's recipe for ``retrain_budget`` of its epochs on a train split with every hard
    negative ``oversample_factor`` times, against a control: the same budget on 02's train
    split (with a budget of 1.0, 03's own model). Both scored the 04 way; the per-class change
    is saved as retrain_comparison.csv."""
    from mlclf_utils.data import dataset, windows
    from mlclf_utils.evaluation import baselines, scoring
    from mlclf_utils.explain import hard_negatives
    from mlclf_utils.modeling import train
    from mlclf_utils.stages import train as train_stage

    def fit(train_dir: Path, out: Path) -> Path:
        train.run_training(train_dir=str(train_dir),
                           validation_dir=str(inputs.data_dir / "validation"),
                           model_dir=str(out / artifacts.MODEL_DIR),
                           output_data_dir=str(out / artifacts.METRICS_DIR),
                           checkpoint_dir=str(out / artifacts.CHECKPOINTS_DIR), **recipe)
        return out / artifacts.MODEL_DIR

    folder = inputs.out_dir / artifacts.RETRAIN_DIR
    augmented = hard_negatives.oversampled_train_split(
        inputs.data_dir / "train", negatives["source_id"].unique(), folder / "train",
        factor=config.oversample_factor)
    recipe = baselines.budget_recipe(train_stage.read_hyperparameters(inputs.run_dir),
                                     config.retrain_budget)
    after_dir = fit(augmented, folder)
    before_dir = (inputs.model_dir if config.retrain_budget == 1.0
                  else fit(inputs.data_dir / "train", folder / CONTROL_DIR))
    validation, test = (windows.text_rows(dataset.load_split(inputs.data_dir / s)[0])
                        for s in ("validation", "test"))
    labels = inputs.label_map.labels
    settings = windows.for_classifier(windows.read_settings(inputs.data_dir / "train"))
    with truncation_lines():  # one line per split: the two models cut the same texts
        before = scoring.evaluate_model_dir(before_dir, validation, test, labels, windows=settings)
        after = scoring.evaluate_model_dir(after_dir, validation, test, labels, windows=settings)
    comparison = hard_negatives.compare_before_after(before, after, sorted({c for c, _ in pairs}))
    comparison.to_csv(inputs.out_dir / artifacts.RETRAIN_COMPARISON, index=False)
    return comparison


# --- the whole stage ---------------------------------------------------------------------------

def run(run_dir, config: Config = Config(), *, progress: bool = False) -> dict:
    """Stage 05 headless, in the notebook's order; figures are saved, none is shown."""
    from mlclf_utils.figures import pyplot

    inputs = load_inputs(run_dir)
    explainer = load_explainer(inputs, config)
    items, kinds, classes = pick_mistakes(inputs, config)
    explanations = explain_mistakes(inputs, explainer, items, progress=progress)
    plot_explanations(inputs, explanations, kinds=kinds, items=items)
    audit = audit_tokens(inputs, explanations, kinds)
    plot_top_tokens(inputs, audit)
    pairs, negatives, review = find_hard_negatives(inputs, audit, config)
    skipped = retrain_skipped(config, negatives)
    if skipped is None:
        retrain_with_hard_negatives(inputs, negatives, pairs, config)
    pyplot()[0].close("all")
    return {"run_dir": str(inputs.run_dir), "classes": classes,
            "explained": len(explanations),
            "converged": sum(e.delta_ok for e in explanations),
            "suspicious_pairs": int(audit["suspicious"].sum()),
            "hard_negatives": int(len(negatives)), "retrain": skipped or "done",
            "labels_to_review": None if review is None else int(len(review))}


# --- reading 05's files back -------------------------------------------------------------------

def _stage_file(run_dir, name: str, what: str) -> Path:
    path = artifacts.path(run_dir, STAGE, name)
    if not path.is_file():
        raise DataError(f"{what} not found (the file is missing)", file=str(path), hint=READ_HINT)
    return path


def read_attributions(run_dir) -> pd.DataFrame:
    """attributions.parquet: one row per (explained pair, word)."""
    return pd.read_parquet(_stage_file(run_dir, artifacts.ATTRIBUTIONS, "05's attributions"))


def read_token_audit(run_dir) -> pd.DataFrame:
    """token_audit.csv: one row per (class, word)."""
    return pd.read_csv(_stage_file(run_dir, artifacts.TOKEN_AUDIT, "05's token audit"),
                       index_col=0, keep_default_na=False, na_values={"lift": [""]})


def read_hard_negatives(run_dir) -> pd.DataFrame:
    """hard_negatives.csv with ``labels`` as lists."""
    from mlclf_utils.explain import hard_negatives

    return hard_negatives.load_hard_negatives(
        _stage_file(run_dir, artifacts.HARD_NEGATIVES, "05's hard negatives"))


def read_retrain_comparison(run_dir) -> pd.DataFrame:
    """retrain_comparison.csv: precision and recall before and after, per class."""
    return pd.read_csv(_stage_file(run_dir, artifacts.RETRAIN_COMPARISON,
                                   "05's retrain comparison"))
