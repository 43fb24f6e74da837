"""Training curves from the Trainer's log history (``metrics/log_history.json``, which
``stages.train.read_log_history`` reads); plotting loads only when a figure is drawn."""

from __future__ import annotations

import pandas as pd

from mlclf_utils.figures import pyplot, save_figure


def history_frames(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the mixed log into training-loss rows and evaluation rows."""
    train = pd.DataFrame([r for r in log_history if "loss" in r and "eval_loss" not in r])
    evals = pd.DataFrame([r for r in log_history if "eval_loss" in r])
    return train, evals


def plot_training_curves(log_history: list[dict], path=None):
    """Loss (train and validation) and validation F1 per epoch: where the best model sits and
    whether training stopped for want of progress or of epochs."""
    plt, _ = pyplot()
    train, evals = history_frames(log_history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    if not train.empty:
        left.plot(train["epoch"], train["loss"], label="train loss (running)", alpha=0.8)
    if not evals.empty:
        left.plot(evals["epoch"], evals["eval_loss"], "o-", label="validation loss")
        for column, label in (("eval_macro_f1", "macro-F1"), ("eval_micro_f1", "micro-F1")):
            if column in evals:
                right.plot(evals["epoch"], evals[column], "o-", label=f"validation {label} @0.5")
    left.set(xlabel="epoch", ylabel="weighted BCE", title="Loss")
    right.set(xlabel="epoch", ylabel="F1", title="Validation F1 at threshold 0.5", ylim=(0, 1))
    left.legend()
    right.legend()
    fig.tight_layout()
    return save_figure(fig, path)
