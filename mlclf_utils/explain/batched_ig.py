"""Integrated gradients for many (token ids, labels) jobs in few forward passes.

Captum's ``LayerIntegratedGradients`` explains one (input, target) per call, so a text asked
about three labels runs its interpolated inputs through the model three times. Here:

* all the labels asked of one text share one forward pass over its interpolated inputs; each
  label costs one more backward pass over the same graph (``retain_graph``), and a backward
  that skips the weight gradients is about the price of the forward;
* texts of similar length are packed into the same forward passes, each padded to the pack's
  longest with its pads masked out, so that the rows of a pass are full whatever the text's
  length; rows of different texts never meet (attention is masked, the pooling is per row).

Nothing else changes: the same attribution layer (its output is replaced by the interpolated
one, as Captum does with a hook), the same sigmoid target, the same baseline ids. With Captum's
Gauss-Legendre rule (``quadrature="gausslegendre"``) tests/model/test_attributions.py holds the
attributions and deltas equal to Captum's one-pair-at-a-time ones; the default rule is the
transplanted one (``mlclf_utils.explain.quadrature``), which needs fewer steps for the same
delta. benchmarks/explain_speed.py measures the gains. Jobs are token ids, not texts, so that
any token window can be explained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlclf_utils.explain.quadrature import nodes_and_weights

# Texts within this ratio of a pack's longest share its passes: at most ~15 % of a pass is pads.
PACK_LENGTH_RATIO = 0.85


@dataclass(frozen=True)
class Job:
    """One text's token ids, its baseline ids (same length) and the label indices to explain."""

    ids: tuple[int, ...]
    baseline_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass
class Attribution:
    """One (job, label): per-token attributions and the numbers of the completeness check."""

    token_attributions: np.ndarray
    probability: float
    baseline_probability: float
    delta: float


def pack_jobs(jobs: list[Job], ratio: float = PACK_LENGTH_RATIO) -> list[list[int]]:
    """Job positions grouped by length, longest first: a pack's texts are all at least ``ratio``
    times its longest, so padding them to it wastes little."""
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].ids))
    packs: list[list[int]] = []
    for i in order:
        if packs and len(jobs[i].ids) >= ratio * len(jobs[packs[-1][0]].ids):
            packs[-1].append(i)
        else:
            packs.append([i])
    return packs


def attribute(model, layer, jobs: list[Job], *, n_steps: int, rows_per_pass: int | None,
              max_length: int, pad_id: int, progress=None,
              quadrature: str = "transplanted") -> list[list[Attribution]]:
    """Every job's attributions, one list per job in the labels' order.

    ``rows_per_pass`` bounds the memory the way Captum's ``internal_batch_size`` does, counted
    in rows of ``max_length`` tokens: a pass holds ``rows_per_pass * max_length`` tokens, so
    short texts get more rows per pass. None: every row of a pack in one pass. ``progress`` is
    called with the number of jobs finished after each pack. ``quadrature`` names the rule
    (``mlclf_utils.explain.quadrature``).
    """
    rule = nodes_and_weights(quadrature, n_steps)
    out: list[list[Attribution] | None] = [None] * len(jobs)
    budget = None if rows_per_pass is None else rows_per_pass * max_length
    for pack in pack_jobs(jobs):
        results = _attribute_pack(model, layer, [jobs[i] for i in pack], rule, budget, pad_id)
        for i, result in zip(pack, results):
            out[i] = result
        if progress is not None:
            progress(len(pack))
    return out


def _padded(rows: list[tuple[int, ...]], width: int, pad_id: int, device):
    import torch

    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, :len(row)] = 1
    return ids, mask


def _probabilities(model, ids, mask):
    import torch

    return torch.sigmoid(model(input_ids=ids, attention_mask=mask).logits.float())


def _attribute_pack(model, layer, jobs: list[Job], rule: tuple[np.ndarray, np.ndarray],
                    budget: int | None, pad_id: int) -> list[list[Attribution]]:
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    width, n = max(len(job.ids) for job in jobs), len(jobs)
    ids, mask = _padded([job.ids for job in jobs], width, pad_id, device)
    base_ids, _ = _padded([job.baseline_ids for job in jobs], width, pad_id, device)
    with torch.no_grad():
        ends = _probabilities(model, torch.cat([ids, base_ids]), torch.cat([mask, mask]))
        inputs, baselines = layer(ids), layer(base_ids)
    nodes, weights = rule
    n_steps = len(nodes)
    dtype = inputs.dtype
    alphas = torch.tensor(nodes, dtype=dtype, device=device)
    step_weights = torch.tensor(weights, dtype=dtype, device=device)
    slots = max(len(job.labels) for job in jobs)
    # label index per (job, slot); -1 where a job asks fewer labels than the pack's most
    label_of = torch.full((n, slots), -1, dtype=torch.long)
    for j, job in enumerate(jobs):
        label_of[j, :len(job.labels)] = torch.tensor(job.labels, dtype=torch.long)
    # rows are (job, step) pairs, job-major; a pass takes a contiguous run of them
    total_rows = n * n_steps
    per_pass = total_rows if budget is None else max(1, budget // width)
    summed = torch.zeros((slots, n, width, inputs.shape[-1]), dtype=dtype, device=device)
    for start in range(0, total_rows, per_pass):
        rows = torch.arange(start, min(start + per_pass, total_rows), device=device)
        job_of, step_of = rows // n_steps, rows % n_steps
        a = alphas[step_of].view(-1, 1, 1)
        path = (baselines[job_of] + a * (inputs[job_of] - baselines[job_of])).requires_grad_(True)
        hook = layer.register_forward_hook(lambda module, args, output: path)
        try:
            probabilities = _probabilities(model, ids[job_of], mask[job_of])
        finally:
            hook.remove()
        for slot in range(slots):
            labels = label_of[job_of, slot]
            asked = labels >= 0
            if not bool(asked.any()):
                continue
            cotangent = torch.zeros_like(probabilities)
            cotangent[rows[asked] - start, labels[asked]] = 1.0
            (grad,) = torch.autograd.grad(probabilities, path, grad_outputs=cotangent,
                                          retain_graph=slot < slots - 1)
            weighted = grad * step_weights[step_of].view(-1, 1, 1)
            summed[slot].index_add_(0, job_of, weighted)
    attributions = (summed * (inputs - baselines)).sum(-1)  # (slot, job, token)
    out = []
    for j, job in enumerate(jobs):
        length, results = len(job.ids), []
        for slot, label in enumerate(job.labels):
            token_attr = attributions[slot, j, :length].detach().cpu().double().numpy()
            p, p0 = float(ends[j, label]), float(ends[n + j, label])
            # Captum's delta: the attributions' sum minus the change they explain
            delta = float(attributions[slot, j, :length].sum().double() - (p - p0))
            results.append(Attribution(token_attributions=token_attr, probability=p,
                                       baseline_probability=p0, delta=delta))
        out.append(results)
    return out
