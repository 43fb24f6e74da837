"""Numbers for 03's walkthrough of BCE with logits: every claim it makes, measured.

A class believes a claim about a loss when it sees the claim on numbers. This module computes
those numbers in seconds on a run's own data (TF-IDF features and linear models trained with
the very loss that fine-tuning uses), so that 03 can print them instead of asserting them:
where float32 breaks, what p_c < 1 and very large p_c do, what sample weights mean, why the
mean reduction is the default, and how a weight p_c moves the 0.5 threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mlclf_utils.artifacts import read_json
from mlclf_utils.errors import ParameterError
from mlclf_utils.figures import pyplot, save_figure
from mlclf_utils.modeling.loss import bce_with_logits, naive_bce
from mlclf_utils.teaching.weight_probe import binary_scores

# Hugging Face's Trainer clips the gradient norm to this before every step (TrainingArguments).
TRAINER_MAX_GRAD_NORM = 1.0
BENCHMARK_QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "quality.json"


# --------------------------------------------------------------------------- the odds shift


def implied_threshold(pos_weight):
    """The unweighted probability that a p_c-weighted model reads as 0.5: 1 / (1 + p_c)."""
    return 1.0 / (1.0 + np.asarray(pos_weight, dtype=float))


def weighted_minimiser(q, pos_weight):
    """The probability s that minimises the expected weighted loss when P(y=1) = q.

    -[p q log s + (1 - q) log(1 - s)] has derivative -p q / s + (1 - q) / (1 - s), zero at
    s / (1 - s) = p q / (1 - q): the odds are multiplied by p.
    """
    q = np.asarray(q, dtype=float)
    p = np.asarray(pos_weight, dtype=float)
    return p * q / (p * q + 1 - q)


# --------------------------------------------------------------------------- float32


def sigmoid_cliff(dtype=torch.float32) -> float:
    """The smallest x > 0 for which torch.sigmoid(x) is exactly 1 in ``dtype``."""
    lo, hi = torch.tensor(0.0, dtype=dtype), torch.tensor(200.0, dtype=dtype)
    while True:
        mid = ((lo + hi) / 2).to(dtype)
        if mid in (lo, hi):  # no representable number left between them
            return float(hi)
        if torch.sigmoid(mid) == 1:
            hi = mid
        else:
            lo = mid


def float32_table(xs: Sequence[float] = (5, 10, 15, 16, 16.5, 16.6, 16.63, 16.64, 17, 20, 50),
                  target: float = 0.0) -> pd.DataFrame:
    """The loss of one entry at each logit: naive, stable, PyTorch's kernel, and the exact value.

    With target 0 the loss is -log(1 - sigmoid(x)), which the naive form computes from a
    sigmoid that float32 rounds to 1 beyond the cliff.
    """
    x = torch.tensor(list(xs), dtype=torch.float32)
    y = torch.full_like(x, float(target))
    sig = torch.sigmoid(x)
    exact = bce_with_logits(x.double(), y.double(), reduction="none")
    naive = naive_bce(x, y)
    table = pd.DataFrame({
        "x": x.numpy().astype(float),
        "sigmoid(x) == 1": (sig == 1).numpy(),
        "1 - sigmoid(x)": (1 - sig).numpy().astype(float),
        "naive": naive.numpy().astype(float),
        "stable (softplus)": bce_with_logits(x, y, reduction="none").numpy().astype(float),
        "PyTorch kernel": F.binary_cross_entropy_with_logits(x, y, reduction="none").numpy().astype(float),
        "exact (float64)": exact.numpy(),
    })
    with np.errstate(invalid="ignore"):
        table["naive rel. error"] = (table["naive"] - table["exact (float64)"]).abs() / table["exact (float64)"]
    return table


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeData:
    """TF-IDF features and multi-hot targets of train and validation, computed once."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    labels: list[str]

    def column(self, label: str) -> int:
        if label not in self.labels:
            raise ParameterError("label", label, f"is not one of the {len(self.labels)} labels")
        return self.labels.index(label)


def probe_data(train_split, validation_split, labels: Sequence[str]) -> ProbeData:
    from mlclf_utils.teaching.weight_probe import tfidf_features

    x_train, x_val = tfidf_features(list(train_split["text"]), list(validation_split["text"]))
    as_targets = lambda split: torch.tensor(np.asarray(split["labels"], dtype=np.float32))  # noqa: E731
    return ProbeData(x_train, as_targets(train_split), x_val, as_targets(validation_split), list(labels))


def fit_linear(features: torch.Tensor, targets: torch.Tensor, pos_weight=None, *, steps: int = 300,
               lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0) -> torch.nn.Linear:
    """Full-batch multi-output logistic regression with the (weighted) BCE-with-logits loss."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(features.shape[1], targets.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
    for _ in range(steps):
        optimizer.zero_grad()
        bce_with_logits(model(features), targets, pos_weight=weight).backward()
        optimizer.step()
    return model


def _logits(model: torch.nn.Linear, features: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(features).numpy().astype(float)


def pos_weight_sweep(data: ProbeData, label: str, pos_weights: Sequence[float], *,
                     steps: int = 300) -> pd.DataFrame:
    """One label, one probe per p_c: precision, recall and mean probability on validation at 0.5."""
    c = data.column(label)
    truth = data.y_val[:, c].numpy() > 0.5
    rows = []
    for p in pos_weights:
        model = fit_linear(data.x_train, data.y_train[:, c:c + 1], [float(p)], steps=steps)
        probs = 1 / (1 + np.exp(-_logits(model, data.x_val)[:, 0]))
        rows.append({"pos_weight": float(p), "reads_unweighted_at": float(implied_threshold(p)),
                     **binary_scores(probs >= 0.5, truth), "mean_prob": float(probs.mean())})
    table = pd.DataFrame(rows)
    table.attrs.update(label=label, validation_positives=int(truth.sum()),
                       validation_share=float(truth.mean()))
    return table


def floor_table(shares: Sequence[float] = (0.5, 0.75, 0.9, 0.95, 0.99), floor: float = 0.5) -> pd.DataFrame:
    """For a label on a share f of the texts (ratio r = (1 - f) / f < 1): each strategy's weight,
    the threshold it implies, and the same after the floor."""
    from mlclf_utils.modeling.class_weights import damped_weight

    f = np.asarray(shares, dtype=float)
    r = (1 - f) / f
    table = pd.DataFrame({"share_of_texts": f, "ratio": r, "sqrt": np.sqrt(r),
                          "damped": damped_weight(r)})
    table["reads_at (ratio)"] = implied_threshold(table["ratio"])
    table["reads_at (sqrt)"] = implied_threshold(table["sqrt"])
    table[f"weight with floor {floor:g}"] = np.maximum(table["sqrt"], floor)
    table[f"reads_at (floor {floor:g})"] = implied_threshold(table[f"weight with floor {floor:g}"])
    return table


def strategy_weights(data: ProbeData, strategies: Sequence[str] = ("ratio", "sqrt", "damped"), *,
                     floor: float | None = 0.5, rarest: int = 3) -> pd.DataFrame:
    """This run's weights for its rarest labels and its median label, per strategy, with the
    probability each weight makes the model read as 0.5 (``implied_threshold``)."""
    from mlclf_utils.modeling.class_weights import compute_pos_weight

    tables = {s: compute_pos_weight(data.y_train.numpy(), data.labels, strategy=s, floor=floor)
              for s in strategies}
    order = tables[strategies[0]].sort_values("positives", kind="stable")
    shown = list(order.index[:rarest]) + [order.index[len(order) // 2]]
    table = order.loc[shown, ["positives", "ratio"]].copy()
    for s in strategies:
        table[f"p ({s})"] = tables[s].loc[shown, "weight"]
        table[f"reads_at ({s})"] = implied_threshold(table[f"p ({s})"])
    table.index = [f"{label} (rarest)" if i < rarest else f"{label} (median)"
                   for i, label in enumerate(shown)]
    return table


def sweep_evidence(run_dir) -> tuple[pd.DataFrame | None, str]:
    """The newest sweep on this run's data, else the committed benchmark's sweep, and which."""
    from mlclf_utils.runner import sweep

    columns = ["pos_weight_strategy", "validation_macro_f1", "test_macro_f1", "test_macro_f1_at_0.5"]
    found = sweep.find_sweep(run_dir)
    table, info = sweep.load(found) if found is not None else (None, {})
    if table is not None and "pos_weight_strategy" in table.columns:  # a sweep over strategies
        shown = sweep.summary(table)
        return shown[[c for c in columns if c in shown.columns]], \
            f"sweep {info.get('sweep_id', found.name)} on this run's data ({found})"
    if not BENCHMARK_QUALITY.exists():
        return None, ("no sweep on this run's data, and no committed benchmark to fall back on: "
                      "run the sweep command of section 4")
    result = read_json(BENCHMARK_QUALITY, what="the committed quality benchmark")
    name = next(k for k in result["tables"] if k.startswith("Class-weight sweep"))
    table = pd.DataFrame(result["tables"][name]).set_index("combination")
    machine = result.get("machine", {})
    return table[[c for c in columns if c in table.columns]], (
        "no sweep on this run's data yet; these are the committed benchmark's numbers "
        f"(docs/benchmarks.md, from `{result['command']}`: demo run {result['run']}, sweep "
        f"{result['sweep']}, {machine.get('cpus', '?')} CPUs), not this run's")


# --------------------------------------------------------------------------- sample weights


def sample_weight_demo(logits: torch.Tensor, targets: torch.Tensor) -> pd.DataFrame:
    """w_{n,c} on numbers: a weight of 2 is a duplicated row, a weight of 0 removes an entry."""
    n = logits.shape[0]
    twice = torch.cat([logits, logits[:1]]), torch.cat([targets, targets[:1]])
    w = torch.ones_like(logits)
    w[0] = 2
    rows = [
        {"case": "sum: row 0 twice in the batch  vs  w = 2 on row 0",
         "a": bce_with_logits(*twice, reduction="sum").item(),
         "b": bce_with_logits(logits, targets, weight=w, reduction="sum").item()},
        {"case": "mean: row 0 twice  vs  sum(w l) / sum(w)",
         "a": bce_with_logits(*twice, reduction="mean").item(),
         "b": (bce_with_logits(logits, targets, weight=w, reduction="sum") / w.sum()).item()},
        {"case": "mean: row 0 twice  vs  reduction='mean' with w (divides by N*K, not sum(w))",
         "a": bce_with_logits(*twice, reduction="mean").item(),
         "b": bce_with_logits(logits, targets, weight=w, reduction="mean").item()},
    ]
    masked = torch.ones_like(logits)
    masked[0, 0] = 0
    x = logits.clone().requires_grad_(True)
    bce_with_logits(x, targets, weight=masked, reduction="sum").backward()
    rows.append({"case": "gradient on entry (0, 0) with w = 0 there  vs  0",
                 "a": x.grad[0, 0].item(), "b": 0.0})
    table = pd.DataFrame(rows)
    table["equal"] = np.isclose(table["a"], table["b"], rtol=1e-6, atol=1e-7)
    table.attrs.update(rows=n)
    return table


# --------------------------------------------------------------------------- reductions


def gradient_norms(features: torch.Tensor, targets: torch.Tensor,
                   batch_sizes: Sequence[int] | None = None, *, repeats: int = 5,
                   seed: int = 0) -> pd.DataFrame:
    """Gradient norm of a fresh linear head on random batches, with reduction mean and sum.

    ``batch_sizes`` defaults to the powers of two from 8 to 256 that the rows allow.
    """
    if batch_sizes is None:
        batch_sizes = [2 ** k for k in range(3, 9) if 2 ** k <= features.shape[0]] or [features.shape[0]]
    if max(batch_sizes) > features.shape[0]:
        raise ParameterError("batch_sizes", max(batch_sizes), f"exceeds the {features.shape[0]} rows")
    torch.manual_seed(seed)
    model = torch.nn.Linear(features.shape[1], targets.shape[1])
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for size in batch_sizes:
        norms = {"mean": [], "sum": []}
        for _ in range(repeats):
            index = torch.randperm(features.shape[0], generator=generator)[:size]
            for reduction in norms:
                model.zero_grad()
                bce_with_logits(model(features[index]), targets[index], reduction=reduction).backward()
                grad = torch.cat([p.grad.flatten() for p in model.parameters()])
                norms[reduction].append(grad.norm().item())
        rows.append({"batch_size": size, "entries (N*K)": size * targets.shape[1],
                     "grad_norm_mean": float(np.mean(norms["mean"])),
                     "grad_norm_sum": float(np.mean(norms["sum"]))})
    table = pd.DataFrame(rows)
    table["sum / mean"] = table["grad_norm_sum"] / table["grad_norm_mean"]
    table[f"sum clipped at {TRAINER_MAX_GRAD_NORM:g}"] = table["grad_norm_sum"] > TRAINER_MAX_GRAD_NORM
    # The learning rate that would give the sum reduction the step that 1e-4 gives the mean.
    table["lr for sum = 1e-4 for mean"] = 1e-4 * table["grad_norm_mean"] / table["grad_norm_sum"]
    return table


def plot_gradient_norms(table: pd.DataFrame, path=None):
    plt, _ = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(table["batch_size"], table["grad_norm_sum"], marker="s", label='reduction="sum"')
    ax.plot(table["batch_size"], table["grad_norm_mean"], marker="o", label='reduction="mean"')
    ax.axhline(TRAINER_MAX_GRAD_NORM, color="grey", linestyle=":", linewidth=1,
               label=f"Trainer's max_grad_norm = {TRAINER_MAX_GRAD_NORM:g}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="batch size N (log scale)", ylabel="gradient norm (log scale)",
           title="The sum grows with the batch; the mean does not")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the link to 04


def odds_shift_check(data: ProbeData, label: str, pos_weights: Sequence[float] = (0.25, 4.0), *,
                     steps: int = 300) -> pd.DataFrame:
    """An unweighted and a weighted probe of one label, compared on validation.

    If the weighted probe's odds are p times the unweighted one's, its logits are shifted by
    log p, its 0.5 picks what the unweighted one picks at 1/(1+p), and its mean probability
    drifts away from the label's share of the texts (calibration).
    """
    c = data.column(label)
    target = data.y_train[:, c:c + 1]
    plain = _logits(fit_linear(data.x_train, target, [1.0], steps=steps), data.x_val)[:, 0]
    plain_prob = 1 / (1 + np.exp(-plain))
    rows = []
    for p in pos_weights:
        weighted = _logits(fit_linear(data.x_train, target, [float(p)], steps=steps), data.x_val)[:, 0]
        weighted_prob = 1 / (1 + np.exp(-weighted))
        rows.append({
            "pos_weight": float(p),
            "log p": math.log(p),
            "median logit shift": float(np.median(weighted - plain)),
            "weighted >= 0.5": int((weighted_prob >= 0.5).sum()),
            "unweighted >= 1/(1+p)": int((plain_prob >= implied_threshold(p)).sum()),
            "same decision": float(((weighted_prob >= 0.5) == (plain_prob >= implied_threshold(p))).mean()),
            "mean prob, weighted": float(weighted_prob.mean()),
            "mean of p-shifted unweighted": float(weighted_minimiser(plain_prob, p).mean()),
            "mean prob, unweighted": float(plain_prob.mean()),
            "share of texts with the label": float(data.y_val[:, c].mean()),
        })
    return pd.DataFrame(rows)


def binned_odds_check(data: ProbeData, label: str, pos_weight: float, *, bins: int = 8,
                      steps: int = 1500) -> pd.DataFrame:
    """The odds shift where it is exact: texts grouped into bins that a model cannot tell apart.

    The texts of train are binned by an unweighted probe's score; a model with one free logit
    per bin is trained with the p-weighted loss. Its probability in each bin should be the
    minimiser p q / (p q + 1 - q), q being the bin's share of positives.
    """
    c = data.column(label)
    target = data.y_train[:, c:c + 1]
    score = _logits(fit_linear(data.x_train, target, [1.0]), data.x_train)[:, 0]
    edges = np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1])
    # Tied scores can leave a bin empty; numbering the bins that hold texts keeps every text.
    _, inverse = np.unique(np.searchsorted(edges, score), return_inverse=True)
    group = torch.tensor(inverse.reshape(-1))
    bins = int(group.max()) + 1
    logit = torch.zeros(bins, requires_grad=True)
    optimizer = torch.optim.Adam([logit], lr=0.1)
    weight = torch.tensor([float(pos_weight)])
    for _ in range(steps):
        optimizer.zero_grad()
        bce_with_logits(logit[group][:, None], target, pos_weight=weight).backward()
        optimizer.step()
    y = target[:, 0].numpy()
    q = np.array([y[group.numpy() == b].mean() for b in range(bins)])
    table = pd.DataFrame({
        "bin": range(bins), "texts": np.bincount(group.numpy(), minlength=bins),
        "q (share positive)": q,
        "trained prob (weighted)": torch.sigmoid(logit).detach().numpy().astype(float),
        "p q / (p q + 1 - q)": weighted_minimiser(q, pos_weight),
    })
    table["abs diff"] = (table["trained prob (weighted)"] - table["p q / (p q + 1 - q)"]).abs()
    table["says yes at 0.5"] = table["trained prob (weighted)"] >= 0.5
    table["q >= 1/(1+p)"] = table["q (share positive)"] >= implied_threshold(pos_weight)
    table.attrs.update(label=label, pos_weight=float(pos_weight))
    return table
