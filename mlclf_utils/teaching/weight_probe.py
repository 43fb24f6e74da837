"""A cheap linear probe that shows what ``pos_weight`` does on real data, in seconds.

Fine-tuning the encoder once per weight would take an hour on a laptop CPU; a logistic
regression on TF-IDF features, trained with the very same BCE-with-logits loss, shows the same
trade-off: a larger positive weight buys recall on a rare class and pays for it in precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mlclf_utils.errors import ParameterError
from mlclf_utils.figures import pyplot, save_figure



def binary_scores(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Counts, precision, recall and F1 of one label's decisions (0 where undefined)."""
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"predicted_positive": int(predicted.sum()), "true_positive": tp,
            "precision": precision, "recall": recall, "f1": f1}

def tfidf_features(train_texts: Sequence[str], other_texts: Sequence[str], *,
                   max_features: int = 5000):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, sublinear_tf=True, min_df=2,
                                 ngram_range=(1, 2))
    train = vectorizer.fit_transform(train_texts)
    other = vectorizer.transform(other_texts)
    as_tensor = lambda m: torch.tensor(m.toarray(), dtype=torch.float32)  # noqa: E731
    return as_tensor(train), as_tensor(other)


def fit_logistic(features: torch.Tensor, target: torch.Tensor, *, pos_weight: float,
                 steps: int = 300, lr: float = 0.5, weight_decay: float = 1e-4,
                 seed: int = 0) -> torch.nn.Linear:
    """Full-batch logistic regression with the weighted BCE-with-logits loss."""
    from mlclf_utils.modeling.loss import bce_with_logits

    torch.manual_seed(seed)
    model = torch.nn.Linear(features.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr / 10, weight_decay=weight_decay)
    weight = torch.tensor([pos_weight], dtype=torch.float32)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = bce_with_logits(model(features), target[:, None], pos_weight=weight)
        loss.backward()
        optimizer.step()
    return model


def pos_weight_tradeoff(train_texts, train_targets, validation_texts, validation_targets,
                        *, pos_weights: Sequence[float], steps: int = 300) -> pd.DataFrame:
    """Precision and recall of one class on validation, for each positive weight."""
    train_targets = np.asarray(train_targets, dtype=np.float32)
    validation_targets = np.asarray(validation_targets, dtype=np.float32)
    if train_targets.sum() == 0:
        raise ParameterError("label", None, "the chosen class has no positive in train")
    x_train, x_val = tfidf_features(list(train_texts), list(validation_texts))
    y_train = torch.tensor(train_targets)
    truth = validation_targets > 0.5
    rows = []
    for weight in tqdm(list(pos_weights), desc="probe per pos_weight"):
        model = fit_logistic(x_train, y_train, pos_weight=float(weight), steps=steps)
        with torch.inference_mode():
            probs = torch.sigmoid(model(x_val)).squeeze(1).numpy()
        scores = binary_scores(probs > 0.5, truth)
        rows.append({"pos_weight": round(float(weight), 3),
                     "predicted_positive": scores["predicted_positive"],
                     "true_positive": scores["true_positive"],
                     **{k: round(scores[k], 3) for k in ("precision", "recall", "f1")},
                     "mean_prob_on_negatives": round(float(probs[~truth].mean()), 4)})
    return pd.DataFrame(rows)


def plot_tradeoff(table: pd.DataFrame, label: str, path=None):
    plt, _ = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for column, marker in (("precision", "o"), ("recall", "s"), ("f1", "^")):
        ax.plot(table["pos_weight"], table[column], marker=marker, label=column)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="pos_weight of the class (log scale)", ylabel="validation score at 0.5",
           title=f"What pos_weight does to {label}", ylim=(0, 1.02))
    ax.legend()
    return save_figure(fig, path)
