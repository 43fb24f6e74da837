"""``--attention_dropout``: it reaches the dropout that acts on attention probabilities, in
every block, for BERT (MiniLM) and DistilBERT alike, and a run records it for its retrains."""

import json

import pytest
import torch

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import encoders, hyperparameters, train

LABELS = ["audio", "video", "network"]


def other_dropouts_off(model, attention_modules: set[int]) -> None:
    """Every dropout but the attention probabilities' at 0, so only that one can vary."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and id(module) not in attention_modules:
            module.p = 0.0


def attention_dropouts(model) -> set[int]:
    return {id(m.dropout) for m in model.modules()
            if hasattr(m, "dropout") and ({"query", "key"} <= {n for n, _ in m.named_children()}
                                          or {"q_lin", "k_lin"} <= {n for n, _ in m.named_children()})}


def two_training_passes(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(["a web server for sound files", "a proxy for a router"], padding=True,
                      return_tensors="pt")
    model.train()
    torch.manual_seed(0)
    first = model(**batch).logits
    second = model(**batch).logits
    return first, second


@pytest.mark.parametrize("model_name, pooling, field", [
    (encoders.DEFAULT_MODEL, "mean", "attention_probs_dropout_prob"),
    (encoders.DEFAULT_MODEL, "cls", "attention_probs_dropout_prob"),
    (encoders.TINY_MODEL, "mean", "attention_dropout"),
])
def test_it_sets_every_blocks_attention_dropout_and_nothing_else(model_name, pooling, field):
    model = encoders.load_classifier(model_name, LABELS, pooling=pooling)
    tokenizer = encoders.load_tokenizer(model_name)
    found = attention_dropouts(model)
    other_dropouts_off(model, found)
    first, second = two_training_passes(model, tokenizer)
    assert not torch.allclose(first, second)  # the model's own attention dropout acts
    assert encoders.set_attention_dropout(model, 0.0) == len(encoders.encoder_layers(model))
    first, second = two_training_passes(model, tokenizer)
    assert torch.equal(first, second)  # and it was the only randomness left
    assert getattr(model.base_model.config, field) == 0.0
    if pooling == "mean":  # what save_pretrained writes for the mean-pooling head
        assert model.config.encoder[field] == 0.0
    hidden = [m.p for m in model.modules()
              if isinstance(m, torch.nn.Dropout) and id(m) not in found]
    assert hidden and set(hidden) == {0.0}  # untouched: still what other_dropouts_off set


def test_a_fresh_model_keeps_its_hidden_dropout():
    model = encoders.load_classifier(encoders.DEFAULT_MODEL, LABELS, pooling="mean")
    found = attention_dropouts(model)
    encoders.set_attention_dropout(model, 0.0)
    hidden = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and id(m) not in found}
    assert hidden == {0.1}


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_a_probability_outside_0_1_is_refused_by_name(value):
    with pytest.raises(ParameterError, match="attention_dropout"):
        hyperparameters.check_hyperparameters({"attention_dropout": value})


@pytest.mark.slow
def test_a_run_records_it_so_that_04_and_05_retrain_with_it(smoke_run):
    train.run_training(model_name=encoders.TINY_MODEL, run_dir=str(smoke_run), epochs=1,
                       batch_size=16, max_steps=2, max_length=64, progress=False, bf16=False,
                       attention_dropout=0.0, layer_lr_decay=0.9)
    model_dir = smoke_run / "03_train" / "model"
    saved = json.loads((model_dir / "hyperparameters.json").read_text())
    assert (saved["attention_dropout"], saved["layer_lr_decay"]) == (0.0, 0.9)
    recipe = hyperparameters.recipe(saved)
    assert (recipe["attention_dropout"], recipe["layer_lr_decay"]) == (0.0, 0.9)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["encoder"]["attention_dropout"] == 0.0
