"""A model-based label audit: the given labels a held-out model confidently disagrees with.

01's implication rules catch a missing label only when another label implies it. Here a model
that never saw the row gives its probability for each label, and cleanlab's multi-label
confident learning (``cleanlab.multilabel_classification``: one-vs-rest per label, each label's
noise rate estimated from its own confident joint) flags the (text, label) pairs whose given
label disagrees with the model beyond what that label's noise explains:

* **probably missing**: the label is absent, but the model is confident it applies;
* **probably wrong**: the label is given, but the model is confident it does not.

The pairs are ranked by cleanlab's per-label quality score (self-confidence, the model's
probability of the given value, adjusted for each label's base rate; lowest first). The
adjustment matters: with 60 positives removed at random from the demo, it halved their median
rank (from 4,918th to 2,542nd of 155,144 pairs). Rows are reported, never changed or dropped:
whether a label is wrong is for a person to decide, with the CSV. 01 audits train+validation
with out-of-fold TF-IDF + LR (``data.out_of_fold``); 04 audits validation and test with the
fine-tuned model, whose outputs on them are held out already.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlclf_utils.errors import DataError, ParameterError

MISSING, WRONG = "probably missing", "probably wrong"
PRESENT, ABSENT = "present", "absent"
COLUMNS = ["rank", "source_id", "split", "text", "label", "given", "probability", "issue",
           "score", "text_score"]
EXCERPT_CHARS = 160
SHOWN_LABELS = 30  # bars in the figure; the table has every label
FIGURE = "label_audit.png"  # in 01's and in 04's figures/
METHOD = ("cleanlab.multilabel_classification.filter.find_label_issues "
          "(filter_by='prune_by_noise_rate'), ranked by rank.get_label_quality_scores_per_class "
          "(self_confidence, adjust_pred_probs=True)")


def excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[:chars - 1].rstrip() + "…"


def find_issues(y: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], *,
                source_ids: Sequence[str], texts: Sequence[str],
                splits: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (text, label) cleanlab flags, ranked: lowest label-quality score first.

    ``y`` (N, K) 0/1 given labels, ``probabilities`` (N, K) a held-out model's, column k for
    ``labels[k]``. cleanlab wants the given labels as lists of class indices; it refuses a
    single class, so one label is audited beside its complement (one-vs-rest makes that the
    same audit) and the complement is left out of the table.
    """
    from cleanlab.multilabel_classification import filter as cl_filter, rank

    y, probabilities = _check_inputs(y, probabilities, labels, source_ids, texts, splits)
    n, k = y.shape
    if n == 0 or k == 0 or not y.any():
        return pd.DataFrame(columns=COLUMNS)
    given, probs = y, probabilities
    if k == 1:
        given = np.column_stack([y[:, 0], 1 - y[:, 0]])
        probs = np.column_stack([probabilities[:, 0], 1.0 - probabilities[:, 0]])
    label_lists = [np.flatnonzero(row).tolist() for row in given]
    # find_label_issues flags the texts (the union of the per-label flags), the per-class call
    # says which of a text's labels; n_jobs=1: cleanlab's default starts a process pool per
    # label, which costs more here than the work it spreads.
    flagged_rows = cl_filter.find_label_issues(label_lists, probs, n_jobs=1)
    per_label = cl_filter.find_multilabel_issues_per_class(label_lists, probs, n_jobs=1)[:, :k]
    scores = np.asarray(rank.get_label_quality_scores_per_class(
        label_lists, probs, adjust_pred_probs=True))[:, :k]
    text_scores = rank.get_label_quality_scores(label_lists, probs, adjust_pred_probs=True)
    rows, cols = np.nonzero(per_label & flagged_rows[:, None])
    table = pd.DataFrame({
        "source_id": [str(source_ids[i]) for i in rows],
        "split": [str(splits[i]) for i in rows] if splits is not None else "",
        "text": [excerpt(texts[i]) for i in rows],
        "label": [labels[j] for j in cols],
        "given": np.where(y[rows, cols] == 1, PRESENT, ABSENT),
        "probability": probabilities[rows, cols],
        "issue": np.where(y[rows, cols] == 1, WRONG, MISSING),
        "score": scores[rows, cols],
        "text_score": text_scores[rows],
    })
    table = table.sort_values(["score", "text_score", "source_id", "label"], kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[COLUMNS].reset_index(drop=True)


def _check_inputs(y, probabilities, labels, source_ids, texts, splits):
    y = np.asarray(y)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if y.ndim != 2 or probabilities.shape != y.shape:
        raise DataError(f"the given labels {y.shape} and the probabilities {probabilities.shape} "
                        "must both be (texts, labels)")
    if len(labels) != y.shape[1]:
        raise DataError(f"{len(labels)} label names for {y.shape[1]} columns")
    for name, values in (("source_ids", source_ids), ("texts", texts), ("splits", splits)):
        if values is not None and len(values) != len(y):
            raise DataError(f"{len(values)} {name} for {len(y)} rows of labels")
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError("the given labels must be a 0/1 matrix")
    if probabilities.size and (not np.isfinite(probabilities).all()
                               or probabilities.min() < 0 or probabilities.max() > 1):
        raise DataError("the probabilities must be finite and within [0, 1]")
    return y.astype(np.int8), probabilities


def issue_summary(issues: pd.DataFrame, labels: Sequence[str] = (), shown: int = 10) -> dict:
    """Counts for the report: pairs, texts, each kind, and the labels with the most issues."""
    per_label = issues_per_label(issues, labels)
    top = per_label[per_label.sum(axis=1) > 0].head(shown)
    return {"issues": int(len(issues)), "texts_flagged": int(issues["source_id"].nunique()),
            "probably_missing": int((issues["issue"] == MISSING).sum()),
            "probably_wrong": int((issues["issue"] == WRONG).sum()),
            "top_labels": {label: {kind: int(n) for kind, n in row.items()}
                           for label, row in top.iterrows()},
            "method": METHOD}


def issues_per_label(issues: pd.DataFrame, labels: Sequence[str] = ()) -> pd.DataFrame:
    """Issues of each kind per label (every label of ``labels`` shown, zero or not), most first."""
    counts = pd.crosstab(issues["label"], issues["issue"]) if len(issues) else pd.DataFrame()
    counts = counts.reindex(columns=[MISSING, WRONG], fill_value=0)
    index = list(dict.fromkeys([*labels, *counts.index]))
    counts = counts.reindex(index, fill_value=0).astype(int)
    counts.index.name = "label"
    order = counts.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return counts.loc[order]


def plot_issues_per_label(issues: pd.DataFrame, labels: Sequence[str], path, *, title: str):
    """Stacked bars: per label, the pairs flagged as probably missing and as probably wrong."""
    from mlclf_utils.figures import pyplot, save_figure

    plt, _ = pyplot()
    counts = issues_per_label(issues, labels)
    counts = counts[counts.sum(axis=1) > 0]
    more = len(counts) > SHOWN_LABELS
    counts = counts.head(SHOWN_LABELS).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.28 * max(len(counts), 4) + 1.2))
    if len(counts):
        left = np.zeros(len(counts))
        for kind, color in ((MISSING, "#d95f02"), (WRONG, "#7570b3")):
            ax.barh(counts.index, counts[kind], left=left, color=color, label=kind)
            left += counts[kind].to_numpy()
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no label issue found", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("(text, label) pairs flagged by cleanlab")
    shown = f" (the {SHOWN_LABELS} labels with the most)" if more else ""
    ax.set_title(f"{title}{shown}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def save_issues(issues: pd.DataFrame, path) -> Path:
    """The ranked table as CSV, for a person to review in a spreadsheet."""
    missing = [c for c in COLUMNS if c not in issues.columns]
    if missing:
        raise DataError(f"not a label audit table: no column(s) {missing}", column=missing[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    issues[COLUMNS].to_csv(path, index=False)
    return path


def read_issues(path) -> pd.DataFrame:
    """The CSV back as ``find_issues`` made it (ids and texts as text)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("label audit table not found (the file is missing)", file=str(path))
    table = pd.read_csv(path, dtype={c: str for c in ("source_id", "split", "text", "label",
                                                       "given", "issue")},
                        keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"not a label audit table: no column(s) {missing}", file=str(path),
                        column=missing[0])
    return table[COLUMNS]


def check_parameters(switch, folds) -> None:
    """01's ``label_audit`` (True or False) and ``label_audit_folds`` (an integer >= 2)."""
    from mlclf_utils.data.out_of_fold import check_folds

    if not isinstance(switch, bool):
        raise ParameterError("label_audit", switch, "must be True or False")
    check_folds(folds, "label_audit_folds")


# --- the stages' steps -------------------------------------------------------------------------

AUDITED_IN_01 = ("train", "validation")  # test stays the untouched measurement; 04 audits it


def audit_processed_table(table: pd.DataFrame, label_map, *, folds: int = 5, seed: int = 42,
                          progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """01's audit: out-of-fold TF-IDF + LR on the train and validation rows, then cleanlab;
    ``(issues, summary)``. The table is not changed."""
    from mlclf_utils.data import out_of_fold
    from mlclf_utils.data.label_map import sparse_multi_hot

    rows = table[table["split"].isin(AUDITED_IN_01)]
    ids = rows["source_id"].astype(str).tolist()
    y = sparse_multi_hot(rows["labels"].tolist(), label_map.labels)  # 50,000 labels fit
    oof = out_of_fold.out_of_fold_probabilities(rows["text"].tolist(), y, label_map.labels,
                                                folds=folds, seed=seed, progress=progress)
    issues = find_issues(y[:, oof.columns].toarray(), oof.probabilities, oof.labels,
                         source_ids=ids, texts=rows["text"].tolist(),
                         splits=rows["split"].tolist())
    summary = {"splits": list(AUDITED_IN_01),
               "model": "TF-IDF + logistic regression (evaluation.baselines), out of fold",
               **oof.summary(), **issue_summary(issues, oof.labels)}
    return issues, summary


def held_out_audit(y: dict, probabilities: dict, labels: Sequence[str], splits: dict, *,
                   min_positives: int = 5) -> tuple[pd.DataFrame, dict]:
    """04's audit: validation and test together (the fine-tuned model saw neither), on
    ``probabilities[split]`` (N, K); labels with fewer than ``min_positives`` positives there
    are left out and named. ``splits[name]`` holds ``text`` and ``source_id``."""
    names = [name for name in ("validation", "test") if name in probabilities]
    given = np.concatenate([np.asarray(y[name]) for name in names])
    probs = np.concatenate([np.asarray(probabilities[name]) for name in names])
    positives = given.sum(axis=0)
    keep = [j for j in range(len(labels)) if min_positives <= positives[j] < len(given)]
    excluded = {labels[j]: (f"fewer than {min_positives} positives" if positives[j] < min_positives
                            else "positive in every text") for j in range(len(labels))
                if j not in keep}
    texts = [t for name in names for t in splits[name]["text"]]
    issues = find_issues(given[:, keep], probs[:, keep], [labels[j] for j in keep],
                         source_ids=[str(s) for name in names for s in splits[name]["source_id"]],
                         texts=texts, splits=[name for name in names for _ in splits[name]["text"]])
    summary = {"splits": names, "model": "the fine-tuned model (03), calibrated as 04 uses it",
               "rows": int(len(given)), "labels_audited": len(keep),
               "labels_not_audited": len(excluded), "not_audited": dict(list(excluded.items())[:10]),
               **issue_summary(issues, [labels[j] for j in keep])}
    return issues, summary


def run_01(table: pd.DataFrame, label_map, *, folds: int, seed: int, table_path, figure_path,
           progress: bool = False, show: bool = True) -> tuple[pd.DataFrame, dict]:
    """01's step: ``audit_processed_table``, its table saved as CSV and its figure as PNG (left
    open for a notebook to show when ``show``)."""
    issues, summary = audit_processed_table(table, label_map, folds=folds, seed=seed,
                                            progress=progress)
    save_issues(issues, table_path)
    _figure(issues, figure_path, "label issues in train and validation (out-of-fold TF-IDF + LR)",
            show)
    return issues, summary


def run_04(inputs, probabilities: dict, *, min_support: int = 5,
           show: bool = True) -> tuple[pd.DataFrame, dict]:
    """04's step: the audit of validation and test, saved in 04's folder as label_audit.csv,
    label_audit.json (the summary) and figures/label_audit.png."""
    from mlclf_utils import artifacts

    issues, summary = held_out_audit(inputs.y, probabilities, inputs.labels, inputs.splits,
                                     min_positives=min_support)
    save_issues(issues, inputs.out_dir / artifacts.HELD_OUT_LABEL_AUDIT)
    artifacts.write_json(inputs.out_dir / artifacts.HELD_OUT_LABEL_AUDIT_SUMMARY, summary)
    _figure(issues, inputs.figure(FIGURE), "label issues in validation and test (fine-tuned model)",
            show)
    return issues, summary


def _figure(issues: pd.DataFrame, path, title: str, show: bool) -> None:
    fig = plot_issues_per_label(issues, (), path, title=title)
    if not show:
        from mlclf_utils.figures import pyplot

        pyplot()[0].close(fig)


def top_examples(issues: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The best-ranked pairs of each kind, for the notebooks."""
    return (issues.groupby("issue", sort=False).head(n).sort_values("rank")
            .reset_index(drop=True))
