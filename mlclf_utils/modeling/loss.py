"""Binary cross-entropy with logits, written out from its formula.

Multi-label classification asks one yes/no question per label, so the loss is a binary
cross-entropy per (example, label) on the raw scores (logits):

    l[n, c] = -w[n, c] * ( p[c] * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x)) )

Taking ``sigmoid`` first and ``log`` second (``naive_bce``) breaks in float32 as soon as
|x| passes about 17: ``sigmoid(x)`` rounds to exactly 1 and ``log(1 - 1)`` is ``-inf``. The
identities ``log sigmoid(x) = -softplus(-x)`` and ``log(1 - sigmoid(x)) = -softplus(x)``, with
softplus computed as a log-sum-exp, never exponentiate a large number, so ``bce_with_logits``
stays finite and exact. That function is the readable twin; training uses
``WeightedBCEWithLogits``, which calls PyTorch's fused kernel. The tests prove the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mlclf_utils.errors import ParameterError

REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- validation


def _describe(value) -> str:
    """A short stand-in for a tensor in an error message (its repr could be megabytes)."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    return type(value).__name__


def _like(name: str, value, logits: torch.Tensor) -> torch.Tensor:
    """Targets and weights follow the logits' dtype and device, whatever they arrived as."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ParameterError(name, _describe(value), f"cannot be read as a tensor ({exc})") from None
    if tensor.is_complex():
        raise ParameterError(name, _describe(value), "must be real-valued")
    return tensor.to(device=logits.device, dtype=logits.dtype)


def _span(tensor: torch.Tensor) -> str:
    finite = tensor[torch.isfinite(tensor)]
    if finite.numel() == 0:
        return "no finite values"
    extra = ", has nan/inf" if finite.numel() < tensor.numel() else ""
    return f"min {finite.min().item():g}, max {finite.max().item():g}{extra}"


def _checked(logits, targets, weight=None, pos_weight=None):
    """Validate once, in one place, so both twins reject exactly the same inputs."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ParameterError("logits", _describe(logits),
                             "must be a floating-point torch.Tensor (raw scores, before sigmoid)")
    if logits.ndim == 0:
        raise ParameterError("logits", _describe(logits),
                             "needs at least one dimension; the last one holds the labels (C)")
    shape = tuple(logits.shape)
    num_labels = shape[-1]

    targets = _like("targets", targets, logits)
    if tuple(targets.shape) != shape:
        # Broadcasting targets against logits would silently compare every example with the
        # wrong row, so the shapes must be equal, as PyTorch's own loss requires.
        raise ParameterError("targets", _describe(targets),
                             f"must have the logits' shape {shape}: one target per (example, label)")
    if not ((targets >= 0) & (targets <= 1)).all():  # the negation also catches nan
        raise ParameterError("targets", _span(targets),
                             "must lie in [0, 1] (0/1 multi-hot, or soft targets)")

    if weight is not None:
        weight = _like("weight", weight, logits)
        try:
            joint = tuple(torch.broadcast_shapes(tuple(weight.shape), shape))
        except RuntimeError:
            joint = None
        if joint != shape:
            raise ParameterError("weight", _describe(weight),
                                 f"must broadcast to the logits' shape {shape} without enlarging "
                                 f"it, e.g. ({num_labels},) per label or {shape} per element")
        if not (torch.isfinite(weight) & (weight >= 0)).all():
            raise ParameterError("weight", _span(weight), "must be finite and non-negative")

    if pos_weight is not None:
        pos_weight = _like("pos_weight", pos_weight, logits)
        if tuple(pos_weight.shape) != (num_labels,):
            raise ParameterError("pos_weight", _describe(pos_weight),
                                 f"must have shape ({num_labels},): one weight per label, in the "
                                 "logits' label order")
        if not (torch.isfinite(pos_weight) & (pos_weight >= 0)).all():
            raise ParameterError("pos_weight", _span(pos_weight), "must be finite and non-negative")
    return logits, targets, weight, pos_weight


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction) -> None:
    if reduction not in REDUCTIONS:
        raise ParameterError("reduction", reduction, f"must be one of {list(REDUCTIONS)}")


# --------------------------------------------------------------------------- the formula


def softplus(z: torch.Tensor) -> torch.Tensor:
    """log(1 + e^z) as the log-sum-exp log(e^0 + e^z) = max(0, z) + log1p(e^-|z|).

    The exponent is never positive, so nothing overflows. ``torch.logaddexp`` computes exactly
    that and, unlike the hand-written max/abs version, has the exact gradient sigmoid(z) at
    z = 0 too (autograd through ``abs`` and ``clamp`` would give 1 there instead of 1/2).
    """
    return torch.logaddexp(torch.zeros_like(z), z)


def bce_with_logits(logits, targets, *, weight=None, pos_weight=None, reduction="mean") -> torch.Tensor:
    """The loss from its formula, stable for any logit; the readable twin of PyTorch's kernel.

    ``weight`` broadcasts to the logits' shape ((C,) or (N, C)); ``pos_weight`` has shape (C,)
    and scales only the positive term, i.e. the push upwards on a label's positives.
    """
    _check_reduction(reduction)
    logits, targets, weight, pos_weight = _checked(logits, targets, weight, pos_weight)
    positive = targets * softplus(-logits)          # -y log sigmoid(x)
    if pos_weight is not None:
        positive = pos_weight * positive            # pos_weight (C,) broadcasts over examples
    negative = (1 - targets) * softplus(logits)     # -(1 - y) log(1 - sigmoid(x))
    loss = positive + negative
    if weight is not None:
        loss = weight * loss
    return _reduce(loss, reduction)


def naive_bce(logits, targets, *, pos_weight=None, reduction="none") -> torch.Tensor:
    """Sigmoid first, then log: the textbook form. Kept ONLY to show why not to use it.

    In float32 ``sigmoid(x)`` is exactly 1 for x > ~16.6 and exactly 0 for x < ~-88.7, so
    a log of 0 appears: ``inf`` where that term counts, and ``0 * -inf = nan`` where it does not.
    """
    _check_reduction(reduction)
    logits, targets, _, pos_weight = _checked(logits, targets, None, pos_weight)
    prob = torch.sigmoid(logits)
    scale = 1 if pos_weight is None else pos_weight
    loss = -(scale * targets * torch.log(prob) + (1 - targets) * torch.log(1 - prob))
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------- tables for pictures


def loss_curves(logits: torch.Tensor, pos_weights: Sequence[float]) -> pd.DataFrame:
    """Loss and d loss / d logit for a lone positive and a lone negative, per pos_weight.

    The gradient is what training feels: p_c multiplies it on positives (p_c * (sigmoid(x) - 1))
    and leaves negatives alone (sigmoid(x)), which the table makes plottable and testable.
    """
    x = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(logits)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    x = x.detach().flatten()
    if x.numel() == 0:
        raise ParameterError("logits", _describe(logits), "must hold at least one value")
    if isinstance(pos_weights, torch.Tensor | np.ndarray):
        pos_weights = pos_weights.tolist()
    weights = list(pos_weights) if isinstance(pos_weights, Sequence) else None
    if not weights:
        raise ParameterError("pos_weights", pos_weights, "must be a non-empty sequence of numbers")
    frames = []
    for p in weights:
        if not isinstance(p, int | float | np.number) or not np.isfinite(p) or p < 0:
            raise ParameterError("pos_weights", pos_weights,
                                 f"every value must be a finite number >= 0; got {p!r}")
        for target in (1, 0):
            point = x.clone().requires_grad_(True)
            loss = bce_with_logits(point[:, None], torch.full_like(point[:, None], float(target)),
                                   pos_weight=torch.tensor([float(p)]), reduction="none")[:, 0]
            # Each loss depends only on its own logit, so the gradient of the sum is per point.
            (grad,) = torch.autograd.grad(loss.sum(), point)
            frames.append(pd.DataFrame({
                "logit": point.detach().cpu().numpy().astype(float),
                "pos_weight": float(p),
                "target": target,
                "loss": loss.detach().cpu().numpy().astype(float),
                "grad": grad.cpu().numpy().astype(float),
            }))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- training


class WeightedBCEWithLogits(torch.nn.Module):
    """Mean BCE with logits and a per-label pos_weight, for the training loop.

    transformers' multi-label head uses plain BCE with no pos_weight, so the trainer calls this
    instead. pos_weight is a buffer: ``.to(device)`` moves it with the model and the state
    dict saves it. The fused PyTorch kernel is used for speed; ``bce_with_logits`` is the same
    loss written out, and the tests check they agree.
    """

    pos_weight: torch.Tensor | None

    def __init__(self, pos_weight=None) -> None:
        super().__init__()
        if pos_weight is not None:
            tensor = torch.as_tensor(pos_weight).detach().clone()
            if not tensor.is_floating_point():
                tensor = tensor.to(torch.float32)
            if tensor.ndim != 1 or tensor.numel() == 0:
                raise ParameterError("pos_weight", _describe(tensor),
                                     "must be one-dimensional with one weight per label")
            if not (torch.isfinite(tensor) & (tensor >= 0)).all():
                raise ParameterError("pos_weight", _span(tensor), "must be finite and non-negative")
            pos_weight = tensor
        self.register_buffer("pos_weight", pos_weight)

    @property
    def num_labels(self) -> int | None:
        return None if self.pos_weight is None else int(self.pos_weight.numel())

    def forward(self, logits, targets, weight=None) -> torch.Tensor:
        # The checks are a few comparisons on a (batch, C) tensor: noise next to a transformer's
        # forward pass, and they turn a silent wrong loss into an error naming the argument.
        logits, targets, weight, pos_weight = _checked(logits, targets, weight, self.pos_weight)
        return F.binary_cross_entropy_with_logits(logits, targets, weight=weight,
                                                  pos_weight=pos_weight, reduction="mean")

    def extra_repr(self) -> str:
        return "pos_weight=None" if self.pos_weight is None else f"num_labels={self.num_labels}"
