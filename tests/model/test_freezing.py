"""``--freeze_layers``: the embeddings and the bottom blocks stay as pretrained, the rest trains."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import encoders, hyperparameters, optimizer, train

LABELS = ["audio", "video", "network"]
FAST = dict(model_name=encoders.TINY_MODEL, epochs=1, batch_size=16, eval_batch_size=64,
            learning_rate=1e-3, max_length=64, progress=False, logging_steps=5, bf16=False)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_minilm_with_two_frozen_layers_trains_only_above_them(pooling):
    """Real MiniLM, real fused AdamW over 03's optimizer groups, a few steps."""
    torch.manual_seed(0)
    model = encoders.load_classifier(encoders.DEFAULT_MODEL, LABELS, pooling=pooling)
    assert len(encoders.encoder_layers(model)) == 6
    encoders.freeze_bottom(model, 2, encoders.DEFAULT_MODEL)
    before = snapshot(model)
    groups = optimizer.optimizer_groups(model, learning_rate=1e-3, head_learning_rate=1e-2,
                                        weight_decay=0.01)
    handed = {id(p) for group in groups for p in group["params"]}
    assert handed == {id(p) for p in model.parameters() if p.requires_grad}
    adamw = torch.optim.AdamW(groups, **optimizer.adamw_options("fused"))
    seen = []  # whether block 1's output is still in the autograd graph
    encoders.encoder_layers(model)[1].register_forward_hook(
        lambda module, inputs, output: seen.append(
            (output[0] if isinstance(output, tuple) else output).requires_grad))
    tokenizer = encoders.load_tokenizer(encoders.DEFAULT_MODEL)
    batch = tokenizer(["a web server for sound", "a router proxy", "subtitles for movies",
                       "a music player"], padding=True, return_tensors="pt")
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=torch.float32)
    model.train()
    for _ in range(3):
        adamw.zero_grad()
        logits = model(**batch).logits
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
        adamw.step()
    assert seen == [False] * 3  # backward stops above block 1
    moved = changed(before, snapshot(model))
    base = model.base_model_prefix
    frozen = {name for name in before if name.startswith((f"{base}.embeddings.",
                                                          f"{base}.encoder.layer.0.",
                                                          f"{base}.encoder.layer.1."))}
    assert frozen and not (moved & frozen)
    assert {name for name, p in model.named_parameters() if not p.requires_grad} == frozen
    for block in range(2, 6):
        assert f"{base}.encoder.layer.{block}.attention.self.query.weight" in moved
    assert "classifier.weight" in moved
    if pooling == "cls":
        assert f"{base}.pooler.dense.weight" in moved  # the pooler always trains


@pytest.mark.parametrize("layers", [6, 7, -1])
def test_freezing_every_layer_or_a_negative_count_is_refused(layers):
    model = encoders.load_classifier(encoders.DEFAULT_MODEL, LABELS)
    with pytest.raises(ParameterError, match="freeze_layers=" + str(layers)):
        encoders.freeze_bottom(model, layers, encoders.DEFAULT_MODEL)
    assert all(p.requires_grad for p in model.parameters())  # refused before freezing any
    with pytest.raises(ParameterError, match="freeze_layers=" + str(layers)):
        hyperparameters.check_hyperparameters({"model_name": encoders.DEFAULT_MODEL,
                                               "max_length": 64, "freeze_layers": layers})


def test_the_refusal_names_the_models_layer_count():
    model = encoders.load_classifier(encoders.TINY_MODEL, LABELS, pooling="mean")
    with pytest.raises(ParameterError, match=r"freeze_layers=2: .* has 2 encoder layers"):
        encoders.freeze_bottom(model, 2, encoders.TINY_MODEL)
    with pytest.raises(ParameterError, match=r"freeze_layers=6: .* has 6 encoder layers"):
        hyperparameters.check_hyperparameters({"model_name": encoders.DEFAULT_MODEL,
                                               "max_length": 64, "freeze_layers": 6})


@pytest.mark.slow
def test_a_run_refuses_all_layers_before_training(smoke_run):
    with pytest.raises(ParameterError, match=r"freeze_layers=2: .* has 2 encoder layers"):
        train.run_training(**FAST, run_dir=str(smoke_run), max_steps=2, freeze_layers=2)
    assert not (smoke_run / "03_train" / "model").exists()
    assert not (smoke_run / "03_train" / "checkpoints").exists()


def encoder_part(weights: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors under the plain encoder's names (the head left out)."""
    return {name[len(prefix):]: value for name, value in weights.items()
            if name.startswith(prefix)}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [
    dict(pooling="cls", head_init="random"),
    dict(pooling="mean", head_init="probe", head_learning_rate=None),
])
def test_a_run_with_frozen_layers_keeps_them_as_pretrained(smoke_run, tiny_model_dir, recipe):
    """The real trainer (fused AdamW, plain and LP-FT): what it saves has the tiny encoder's
    embeddings and bottom block bit for bit, and a trained top block."""
    metrics = train.run_training(**FAST, run_dir=str(smoke_run), max_steps=3, adamw="fused",
                                 freeze_layers=1, **recipe)
    assert metrics["global_step"] == 3
    model_dir = smoke_run / "03_train" / "model"
    prefix = "distilbert." if recipe["pooling"] == "cls" else "backbone."
    before = load_file(f"{tiny_model_dir}/model.safetensors")
    after = encoder_part(load_file(str(model_dir / "model.safetensors")), prefix)
    assert set(after) == set(before)
    moved = changed(before, after)
    assert not {name for name in moved if name.startswith(("embeddings.", "transformer.layer.0."))}
    assert "transformer.layer.1.attention.q_lin.weight" in moved
    assert "transformer.layer.1.ffn.lin2.weight" in moved
    saved = json.loads((model_dir / "hyperparameters.json").read_text())
    assert (saved["freeze_layers"], saved["pooling"]) == (1, recipe["pooling"])
    assert hyperparameters.recipe(saved)["freeze_layers"] == 1  # 04's and 05's retrains keep it
