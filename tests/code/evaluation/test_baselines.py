"""The baselines: the frozen encoder's embeddings on the real packaged all-MiniLM-L6-v2 (mean
pooling that padding cannot move, rows in input order, the same numbers twice), its logistic
regression's shapes and determinism, and the budget recipes."""

import numpy as np
import pytest

from mlclf_utils.errors import ParameterError
from mlclf_utils.evaluation import baselines
from mlclf_utils.modeling import encoders

MODEL = encoders.DEFAULT_MODEL
TEXTS = ["A GTK image viewer with thumbnails",
         "Python library for parsing and writing TOML configuration files, with a command "
         "line tool that checks a file and reports the line of each error it finds",
         "fast IRC client",
         "SQLite database browser with a Qt interface for editing tables and running queries"]


@pytest.fixture(scope="module")
def token_ids():
    tokenizer = encoders.load_tokenizer(MODEL)
    return tokenizer(TEXTS, truncation=True, max_length=64)["input_ids"]


@pytest.fixture(scope="module")
def embeddings(token_ids):
    return baselines.encoder_embeddings(MODEL, token_ids, batch_size=4)


def test_embeddings_are_one_row_per_text_of_the_encoders_width(embeddings):
    assert embeddings.shape == (len(TEXTS), encoders.load_config(MODEL).hidden_size)
    assert embeddings.dtype == np.float32 and np.isfinite(embeddings).all()
    # Different texts, different embeddings (a constant output would pass the shape check).
    assert np.linalg.matrix_rank(embeddings) == len(TEXTS)


def test_padding_does_not_move_an_embedding(token_ids, embeddings):
    """Each text alone (no padding at all) against the batch of four, where the short texts
    are padded to the longest: mean pooling over the mask must give the same vector."""
    lengths = [len(ids) for ids in token_ids]
    assert min(lengths) < max(lengths) / 2  # the batch really pads the short ones
    for i, ids in enumerate(token_ids):
        alone = baselines.encoder_embeddings(MODEL, [ids], batch_size=1)[0]
        np.testing.assert_allclose(embeddings[i], alone, atol=1e-5, rtol=1e-4)


def test_the_pooling_is_the_mean_over_real_tokens_only(token_ids, embeddings):
    """Against transformers itself: the average of the unpadded text's last hidden states."""
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(encoders.resolve_model_path(MODEL)).eval()
    shortest = int(np.argmin([len(ids) for ids in token_ids]))
    with torch.inference_mode():
        hidden = encoder(input_ids=torch.tensor([token_ids[shortest]])).last_hidden_state[0]
    np.testing.assert_allclose(embeddings[shortest], hidden.mean(dim=0).numpy(), atol=1e-5,
                               rtol=1e-4)


def test_rows_come_back_in_input_order_whatever_the_batching(token_ids, embeddings):
    reordered = [token_ids[i] for i in (2, 0, 3, 1)]
    again = baselines.encoder_embeddings(MODEL, reordered, batch_size=3)
    np.testing.assert_allclose(again, embeddings[[2, 0, 3, 1]], atol=1e-5, rtol=1e-4)


def test_the_frozen_baseline_has_the_right_shapes_and_is_deterministic(token_ids):
    train_ids = token_ids * 3
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] * 3, dtype=np.int8)
    predict = {"validation": token_ids[:2], "test": token_ids}
    first = baselines.frozen_encoder_logistic(MODEL, train_ids, targets, predict, batch_size=2)
    second = baselines.frozen_encoder_logistic(MODEL, train_ids, targets, predict, batch_size=2)
    assert set(first) == {"validation", "test"}
    assert first["validation"].shape == (2, 3) and first["test"].shape == (4, 3)
    assert ((first["test"] >= 0) & (first["test"] <= 1)).all()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    # It learned its train set: each positive scores above every negative of its label.
    probs = first["test"]
    for k in range(3):
        positives, negatives = probs[targets[:4, k] == 1, k], probs[targets[:4, k] == 0, k]
        assert positives.min() > negatives.max()


TRAINED = {"model_name": MODEL, "epochs": 4.0, "max_steps": -1, "pos_weight_strategy": "sqrt",
           "learning_rate": 1e-4, "seed": 42, "run_dir": "runs/x", "model_dir": "runs/x/m"}


def test_a_budget_recipe_cuts_the_epochs_and_nothing_else():
    full = baselines.budget_recipe(TRAINED)
    quarter = baselines.budget_recipe(TRAINED, 0.25)
    assert "run_dir" not in full and full["epochs"] == 4.0
    assert quarter == {**full, "epochs": 1.0}


def test_a_budget_recipe_cuts_max_steps_when_the_recipe_set_them():
    assert baselines.budget_recipe({**TRAINED, "max_steps": 10}, 0.25)["max_steps"] == 2
    assert baselines.budget_recipe({**TRAINED, "max_steps": 3}, 0.1)["max_steps"] == 1


def test_the_plain_recipe_differs_from_03s_only_in_the_loss_and_the_budget():
    full = baselines.budget_recipe(TRAINED)
    assert baselines.plain_bce_hyperparameters(TRAINED) == {**full, "pos_weight_strategy": "none"}
    assert baselines.plain_bce_hyperparameters(TRAINED, 0.5) == {
        **full, "pos_weight_strategy": "none", "epochs": 2.0}


@pytest.mark.parametrize("value", [0, -0.5, 1.5, True, "0.25", None])
def test_a_bad_budget_is_refused_with_its_name(value):
    with pytest.raises(ParameterError, match="parameter plain_budget="):
        baselines.check_budget("plain_budget", value)
