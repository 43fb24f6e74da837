"""A sequence classifier that mean-pools the encoder's tokens, and LP-FT's linear probe.

Why a class of our own: ``AutoModelForSequenceClassification`` feeds BERT's [CLS] token through
its pooler, a dense layer that sentence-embedding checkpoints such as all-MiniLM-L6-v2 never
trained (they were trained on the mean of the token vectors). ``MeanPoolingClassifier`` wraps
any ``AutoModel`` encoder (BERT, DistilBERT, ...), averages its last hidden states over the
attention mask and puts one linear layer on top.

Why a ``PreTrainedModel`` with its own ``model_type``: it is registered with the Auto classes
when this module is imported, so ``save_pretrained`` writes safetensors and
``AutoModelForSequenceClassification.from_pretrained`` loads it back with no
``trust_remote_code`` (no Python shipped inside a model folder). Whatever loads a model folder
or a bundle (``serving.predict``, ``explain.attributions``) imports this module first.

Why it imports nothing else from mlclf_utils: the SageMaker export copies it into the
container (``serving.hosting.INFERENCE_MODULES``), where only the copied modules exist.

LP-FT (linear probe, then fine-tune): :func:`probe_head` fits the fresh head on frozen
mean-pooled train features before the whole model trains, so the first fine-tuning steps
push the encoder with a useful head rather than a random one (Kumar et al., 2022).
``--head_init probe`` in ``modeling.hyperparameters`` turns it on.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification,
                          PreTrainedConfig, PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "mlclf-mean-pooling"


class MeanPoolingConfig(PreTrainedConfig):
    """The classifier's config. ``encoder`` is the wrapped encoder's config as a dict (it
    carries its own ``model_type``), so one config.json describes the whole model."""

    model_type = MODEL_TYPE

    def __init__(self, encoder: dict | None = None, classifier_dropout: float = 0.1, **kwargs):
        self.encoder = dict(encoder or {})
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def encoder_config(self):
        """The wrapped encoder's own config object (BertConfig, DistilBertConfig, ...)."""
        values = dict(self.encoder)
        return AutoConfig.for_model(values.pop("model_type"), **values)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of the real (unmasked) token vectors, in float32 even under autocast:
    padding must not move a text's embedding, or batching would change its prediction."""
    mask = attention_mask.unsqueeze(-1).float()
    return (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPoolingClassifier(PreTrainedModel):
    """Encoder -> masked mean of the last hidden states -> dropout -> one linear layer.

    ``base_model`` is the encoder (``backbone``), so the trainer's head learning rate
    (``optimizer.head_parameter_names``) finds the new ``classifier`` without naming it.
    """

    config_class = MeanPoolingConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: MeanPoolingConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.encoder_config())
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # unused by mean pooling (and never trained)
        self.dropout = torch.nn.Dropout(config.classifier_dropout)
        self.classifier = torch.nn.Linear(self.backbone.config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        # transformers' hook: the encoder's own rule (its initializer_range, its buffers).
        self.backbone._init_weights(module)

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.backbone.set_input_embeddings(value)

    def embed(self, input_ids=None, attention_mask=None, **kwargs) -> torch.Tensor:
        """Mean-pooled sentence embeddings (N, hidden), float32: what the probe is fitted on."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return mean_pool(outputs.last_hidden_state, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None,
                token_type_ids=None, **kwargs):
        """Logits; ``inputs_embeds`` too, because integrated gradients attribute to the
        embeddings. The loss (plain BCE) is only a fallback: 03's Trainer computes its own
        weighted loss from the logits."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if inputs_embeds is not None:
            if attention_mask is None:
                attention_mask = torch.ones(inputs_embeds.shape[:2], device=inputs_embeds.device)
            hidden = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   **extra).last_hidden_state
            pooled = mean_pool(hidden, attention_mask)
        else:
            pooled = self.embed(input_ids, attention_mask, **extra)
        # A plain head may be bf16 while pooling is float32. ``quantize=True`` swaps in a
        # dynamic int8 Linear, whose ``weight`` is a method and which wants float32 anyway.
        weight = getattr(self.classifier, "weight", None)
        pooled = self.dropout(pooled)
        if isinstance(weight, torch.Tensor):
            pooled = pooled.to(weight.dtype)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(),
                                                                        labels.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def from_encoder(cls, path: str, **config_kwargs) -> "MeanPoolingClassifier":
        """A fresh head on a pretrained encoder folder (e.g. the packaged all-MiniLM-L6-v2).

        The encoder's weights are copied in strictly (apart from its unused pooler), so a
        checkpoint that does not fit fails here instead of training from random weights.
        The encoder's special token ids are copied to the top-level config too: the Trainer
        compares them with the tokenizer's and, finding none, "aligns" them with a warning."""
        encoder = AutoModel.from_pretrained(path)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(encoder.config, name, None) is not None:
                config_kwargs.setdefault(name, getattr(encoder.config, name))
        model = cls(MeanPoolingConfig(encoder=encoder.config.to_dict(), **config_kwargs))
        state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"encoder weights did not fit {cls.__name__}: missing {missing}, "
                               f"unexpected {unexpected}")
        return model


AutoConfig.register(MODEL_TYPE, MeanPoolingConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolingConfig, MeanPoolingClassifier,
                                            exist_ok=True)


@torch.inference_mode()
def embed_dataset(model: MeanPoolingClassifier, dataset, collator, *, batch_size: int = 64,
                  bf16: bool = False) -> np.ndarray:
    """Mean-pooled embeddings of a tokenized dataset, in the dataset's order (batched by
    length, so little padding is computed): the frozen features LP-FT fits the head on."""
    was_training = model.training
    model.eval()
    masks, ids = dataset["attention_mask"], dataset["input_ids"]
    order = np.argsort([sum(m) for m in masks], kind="stable")
    out = np.zeros((len(dataset), model.classifier.in_features), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collator([{"input_ids": ids[i], "attention_mask": masks[i]} for i in rows])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out[rows] = model.embed(batch["input_ids"], batch["attention_mask"]).numpy()
    model.train(was_training)
    return out


def fit_head(model: MeanPoolingClassifier, features: np.ndarray, targets: np.ndarray,
             pos_weight: torch.Tensor, *, epochs: int = 300, lr: float = 1e-2,
             weight_decay: float = 1e-4, seed: int = 0) -> float:
    """The linear probe: fit a head on frozen features, full batch with Adam, under the
    training loss (BCE with the same per-class pos_weight), and copy it into ``model``.

    Seeded on its own generator, so the probe is the same whatever ran before; returns the
    final loss."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    weight = torch.as_tensor(pos_weight, dtype=torch.float32)
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        head.weight.normal_(0.0, 0.02, generator=generator)
        head.bias.zero_()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), y, pos_weight=weight)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight)
        model.classifier.bias.copy_(head.bias)
    return float(loss.detach())


def probe_head(model: MeanPoolingClassifier, train_ds, collator, pos_weight: torch.Tensor, *,
               seed: int, bf16: bool = False) -> float:
    """LP-FT's first step on 03's train split: embed it with the frozen encoder, then
    :func:`fit_head` on its ``labels``; returns the probe's final loss."""
    features = embed_dataset(model, train_ds, collator, bf16=bf16)
    targets = np.asarray(train_ds["labels"], dtype=np.float32)
    return fit_head(model, features, targets, pos_weight, seed=seed)
