"""Baselines on the same splits, so the fine-tuned model's numbers mean something.

* TF-IDF + one-vs-rest logistic regression with ``class_weight="balanced"``: the strong classic.
* The frozen encoder: the base encoder's mean-pooled embeddings (one forward pass per text, no
  training of the encoder) + the same per-label logistic regression: what fine-tuning buys.
* The plain recipe: the same encoder fine-tuned with unweighted BCE, read at threshold 0.5 —
  what transformers' ``problem_type="multi_label_classification"`` gives out of the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def per_label_logistic(features, targets: np.ndarray, *, C: float, seed: int):
    """One balanced logistic regression per label, fitted: the classifier both feature-based
    baselines share, so they differ only in their features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = OneVsRestClassifier(
        LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed),
        n_jobs=1,
    )
    return model.fit(features, np.asarray(targets, dtype=np.int8))


def tfidf_logistic(train_texts: Sequence[str], train_targets: np.ndarray,
                   predict_texts: dict[str, Sequence[str]], *, max_features: int = 50000,
                   C: float = 4.0, seed: int = 42) -> dict[str, np.ndarray]:
    """Fit on train; return probabilities (N, K) for each named set of texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, sublinear_tf=True, min_df=2,
                                 ngram_range=(1, 2), strip_accents="unicode")
    model = per_label_logistic(vectorizer.fit_transform(list(train_texts)), train_targets,
                               C=C, seed=seed)
    return {name: model.predict_proba(vectorizer.transform(list(texts)))
            for name, texts in predict_texts.items()}


def encoder_embeddings(model_name: str, token_ids: Sequence[Sequence[int]], *,
                       batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """(N, hidden) float32 mean-pooled last hidden states of the pretrained encoder, rows in
    input order: one forward pass per text, longest batches first, each padded only to its
    own longest text (the mask keeps padding out of the mean)."""
    import torch
    from transformers import AutoModel

    from mlclf_utils.modeling import encoders
    from mlclf_utils.modeling.pooling import mean_pool

    encoder = AutoModel.from_pretrained(encoders.resolve_model_path(model_name)).eval()
    sequences = [list(ids) for ids in token_ids]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    out = np.empty((len(sequences), encoder.config.hidden_size), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="embedding (frozen encoder)", unit="batch")
    with torch.inference_mode():
        for start in starts:
            rows = order[start:start + batch_size]
            width = max(len(sequences[i]) for i in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for row, i in enumerate(rows):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
                mask[row, :len(sequences[i])] = 1
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            out[rows] = mean_pool(hidden, mask).numpy()
    return out


def frozen_encoder_logistic(model_name: str, train_ids, train_targets: np.ndarray,
                            predict_ids: dict, *, C: float = 0.01, seed: int = 42,
                            batch_size: int = 64, progress: bool = False) -> dict[str, np.ndarray]:
    """Per-label logistic regression on frozen mean-pooled embeddings (standardised), fitted
    on train; returns probabilities (N, K) for each named set of token-id sequences.

    ``C=0.01``: on the demo's validation split (thresholds tuned), macro-F1 fell as C rose
    (0.575 at 0.01, 0.568 at 0.03, 0.546 at 0.1); 384 dense features over-fit rare labels."""
    from sklearn.preprocessing import StandardScaler

    def embed(ids):
        return encoder_embeddings(model_name, ids, batch_size=batch_size, progress=progress)

    scaler = StandardScaler()
    model = per_label_logistic(scaler.fit_transform(embed(train_ids)), train_targets,
                               C=C, seed=seed)
    return {name: model.predict_proba(scaler.transform(embed(ids)))
            for name, ids in predict_ids.items()}


def check_budget(name: str, value) -> None:
    """A training budget: a fraction of 03's training in (0, 1]."""
    from mlclf_utils.errors import ParameterError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ParameterError(name, value, "must be a fraction of 03's training in (0, 1]; "
                             "1.0 trains in full")


def budget_recipe(trained_hyperparameters: dict, budget: float = 1.0, **overrides) -> dict:
    """The 03 recipe (``modeling.hyperparameters.recipe``) cut to ``budget`` of its training:
    that fraction of its epochs, or of its ``max_steps`` when it set them. A cheaper second
    training for a baseline or a control, which must then say it was cut short."""
    from mlclf_utils.modeling.hyperparameters import recipe

    if budget != 1.0:
        steps = trained_hyperparameters.get("max_steps", -1) or -1
        if steps > 0:
            overrides.setdefault("max_steps", max(1, round(steps * budget)))
        else:
            overrides.setdefault("epochs", float(trained_hyperparameters["epochs"]) * budget)
    return recipe(trained_hyperparameters, **overrides)


def plain_bce_hyperparameters(trained_hyperparameters: dict, budget: float = 1.0) -> dict:
    """The 03 recipe with the class weights switched off: the only difference is the loss
    (and, with ``budget`` < 1, the shorter training)."""
    return budget_recipe(trained_hyperparameters, budget, pos_weight_strategy="none")


def train_plain_bce(run_dir: str | Path, trained_hyperparameters: dict, out_dir: str | Path,
                    *, budget: float = 1.0) -> Path:
    """Fine-tune the plain-recipe model into ``out_dir/model`` and return that folder."""
    from mlclf_utils.modeling import train

    out_dir = Path(out_dir)
    train.run_training(
        run_dir=str(run_dir),
        model_dir=str(out_dir / "model"),
        output_data_dir=str(out_dir / "metrics"),
        checkpoint_dir=str(out_dir / "checkpoints"),
        **plain_bce_hyperparameters(trained_hyperparameters, budget),
    )
    return out_dir / "model"
