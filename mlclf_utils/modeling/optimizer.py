"""The optimizer's parameter groups: which parameters are the new head, which get no weight
decay, and how fast each encoder block learns. Kept apart from the Trainer subclass because the
tests, the freezing checks and the encoder's load report all ask these questions without a
Trainer."""

from __future__ import annotations


def head_parameter_names(model) -> set[str]:
    """Parameters outside the pretrained encoder (the new head), plus the encoder's pooler.

    Found through ``base_model`` rather than architecture names, so BERT's ``classifier`` and
    DistilBERT's ``pre_classifier``/``classifier`` are both covered. The pooler is included
    because sentence-embedding checkpoints (all-MiniLM) never trained it.
    """
    base = {id(p) for p in model.base_model.parameters()}
    pooler = getattr(model.base_model, "pooler", None)
    pooled = {id(p) for p in pooler.parameters()} if pooler is not None else set()
    return {name for name, p in model.named_parameters() if id(p) not in base or id(p) in pooled}


def encoder_depths(model) -> dict[int, int]:
    """How many blocks sit above each encoder parameter (id -> count): the top block's are 0,
    the embeddings' are the number of blocks. Parameters missing here (head, pooler) count as
    the top's."""
    from mlclf_utils.modeling.encoders import encoder_layers

    stack = encoder_layers(model)
    depths = {id(p): len(stack) - 1 - i for i, block in enumerate(stack) for p in block.parameters()}
    embeddings = getattr(model.base_model, "embeddings", None)
    if embeddings is None:
        embeddings = model.get_input_embeddings()
    depths.update({id(p): len(stack) for p in embeddings.parameters()})
    return depths


def optimizer_groups(model, *, learning_rate: float, head_learning_rate: float,
                     weight_decay: float, layer_lr_decay: float = 1.0) -> list[dict]:
    """AdamW groups: the head at its own rate, and no weight decay on biases and norms (decay
    there only pulls the layer's offset and scale towards zero, which nothing asks for).

    With ``layer_lr_decay`` d < 1, each block trains at d times the rate of the block above it
    and the embeddings at d**blocks (layer-wise rate decay): the lower layers hold the general
    features pretraining paid for, so a small dataset should move them least."""
    head = head_parameter_names(model)
    depths = encoder_depths(model) if layer_lr_decay != 1.0 else {}
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (name.endswith("bias") or "norm" in name.lower())
        depth = 0 if name in head else depths.get(id(param), 0)
        groups.setdefault((name in head, decay, depth), []).append(param)
    return [{"params": params,
             "lr": head_learning_rate if is_head else learning_rate * layer_lr_decay ** depth,
             "weight_decay": weight_decay if decay else 0.0}
            for (is_head, decay, depth), params in groups.items()]


def adamw_options(implementation: str) -> dict:
    """torch.optim.AdamW's keyword for one of ``hyperparameters.ADAMW_CHOICES``."""
    return {"fused": {"fused": True}, "foreach": {"foreach": True},
            "for_loop": {"foreach": False}}[implementation]
