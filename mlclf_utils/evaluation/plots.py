"""Evaluation figures: per-class F1, PR curves, F1 by threshold, counts, calibration, confusions.

Like explore.py, every plot returns its Figure (the notebook shows it inline) and saves a PNG
when given a path, so the figures outlive the notebook. The numbers behind the figures
(calibration bins, ECE, the label confusion matrix) are functions of their own, tested on
hand-worked cases, so a figure never holds the only copy of a number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from mlclf_utils.errors import DataError, ParameterError, require_columns
from mlclf_utils.figures import pyplot, save_figure
from mlclf_utils.evaluation.metrics import as_targets, check_inputs, check_labels

plt, sns = pyplot()

# Above this many labels the tick names would overlap; the axis then shows ranks instead.
MAX_NAMED_LABELS = 60


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ParameterError(name, value, f"must be an integer >= {minimum}")
    return int(value)


def _by_support(table: pd.DataFrame) -> pd.DataFrame:
    """Most frequent first; names break ties so the order never depends on the input order."""
    return table.rename_axis("label").reset_index().sort_values(
        ["support", "label"], ascending=[False, True], kind="stable").set_index("label")


# --- per-class F1 ------------------------------------------------------------------------

def plot_per_class_f1(per_class_at_05: pd.DataFrame, per_class_tuned: pd.DataFrame, path=None):
    """F1 per label at 0.5 and at the tuned thresholds, labels sorted by support.

    Up to MAX_NAMED_LABELS labels get named bar pairs; beyond that bars would merge into one
    another, so each label is a dot per setting with a rolling mean over neighbouring ranks.
    Labels without positives have no F1; they are left out and counted in the title.
    """
    require_columns(per_class_at_05, ["support", "f1"], "per_class_at_05")
    require_columns(per_class_tuned, ["support", "f1"], "per_class_tuned")
    if list(per_class_at_05.index) != list(per_class_tuned.index):
        raise DataError("per_class_at_05 and per_class_tuned must list the same labels in order")
    both = pd.DataFrame({"support": per_class_tuned["support"],
                         "at 0.5": per_class_at_05["f1"], "tuned": per_class_tuned["f1"]})
    skipped = int(both["tuned"].isna().sum())
    both = _by_support(both.dropna(subset=["tuned"]))
    if both.empty:
        raise DataError("no label has a positive in this split: there is no F1 to plot")
    k = len(both)
    colours = {"at 0.5": sns.color_palette()[7], "tuned": sns.color_palette()[0]}
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.28 * k + 2), 16.0), 4.5))
    x = np.arange(k)
    if k <= MAX_NAMED_LABELS:
        long = both.reset_index().melt(id_vars=["label", "support"],
                                       value_vars=list(colours), var_name="thresholds",
                                       value_name="F1")
        sns.barplot(data=long, x="label", y="F1", hue="thresholds", order=list(both.index),
                    ax=ax, palette=list(colours.values()), width=0.85)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set_xlabel("")
    else:
        window = max(5, k // 25)
        for name, colour in colours.items():
            values = both[name]
            ax.plot(x, values.to_numpy(), ".", color=colour, markersize=3, alpha=0.6)
            ax.plot(x, values.rolling(window, center=True, min_periods=1).mean().to_numpy(),
                    color=colour, linewidth=2, label=f"{name} (mean of {window} neighbours)")
        ax.set_xlim(-1, k)
        ax.set(xlabel=f"{k} labels, most frequent on the left", ylabel="F1")
    ax.set_ylim(0, 1.05)
    support_ax = ax.twinx()
    support_ax.plot(x, both["support"].to_numpy(), color="black", linewidth=1,
                    marker="." if k <= MAX_NAMED_LABELS else None)
    support_ax.set_yscale("log")
    support_ax.set_ylabel("positives in this split (log, black line)")
    mean05, mean_tuned = both["at 0.5"].mean(), both["tuned"].mean()
    title = f"Per-class F1: macro {mean05:.3f} at 0.5, {mean_tuned:.3f} with tuned thresholds"
    if skipped:
        title += f"\n({skipped} label{'s' * (skipped != 1)} without positives not shown)"
    ax.set_title(title)
    ax.legend(loc="upper right", title=None, fontsize=8)
    return save_figure(fig, path)


# --- precision-recall curves --------------------------------------------------------------

WHICH = {"most": "most frequent", "least": "least frequent"}


def plot_pr_curves(y_true, probs, labels, which=("most", "least"), n: int = 3, path=None):
    """Precision-recall curves of the n most and n least frequent labels, AP in the legend.

    Only labels with a positive in this split are candidates: without one there is no curve.
    """
    y, p, names = check_inputs(y_true, probs, labels)
    n = _check_positive_int("n", n)
    which = [which] if isinstance(which, str) else list(which)
    if not which or any(w not in WHICH for w in which):
        raise ParameterError("which", which, f"must be a non-empty subset of {list(WHICH)}")
    support = y.sum(axis=0)
    ranked = _by_support(pd.DataFrame({"support": support}, index=names))
    ranked = ranked[ranked["support"] > 0]
    if ranked.empty:
        raise DataError("y_true has no positives: there are no precision-recall curves")
    fig, axes = plt.subplots(1, len(which), figsize=(5.5 * len(which), 4.5), squeeze=False)
    for ax, side in zip(axes[0], which):
        chosen = list(ranked.index[:n]) if side == "most" else list(ranked.index[::-1][:n])
        for name in chosen:
            j = names.index(name)
            precision, recall, _ = precision_recall_curve(y[:, j], p[:, j])
            ap = average_precision_score(y[:, j], p[:, j])
            ax.step(recall, precision, where="post",
                    label=f"{name} (n={int(support[j])}, AP={ap:.2f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{n} {WHICH[side]} labels")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


# --- F1 against threshold ------------------------------------------------------------------

def plot_f1_vs_threshold(curves: pd.DataFrame, labels_to_show, tuned_table=None, path=None):
    """F1 as the threshold moves, per label, with the tuned threshold starred.

    Shows why 0.5 is a poor default for rare labels: their F1 often peaks far below it.
    """
    require_columns(curves, ["label", "threshold", "f1"], "curves")
    show = [labels_to_show] if isinstance(labels_to_show, str) else list(labels_to_show)
    if not show:
        raise ParameterError("labels_to_show", labels_to_show, "must name at least one label")
    known = set(curves["label"])
    unknown = [x for x in show if x not in known]
    if unknown:
        raise DataError(f"labels_to_show names labels not in curves: {unknown[:10]}")
    if tuned_table is not None:
        require_columns(tuned_table, ["threshold", "f1_tuned"], "tuned_table")
        missing = [x for x in show if x not in tuned_table.index]
        if missing:
            raise DataError(f"tuned_table has no row for {missing[:10]}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    palette = sns.color_palette(n_colors=max(len(show), 1))
    for colour, name in zip(palette, dict.fromkeys(show)):
        part = curves[curves["label"] == name]
        text = name
        if tuned_table is not None:
            threshold = float(tuned_table.loc[name, "threshold"])
            ax.plot([threshold], [tuned_table.loc[name, "f1_tuned"]], marker="*", markersize=13,
                    color=colour, markeredgecolor="black", linestyle="none")
            text += f" (tuned {threshold:.2f})"
        ax.plot(part["threshold"], part["f1"], color=colour, label=text)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="threshold", ylabel="F1",
           title="F1 against threshold (star: tuned threshold)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# --- TP/FP/FN/TN counts ---------------------------------------------------------------------

def plot_confusion_counts(per_class_table: pd.DataFrame, path=None, *, top: int | None = 40):
    """Heatmap label x (TP, FP, FN, TN), counts written in every cell.

    Colour is each count's share of the label's TP + FP + FN: TN dwarfs the rest for every
    rare label and would wash the colours out, so TN is shown as a count only. ``top`` keeps
    the most frequent labels (None keeps all); the title says how many were shown.
    """
    require_columns(per_class_table, ["support", "tp", "fp", "fn", "tn"], "per_class_table")
    if top is not None:
        top = _check_positive_int("top", top)
    ranked = _by_support(per_class_table)
    shown = ranked if top is None else ranked.iloc[:top]
    counts = shown[["tp", "fp", "fn", "tn"]].astype(np.int64)
    counts.columns = ["TP", "FP", "FN", "TN"]
    errors_and_hits = counts[["TP", "FP", "FN"]].sum(axis=1).replace(0, np.nan)
    colour = counts[["TP", "FP", "FN"]].div(errors_and_hits, axis=0)
    colour["TN"] = np.nan
    k = len(counts)
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * k + 1.8))
    sns.heatmap(colour, vmin=0, vmax=1, cmap="mako_r", ax=ax, yticklabels=True,
                cbar_kws={"label": "share of TP + FP + FN (TN: count only)", "shrink": 0.6})
    values = counts.to_numpy()
    shares = colour.to_numpy()
    for i in range(k):
        for j in range(4):
            dark = np.isfinite(shares[i, j]) and shares[i, j] > 0.55
            ax.text(j + 0.5, i + 0.5, f"{values[i, j]:,}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.tick_params(axis="y", labelsize=7, labelrotation=0)
    ax.set(ylabel="",
           title=f"Decisions per label ({k} of {len(ranked)} labels, most frequent first)")
    return save_figure(fig, path)


# --- calibration ------------------------------------------------------------------------------

def calibration_bins(y_true, probs, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins over all (text, label) pairs: count, mean probability, share positive.

    Bin b holds b/n <= p < (b+1)/n; the last bin also holds p = 1. Empty bins are kept with
    count 0 (and NaN means) so the table always has n_bins rows.
    """
    y, p, _ = check_inputs(y_true, probs)
    n_bins = _check_positive_int("n_bins", n_bins)
    flat_p, flat_y = p.ravel(), y.ravel()
    index = np.minimum((flat_p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=flat_p, minlength=n_bins)
    sum_y = np.bincount(index, weights=flat_y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        share = np.where(count > 0, sum_y / count, np.nan)
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame({
        "lower": edges[:-1], "upper": edges[1:], "count": count,
        "mean_probability": mean_p, "fraction_positive": share,
        "gap": np.abs(share - mean_p),
    }, index=pd.RangeIndex(n_bins, name="bin"))


def expected_calibration_error(y_true, probs, n_bins: int = 10) -> float:
    """ECE = sum over bins of (pairs in bin / all pairs) * |share positive - mean probability|."""
    bins = calibration_bins(y_true, probs, n_bins)
    filled = bins[bins["count"] > 0]
    return float((filled["count"] / bins["count"].sum() * filled["gap"]).sum())


def reliability_diagram(y_true, probs, n_bins: int = 10, path=None):
    """(Figure, ECE): share of positives per probability bin against the diagonal.

    The lower panel shows how many pairs fall in each bin: in multi-label data most pairs are
    confident negatives, which is why the ECE can look small while the high bins are off.
    """
    bins = calibration_bins(y_true, probs, n_bins)
    filled = bins[bins["count"] > 0]
    ece = float((filled["count"] / bins["count"].sum() * filled["gap"]).sum())
    width = 1.0 / len(bins)
    centres = (bins["lower"] + bins["upper"]) / 2
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centres, bins["fraction_positive"].fillna(0), width=width * 0.95,
           color=sns.color_palette()[0], edgecolor="black", linewidth=0.5,
           label="share of positives")
    ax.plot(filled["mean_probability"], filled["fraction_positive"], "o", color="black",
            markersize=4, label="at the bin's mean probability")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="share of positives",
           title=f"Reliability over {int(bins['count'].sum()):,} (text, label) pairs, "
                 f"ECE = {ece:.3f}")
    ax.legend(fontsize=8, loc="upper left")
    count_ax.bar(centres, bins["count"], width=width * 0.95, color=sns.color_palette()[7])
    count_ax.set_yscale("log")
    count_ax.set(xlabel="predicted probability", ylabel="pairs (log)")
    fig.tight_layout()
    return save_figure(fig, path), ece


# --- which labels get confused with which ---------------------------------------------------

def label_confusion(y_true, predicted, labels) -> pd.DataFrame:
    """K x K counts: texts where the row label was missed while the column label was predicted.

    One matrix product of the false-negative and false-positive indicators; the diagonal is 0
    by construction (a label cannot be missed and wrongly predicted on the same text).
    """
    y = as_targets(y_true)
    pred = as_targets(predicted, "predicted")
    if pred.shape != y.shape:
        raise DataError(f"predicted has shape {pred.shape} but y_true has shape {y.shape}")
    names = check_labels(labels, y.shape[1])
    missed = (y & ~pred).astype(np.float64)
    wrong = (~y & pred).astype(np.float64)
    matrix = np.rint(missed.T @ wrong).astype(np.int64)  # float BLAS; exact below 2**53
    return pd.DataFrame(matrix, index=pd.Index(names, name="missed"),
                        columns=pd.Index(names, name="predicted instead"))


def top_confusions(matrix: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """The largest non-zero cells as (missed, predicted_instead, texts), largest first."""
    if not isinstance(matrix, pd.DataFrame) or list(matrix.index) != list(matrix.columns):
        raise ParameterError("matrix", type(matrix).__name__, "must be a label_confusion table")
    top = _check_positive_int("top", top)
    values = matrix.to_numpy()
    rows, cols = np.nonzero(values)
    cells = pd.DataFrame({
        "missed": [str(matrix.index[i]) for i in rows],
        "predicted_instead": [str(matrix.columns[j]) for j in cols],
        "texts": values[rows, cols].astype(np.int64),
    })
    cells = cells.sort_values(["texts", "missed", "predicted_instead"],
                              ascending=[False, True, True], kind="stable")
    return cells.head(top).reset_index(drop=True)


def plot_label_confusion(matrix: pd.DataFrame, path=None, *, top: int = 20):
    """Bar chart of the most frequent (missed label, label predicted instead) pairs."""
    cells = top_confusions(matrix, top)
    n_pairs = int(np.count_nonzero(matrix.to_numpy()))
    fig, ax = plt.subplots(figsize=(7, 0.32 * max(len(cells), 3) + 1.5))
    if cells.empty:
        ax.text(0.5, 0.5, "no text had a label missed while another was wrongly predicted",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        names = [f"{m}  →  {p}" for m, p in zip(cells["missed"], cells["predicted_instead"])]
        sns.barplot(x=cells["texts"].to_numpy(), y=names, ax=ax, color=sns.color_palette()[3],
                    orient="h")
        ax.tick_params(axis="y", labelsize=8)
        ax.set(xlabel="texts", ylabel="missed label  →  label predicted instead")
    ax.set_title(f"Which labels get confused ({len(cells)} of {n_pairs} non-zero pairs)")
    return save_figure(fig, path)
