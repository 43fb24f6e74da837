"""Figures of the loss and of the class weights, for notebook 03.

Kept apart from ``loss`` and ``class_weights`` so that the training entry point, which imports
those two inside SageMaker containers that install no plotting library, never loads
matplotlib or seaborn; everything here goes through ``mlclf_utils.figures``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mlclf_utils.errors import ParameterError
from mlclf_utils.figures import pyplot, save_figure
from mlclf_utils.modeling.class_weights import COLUMNS
from mlclf_utils.modeling.loss import bce_with_logits, loss_curves, naive_bce


def _failure_edges(x: torch.Tensor, bad: torch.Tensor) -> tuple[float | None, float | None]:
    """Innermost failing logit on each side of 0 (failures grow outwards from there)."""
    right = x[bad & (x > 0)]
    left = x[bad & (x < 0)]
    return (left.max().item() if left.numel() else None,
            right.min().item() if right.numel() else None)


def _where(points: torch.Tensor) -> str:
    """'x <= -88.75' / 'x >= 16.75': the failing logits sit in the tails."""
    parts = []
    if (points < 0).any():
        parts.append(f"x <= {points[points < 0].max().item():g}")
    if (points > 0).any():
        parts.append(f"x >= {points[points > 0].min().item():g}")
    return " and ".join(parts) or "x = 0"


def plot_stability(path=None, *, low: float = -120.0, high: float = 120.0, points: int = 961):
    """Naive vs stable loss in float32, with the logits where the naive form is inf or nan."""
    plt, sns = pyplot()
    x = torch.linspace(low, high, points, dtype=torch.float32)
    palette = sns.color_palette()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, target in zip(axes, (1, 0)):
        y = torch.full_like(x, float(target))
        stable = bce_with_logits(x[:, None], y[:, None], reduction="none")[:, 0]
        naive = naive_bce(x[:, None], y[:, None])[:, 0]
        top = float(stable.max()) * 1.08
        ax.plot(x, stable, color=palette[0], linewidth=3, alpha=0.6,
                label="stable: softplus (log-sum-exp)")
        ax.plot(x, torch.where(torch.isfinite(naive), naive, torch.nan), color=palette[3],
                linestyle="--", linewidth=1.4, label="naive: log(sigmoid(x)), where finite")
        for kind, mask, marker in (("inf", torch.isinf(naive), "^"), ("nan", torch.isnan(naive), "x")):
            if mask.any():
                step = max(1, int(mask.sum()) // 25)  # a readable row of markers, not 400
                shown = x[mask][::step]
                ax.scatter(shown, np.full(len(shown), top), marker=marker, color=palette[3], s=22,
                           label=f"naive = {kind} for {_where(x[mask])}")
        left, right = _failure_edges(x, ~torch.isfinite(naive))
        if left is not None:
            ax.axvspan(low, left, color=palette[3], alpha=0.08)
            ax.axvline(left, color=palette[3], linewidth=0.8)
        if right is not None:
            ax.axvspan(right, high, color=palette[3], alpha=0.08)
            ax.axvline(right, color=palette[3], linewidth=0.8)
        ax.legend(fontsize=7, loc="center right" if target == 1 else "center left")
        ax.set(xlabel="logit x", title=f"target y = {target}", ylim=(-top * 0.03, top * 1.06))
    axes[0].set_ylabel("loss")
    fig.suptitle("float32: sigmoid-then-log fails (shaded) where the log-sum-exp form stays exact",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pos_weight_effect(path=None, pos_weights=(0.5, 1, 4, 16), *, low: float = -8.0,
                           high: float = 8.0):
    """Loss and gradient vs logit: pos_weight stretches the positives' curves, never the negatives'."""
    plt, sns = pyplot()
    table = loss_curves(torch.linspace(low, high, 321, dtype=torch.float64), pos_weights)
    colours = sns.color_palette("viridis", len(table["pos_weight"].unique()))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, name in zip(axes, ("loss", "grad"), ("loss", "d loss / d logit")):
        for colour, (p, group) in zip(colours, table[table["target"] == 1].groupby("pos_weight", sort=False)):
            ax.plot(group["logit"], group[column], color=colour, linewidth=1.8,
                    label=f"positive (y=1), p_c = {p:g}")
        # Negatives are identical for every p_c; one line says so better than overlapping ones.
        negative = table[(table["target"] == 0) & (table["pos_weight"] == table["pos_weight"].iloc[0])]
        ax.plot(negative["logit"], negative[column], color="black", linestyle="--", linewidth=1.6,
                label="negative (y=0), any p_c")
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set(xlabel="logit x", ylabel=name, title=name)
    axes[0].legend(fontsize=7)
    axes[1].text(0.02, 0.04, "positives: p_c (sigmoid(x) - 1)\nnegatives: sigmoid(x)",
                 transform=axes[1].transAxes, fontsize=8, va="bottom")
    fig.suptitle("pos_weight p_c scales the loss and the gradient on positives only", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pos_weights(table: pd.DataFrame, path=None):
    """Final weights (bars) against the raw ratio (dots), log scale, so the damping is visible."""
    if not isinstance(table, pd.DataFrame) or not set(COLUMNS) <= set(table.columns):
        raise ParameterError("table", type(table).__name__,
                             f"must be a compute_pos_weight table with columns {COLUMNS}")
    order = table.assign(_name=table.index).sort_values(
        ["weight", "ratio", "_name"], ascending=[False, False, True], kind="stable")
    plt, sns = pyplot()
    palette = sns.color_palette()
    colours = {"": palette[0], "floor": palette[2], "cap": palette[3]}
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(order))))
    y = np.arange(len(order))
    # log axes cannot show 0 (a label on every train text has ratio 0): leave those out.
    shown = order["weight"].where(order["weight"] > 0)
    ax.barh(y, shown, color=[colours[c] for c in order["clipped"]], height=0.7)
    ratio = order["ratio"].where(order["ratio"] > 0)
    dots = ax.scatter(ratio, y, color="black", s=12, zorder=3, label="ratio = negatives / positives")
    ax.axvline(1, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, order.index)
    ax.invert_yaxis()
    ax.set_xscale("log")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[""], label="weight")]
    for kind in ("floor", "cap"):
        if (order["clipped"] == kind).any():
            moved = "raised to floor" if kind == "floor" else "lowered to cap"
            handles.append(plt.Rectangle((0, 0), 1, 1, color=colours[kind], label=f"weight, {moved}"))
    handles.append(dots)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    weights = order["weight"][order["weight"] > 0]
    spread = weights.max() / weights.min() if len(weights) else float("nan")
    strategy = table.attrs.get("strategy", "?")
    ax.set(xlabel="pos_weight (log scale; dashed line = 1, plain BCE)", ylabel="",
           title=f"pos_weight per label: strategy {strategy!r}, max/min = {spread:.3g}x")
    ax.tick_params(axis="y", labelsize=7)
    return save_figure(fig, path)
