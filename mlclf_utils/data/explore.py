"""Exploration figures for the label space and the text lengths.

Every plot function returns the matplotlib Figure (so a notebook shows it inline) and saves a
PNG next to the other artifacts, so the figures survive outside Jupyter. The plotting libraries
load on the first figure, not on import: 01's checks and the counting helpers need neither.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlclf_utils import artifacts
from mlclf_utils.figures import pyplot, save_figure

# Beyond this many labels the frequency and co-occurrence figures show the most frequent ones
# and say so in their titles: 50,000 bars or a 50,000^2 heatmap cannot be drawn or read.
FIGURE_MAX_LABELS = 50


def label_counts(df: pd.DataFrame) -> pd.Series:
    """Positives per label, most frequent first (ties broken by name, for stable plots)."""
    counts = pd.Series([label for labels in df["labels"] for label in labels]).value_counts()
    return counts.rename_axis("label").sort_index().sort_values(ascending=False, kind="stable")


def plot_label_frequency(df: pd.DataFrame, path=None, *, log: bool = True,
                         max_labels: int = FIGURE_MAX_LABELS):
    plt, sns = pyplot()
    counts = label_counts(df)
    n_labels = len(counts)
    ratio = counts.iloc[0] / counts.iloc[-1] if len(counts) else float("nan")
    shown = f", top {max_labels} shown" if n_labels > max_labels else ""
    counts = counts.iloc[:max_labels]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(counts))))
    sns.barplot(x=counts.values, y=counts.index, ax=ax, color=sns.color_palette()[0])
    if log:
        ax.set_xscale("log")
    ax.set(xlabel="texts carrying the label" + (" (log scale)" if log else ""), ylabel="",
           title=f"Label frequency: {n_labels} labels, max/min = {ratio:.0f}x{shown}")
    return save_figure(fig, path)


def plot_labels_per_text(df: pd.DataFrame, path=None):
    plt, sns = pyplot()
    sizes = df["labels"].map(len)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.countplot(x=sizes, ax=ax, color=sns.color_palette()[1])
    ax.set(xlabel="labels per text", ylabel="texts",
           title=f"Labels per text (mean {sizes.mean():.2f}, median {sizes.median():.0f})")
    return save_figure(fig, path)


def cooccurrence(df: pd.DataFrame, labels: list[str], *, max_labels: int | None = None
                 ) -> pd.DataFrame:
    """P(column label | row label): how often B is present when A is (diagonal = 1).

    With ``max_labels``, only the most frequent labels (ties by name) are kept, in that order;
    the product is sparse either way, so 50,000 labels never make a dense N x K matrix.
    """
    from mlclf_utils.data.label_map import sparse_multi_hot

    labels = list(labels)
    if max_labels is not None and len(labels) > max_labels:
        counts = label_counts(df)
        known = set(labels)
        labels = [name for name in counts.index if name in known][:max_labels]
    matrix = sparse_multi_hot(df["labels"].tolist(), labels).astype(np.float32)
    counts = np.asarray((matrix.T @ matrix).todense())
    support = np.diag(counts).copy()
    support[support == 0] = 1.0
    return pd.DataFrame(counts / support[:, None], index=labels, columns=labels)


def plot_cooccurrence(df: pd.DataFrame, labels: list[str], path=None, *,
                      max_labels: int = FIGURE_MAX_LABELS):
    plt, sns = pyplot()
    n_labels = len(labels)
    conditional = cooccurrence(df, labels, max_labels=max_labels)
    labels = list(conditional.index)
    size = max(6, 0.28 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    mask = np.eye(len(labels), dtype=bool)
    sns.heatmap(conditional, mask=mask, cmap="rocket_r", vmin=0, vmax=1, square=True, ax=ax,
                cbar_kws={"label": "P(column label | row label)"},
                xticklabels=True, yticklabels=True)
    shown = (f": the {len(labels)} most frequent of {n_labels} labels"
             if n_labels > len(labels) else "")
    ax.set_title(f"Label co-occurrence (diagonal hidden){shown}")
    ax.tick_params(labelsize=7)
    return save_figure(fig, path)


def plot_token_lengths(df: pd.DataFrame, max_length: int, path=None):
    plt, sns = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    present = [s for s in artifacts.SPLITS if s in set(df["split"])]
    upper = float(np.percentile(df["n_tokens"], 99)) if len(df) else max_length
    sns.histplot(data=df, x="n_tokens", hue="split", hue_order=present, stat="density",
                 common_norm=False, element="step", fill=False, binrange=(0, max(upper, max_length)),
                 bins=50, ax=ax)
    ax.axvline(max_length, color="black", linestyle="--", linewidth=1)
    share = (df["n_tokens"] > max_length).mean()
    ax.text(max_length, ax.get_ylim()[1] * 0.95, f" max_length={max_length}\n {share:.1%} truncated",
            va="top", fontsize=8)
    ax.set(xlabel="tokens per text (before truncation)", title="Token length per split")
    return save_figure(fig, path)
