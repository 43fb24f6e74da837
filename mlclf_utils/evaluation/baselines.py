"""Baselines on the same splits, so the fine-tuned model's numbers mean something.

* TF-IDF + one-vs-rest logistic regression with ``class_weight="balanced"``: the strong classic.
* The plain recipe: the same encoder fine-tuned with unweighted BCE, read at threshold 0.5 —
  what transformers' ``problem_type="multi_label_classification"`` gives out of the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def tfidf_logistic(train_texts: Sequence[str], train_targets: np.ndarray,
                   predict_texts: dict[str, Sequence[str]], *, max_features: int = 50000,
                   C: float = 4.0, seed: int = 42) -> dict[str, np.ndarray]:
    """Fit on train; return probabilities (N, K) for each named set of texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    vectorizer = TfidfVectorizer(max_features=max_features, sublinear_tf=True, min_df=2,
                                 ngram_range=(1, 2), strip_accents="unicode")
    features = vectorizer.fit_transform(list(train_texts))
    model = OneVsRestClassifier(
        LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed),
        n_jobs=1,
    )
    model.fit(features, np.asarray(train_targets, dtype=np.int8))
    return {name: model.predict_proba(vectorizer.transform(list(texts)))
            for name, texts in predict_texts.items()}


def plain_bce_hyperparameters(trained_hyperparameters: dict) -> dict:
    """The 03 recipe with the class weights switched off: the only difference is the loss."""
    from mlclf_utils.modeling.hyperparameters import recipe

    return recipe(trained_hyperparameters, pos_weight_strategy="none")


def train_plain_bce(run_dir: str | Path, trained_hyperparameters: dict, out_dir: str | Path) -> Path:
    """Fine-tune the plain-recipe model into ``out_dir/model`` and return that folder."""
    from mlclf_utils.modeling import train

    out_dir = Path(out_dir)
    train.run_training(
        run_dir=str(run_dir),
        model_dir=str(out_dir / "model"),
        output_data_dir=str(out_dir / "metrics"),
        checkpoint_dir=str(out_dir / "checkpoints"),
        **plain_bce_hyperparameters(trained_hyperparameters),
    )
    return out_dir / "model"
