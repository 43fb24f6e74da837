# %% [markdown]
# # 03 · Train: BCE with logits, class weights, and fine-tuning
#
# Multi-label classification with $K$ labels is $K$ yes/no questions asked of the same text. The
# model produces one **logit** $x_c$ per label; $\sigma(x_c) = 1/(1+e^{-x_c})$ is the probability that
# label $c$ applies. Nothing forces the $K$ probabilities to sum to one, which is why multi-label models
# use a **sigmoid per label**, never a softmax across labels.
#
# This notebook first takes the loss apart (sections 1–3), then derives per-class weights from the
# training split (section 4) and fine-tunes the encoder (section 5), locally, under `torchrun`, or as a
# SageMaker job. Every claim of sections 1–4 is shown on numbers that the cells compute, most of them
# on this run's own data with TF-IDF features and linear models trained with the same loss; README,
# "Teaching notes", says how long those sections take to run. A batch run or a sweep that only wants
# the model sets `teaching = False`: the walkthrough's cells then do nothing, and sections 4–6
# (weights, fine-tuning, curves) run unchanged, since they use nothing the walkthrough made.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these; the defaults are the real demo run).
run_dir = None                      # type: str|None  None: the run your 01 started by hand (papermill: the latest); a new one if 03 ran there
# model_name and max_length are 01's choice: train.py reads them from 01's preprocess_config.json
mode = "local"                      # type: str  "local" or "sagemaker"
epochs = 3                          # type: int  passes over the train split
learning_rate = 2e-4                # type: float  the encoder's learning rate
head_learning_rate = None           # type: float|None  None: the encoder's rate (the linear probe fitted the head); about 3e-3 for a random head
batch_size = 32                     # type: int  texts per optimizer step (per process)
pos_weight_strategy = "sqrt"        # type: str  "none", "ratio", "sqrt" or "damped"
pos_weight_floor = 0.5              # type: float|None  the smallest pos_weight a class gets
pos_weight_cap = None               # type: float|None  the largest pos_weight a class gets
seed = 42                           # type: int  seeds the head's initialisation and the data order
early_stopping_patience = 2         # type: int  evaluations without a better validation macro-F1 before stopping
eval_steps = 0                      # type: int  0: evaluate and checkpoint once per epoch
max_steps = -1                      # type: int  -1 trains for all epochs; > 0 stops early (smoke runs)
bf16 = "auto"                       # type: str|bool  bf16 autocast where the hardware has it; True/False force it
freeze_layers = 0                   # type: int  > 0: keep the embeddings and the bottom N encoder layers fixed (3: ~1.5x faster steps, about a point of macro-F1 lost; docs/benchmarks.md)
attention_dropout = 0.0             # type: float|None  dropout on attention weights; None: the encoder's own 0.1 (on CPUs it makes 256-token batches ~1.75x slower, for no macro-F1 beyond seed noise; docs/benchmarks.md)
nproc_per_node = 1                  # type: int  > 1 runs the same script under torchrun (DDP)
probe_label = None                  # type: str|None  the class for the pos_weight demo; None picks a rare one
teaching = True                     # type: bool  run the loss walkthrough (sections 1-3); False: batch runs and sweeps, which only need the model
# SageMaker (mode = "sagemaker")
role = None                         # type: str|None  an IAM role ARN that SageMaker may assume; None in Studio: its execution role
instance_type = "ml.g5.xlarge"      # type: str  the training instance (Hugging Face images need a GPU)
instance_count = 1                  # type: int  instances in the training job
transformers_version = None         # type: str|None  None: the newest the SDK knows
pytorch_version = None              # type: str|None  None: the one that goes with transformers_version
distribution = None                 # type: str|None  "torch_distributed" for multi-GPU or multi-node
default_bucket = None               # type: str|None  the session's S3 bucket; None in Studio: the session's default
job_name = None                     # type: str|None  the new job's name; None: the SDK makes one
wait = True                         # type: bool  wait for the job, streaming its logs, then unpack its model here
attach_job = None                   # type: str|None  bring back this earlier job's model instead of submitting

# %%
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display

from mlclf_utils.modeling import loss, plots
from mlclf_utils.runner import runs
from mlclf_utils.stages import preprocess, train
from mlclf_utils.teaching import bce, weight_probe

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
config = train.Config.from_params(globals())  # the parameters above, as one value
train.check(config.as_dict())  # bad values fail here, before any work (the runner checks the same)
run_dir = runs.resolve_run_dir(run_dir, train.STAGE)
out_dir = runs.stage_dir(run_dir, train.STAGE)
figures = train.figures_dir(run_dir)
train_split, validation_split, label_map = train.load_splits(run_dir)
print("run directory:", run_dir.name, "| labels:", len(label_map),
      "| train:", len(train_split), "| validation:", len(validation_split),
      "| from 01:", preprocess.shared_settings(run_dir))

# %% [markdown]
# ## 1 · Binary cross-entropy, one label at a time
#
# For a text $n$ and a label $c$ with target $y_{n,c} \in \{0, 1\}$ and logit $x_{n,c}$, binary
# cross-entropy is the negative log-likelihood of the target under $\sigma(x_{n,c})$. With an optional
# per-element weight $w_{n,c}$ and a per-class **positive weight** $p_c$:
#
# $$
# \ell_{n,c} = -\,w_{n,c}\Big[\,p_c\, y_{n,c} \log \sigma(x_{n,c}) + (1 - y_{n,c}) \log\big(1 - \sigma(x_{n,c})\big)\Big]
# $$
#
# and the loss of a batch is the mean (or the sum) over all $N \times K$ entries:
#
# $$
# L_{\text{mean}} = \frac{1}{NK}\sum_{n=1}^{N}\sum_{c=1}^{K} \ell_{n,c}, \qquad
# L_{\text{sum}} = \sum_{n,c} \ell_{n,c}.
# $$
#
# `mlclf_utils.modeling.loss.bce_with_logits` implements this formula term by term. Below it is checked against
# PyTorch's `binary_cross_entropy_with_logits` for every variant: no weights, $w$ per element, $p_c$ per
# class, both, and each reduction.

# %%
if teaching:
    torch.manual_seed(0)
    logits = torch.randn(6, 4) * 8
    targets = (torch.rand(6, 4) > 0.6).float()
    w = torch.rand(6, 4)
    p = torch.tensor([0.5, 1.0, 4.0, 16.0])
    rows = []
    for name, kwargs in {"plain": {}, "weight w": {"weight": w}, "pos_weight p": {"pos_weight": p},
                         "w and p": {"weight": w, "pos_weight": p}}.items():
        for reduction in ("mean", "sum"):
            ours = loss.bce_with_logits(logits, targets, reduction=reduction, **kwargs)
            torch_ = F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction, **kwargs)
            rows.append({"variant": name, "reduction": reduction, "ours": ours.item(),
                         "torch": torch_.item(), "abs diff": abs(ours - torch_).item()})
    agreement = pd.DataFrame(rows)
    display(agreement)
else:
    print("teaching=False: the loss walkthrough (sections 1-3 and the probe table of section 4) "
          "is skipped; it saves nothing that training needs")

# %%
# NBVAL_CHECK_OUTPUT
if teaching:
    print("every variant agrees with PyTorch to 1e-5:", bool(agreement["abs diff"].max() < 1e-5))

# %% [markdown]
# ### What the sample weights $w_{n,c}$ are for
#
# $w_{n,c}$ says how much one entry (text $n$, label $c$) should count. A weight of 2 is the same as the
# row appearing twice, and a weight of 0 removes the entry from the loss and from the gradient. That
# serves:
#
# - **duplicated rows**: give each copy $1/\text{copies}$ instead of letting a text that appears five
#   times count five times;
# - **trusted and untrusted sources**: hand-checked labels at 1, labels mined from a noisy source at
#   0.3;
# - **unknown labels**: $w_{n,c} = 0$ where nobody checked whether label $c$ applies to text $n$, so
#   that "not tagged" is not read as "no".
#
# The table checks the first two equalities and the masked gradient on the batch of the cell above. Note
# the third row: with weights, `reduction="mean"` divides by the number of entries $NK$, not by
# $\sum w$, so it equals duplication only up to a constant factor.
#
# **Training here does not pass sample weights:** the source tables of 01 carry no weight column, and
# `train.py` calls the loss with `pos_weight` only (every $w_{n,c} = 1$). Supporting them means a weight
# column read by 01's sources, carried by 02's dataset and passed by the trainer's loss; that is left
# for later.

# %%
if teaching:
    display(bce.sample_weight_demo(logits, targets))

# %% [markdown]
# ### Mean or sum: why the mean is the default
#
# $L_{\text{sum}} = NK \cdot L_{\text{mean}}$, so its gradient grows with the batch size $N$ (and with the
# number of labels $K$). The step that a learning rate gives would then change with every change of the
# batch size, of the number of processes under DDP, or of the label set. Below: the gradient of a fresh
# linear head on TF-IDF features of this run's train split, on random batches of growing size. On top of
# that, `transformers.Trainer` clips the gradient norm to `max_grad_norm = 1` before every step; under
# the sum, clipping would fire on every step and set the step size itself. The mean keeps the gradient
# at the same scale for any $N$ and $K$, so one learning rate fits them all.

# %%
if teaching:
    probe_data = bce.probe_data(train_split, validation_split, label_map.labels)
    norms = bce.gradient_norms(probe_data.x_train, probe_data.y_train)
    display(norms)
    first, last = norms.iloc[0], norms.iloc[-1]
    print(f"batch {first.batch_size:.0f} -> {last.batch_size:.0f}: the sum's gradient norm grows "
          f"{last.grad_norm_sum / first.grad_norm_sum:.1f}x ({first.grad_norm_sum:.3g} -> {last.grad_norm_sum:.3g}), "
          f"the mean's changes {last.grad_norm_mean / first.grad_norm_mean:.2f}x")
    bce.plot_gradient_norms(norms, figures / "gradient_norm_by_batch.png");

# %% [markdown]
# ## 2 · Why "with logits": the log-sum-exp form
#
# The textbook recipe, *take the sigmoid, then the log*, breaks in floating point, and much earlier than
# one would guess. float32 has 24 bits of mantissa, so $1 + e^{-x}$ rounds to exactly 1 as soon as
# $e^{-x} < 2^{-24}$, i.e. for $x > 24 \ln 2$: from there on $\sigma(x) = 1$ exactly and
# $\log(1 - \sigma(x)) = \log 0 = -\infty$. The cell below finds that cliff by bisection. Logits of that
# size are common late in training: a model that is sure a label does not apply says so with a large
# logit of the wrong sign. On the other side, $\sigma(x)$ underflows to 0 far out (large negative $x$),
# and $\log \sigma(x) = -\infty$ there. One such entry turns the whole batch loss into `inf` and the
# gradients into `nan`.
#
# The fix is algebra, not more precision. Since $\log \sigma(x) = -\log(1 + e^{-x})$ and
# $\log(1 - \sigma(x)) = -\log(1 + e^{x})$, both terms are a *softplus*,
# $\operatorname{softplus}(z) = \log(1 + e^{z}) = \max(z, 0) + \log(1 + e^{-|z|})$,
# which never exponentiates a large positive number:
#
# $$
# \ell = w\,\Big[\,p\, y \,\operatorname{softplus}(-x) + (1 - y)\,\operatorname{softplus}(x)\Big].
# $$
#
# The table is a negative entry ($y = 0$, loss $-\log(1 - \sigma(x))$) in float32, whose exact loss is $x$ plus
# a vanishing term. The naive form drifts before the cliff (it loses digits computing $1 - \sigma(x)$) and
# is `inf` after it; the stable form and PyTorch's kernel are exact on both sides.

# %%
if teaching:
    cliff = bce.sigmoid_cliff()
    print(f"float32: sigmoid(x) == 1 exactly from x = {cliff:.4f} (24 ln 2 = {24 * 0.6931471805599453:.4f})")
    display(bce.float32_table())

# %% [markdown]
# Look for the `nan` below: even when a term's weight is zero, $0 \times \log 0 = 0 \times (-\infty)$ is not
# a number, so the naive form fails for *confident and correct* predictions too.

# %%
# NBVAL_CHECK_OUTPUT
if teaching:
    x = torch.tensor([-100.0, -20.0, 0.0, 20.0, 100.0])
    for y in (1.0, 0.0):
        t = torch.full_like(x, y)
        print(f"y={y:.0f}  naive :", loss.naive_bce(x, t).tolist())
        print(f"y={y:.0f}  stable:", loss.bce_with_logits(x, t, reduction="none").tolist())

# %%
if teaching:
    plots.plot_stability(figures / "bce_stability.png");

# %% [markdown]
# ## 3 · What $p_c$ does to the loss and to its gradient
#
# The gradient of $\ell$ with respect to the logit is remarkably simple:
#
# $$
# \frac{\partial \ell}{\partial x} = w\,\big[(p\,y + 1 - y)\,\sigma(x) - p\,y\big]
# = \begin{cases} -\,w\,p\,\big(1 - \sigma(x)\big) & y = 1\\ w\,\sigma(x) & y = 0 \end{cases}
# $$
#
# So $p_c$ multiplies the loss **and the gradient of positives only**; negatives are untouched. With
# $p_c > 1$ every missed positive of class $c$ pushes its logit up $p_c$ times harder. The model then
# says "yes" to class $c$ more often: recall rises, and precision usually falls. With $p_c < 1$ it is the
# other way round: the model says "yes" only when it is surer, so precision rises and recall falls.
# $p_c = \text{neg}/\text{pos}$ makes positives and negatives of the class weigh the same in total.

# %%
if teaching:
    plots.plot_pos_weight_effect(figures / "pos_weight_effect.png");

# %% [markdown]
# ### On the demo data
#
# Fine-tuning the encoder once per weight would take an hour on a CPU, so this demonstration trains a
# *linear probe*: logistic regression on TF-IDF features, with the same loss, for one rare class and
# several values of its $p_c$. Scores are on the validation split at threshold 0.5. A rare class has so
# few validation positives that the table moves in coarse steps; the next subsection uses a frequent one.

# %%
if teaching:
    stats = train.class_statistics(run_dir)
    if probe_label is None:
        candidates = stats[stats["validation"] >= 10]
        probe_label = candidates.index[-1] if len(candidates) else stats.index[-1]
    column = label_map.index_of(probe_label)
    ratio = (len(train_split) - stats.loc[probe_label, "train"]) / stats.loc[probe_label, "train"]
    tradeoff = weight_probe.pos_weight_tradeoff(
        train_split["text"], [row[column] for row in train_split["labels"]],
        validation_split["text"], [row[column] for row in validation_split["labels"]],
        pos_weights=[0.5, 1, 2, 4, 8, 16, round(float(ratio), 1)],
    )
    print(f"class {probe_label!r}: {stats.loc[probe_label, 'train']} train positives, neg/pos = {ratio:.1f}")
    display(tradeoff)
    weight_probe.plot_tradeoff(tradeoff, probe_label, figures / "pos_weight_tradeoff.png");

# %% [markdown]
# ### $p_c < 1$ raises precision, on a frequent label
#
# The same probe on the most frequent label, which has enough validation positives for precision and
# recall to move smoothly, for $p_c$ from well below 1 to above it. `reads_unweighted_at` is $1/(1+p_c)$,
# the probability at which the weighted model's 0.5 sits (derived in the next subsection), and
# `mean_prob` the probe's mean probability on validation.

# %%
if teaching:
    frequent_label = stats.index[0]
    frequent = bce.pos_weight_sweep(probe_data, frequent_label, [0.05, 0.1, 0.25, 0.5, 1, 2, 4])
    display(frequent.round(3))
    at = frequent.set_index("pos_weight")
    print(f"{frequent_label!r}: {frequent.attrs['validation_positives']} validation positives "
          f"({frequent.attrs['validation_share']:.1%} of the texts)")
    for p in (4, 1, 0.5, 0.25):
        print(f"  p_c = {p:<4g} precision {at.loc[p, 'precision']:.3f}, recall {at.loc[p, 'recall']:.3f}, "
              f"{at.loc[p, 'predicted_positive']:.0f} predicted positive")
    print("no text predicted positive at p_c =", [p for p in at.index if at.loc[p, "predicted_positive"] == 0])
    weight_probe.plot_tradeoff(frequent, frequent_label, figures / "pos_weight_tradeoff_frequent.png");

# %% [markdown]
# Lowering $p_c$ trades recall for precision until, at the smallest weights, the probe can say "no" to
# every text, even for a label on a good share of them (the cell prints where); precision is then
# undefined (shown as 0). That is why the weights have a **floor**. For a label on a share $f$ of the texts, $r = (1-f)/f < 1$,
# and `ratio` gives it $p_c = r$: its 0.5 then means an unweighted probability of $1/(1+r) = f$. A
# label on 99% of the texts would be predicted only where the model is 99% sure, and it would hardly
# feed the shared encoder any gradient from its positives. The table shows what each strategy gives such
# labels and what the default floor of 0.5 leaves: a threshold of at most $1/(1 + 0.5) = 2/3$. The
# floor is what `compute_pos_weight` applies. With **extreme imbalance** (a few labels on nearly every
# text, others on almost none) the spread of weights is largest, and a floor above 0.5, up to 1 (plain
# BCE for every label that is not rare), keeps the weights from ever costing a frequent label its
# recall: they then only ever raise recall where a label is rare.

# %%
if teaching:
    floors = bce.floor_table(floor=pos_weight_floor if pos_weight_floor else 0.5)
    display(floors.round(3))
    print(f"a label on 99% of the texts: ratio gives p_c = {floors.iloc[-1]['ratio']:.3f}, read at "
          f"{floors.iloc[-1]['reads_at (ratio)']:.3f}; with the floor, read at {floors.iloc[-1].iloc[-1]:.3f}")

# %% [markdown]
# ### The link to 04: $p_c$ moves the threshold
#
# Take all the texts that the model cannot tell apart, and let $q$ be the share of them with the label.
# The best probability $s$ the model can give them minimises the expected weighted loss
#
# $$
# R(s) = -\big[p\, q \log s + (1 - q) \log(1 - s)\big], \qquad
# R'(s) = -\frac{p\,q}{s} + \frac{1 - q}{1 - s} = 0
# \;\Longrightarrow\; \frac{s}{1 - s} = p \cdot \frac{q}{1 - q}.
# $$
#
# The weight multiplies the odds by $p$: the logit is shifted by $\log p$. A weighted model says "yes"
# ($s \ge 0.5$, odds $\ge 1$) exactly where $p\,q \ge 1 - q$, i.e. $q \ge 1/(1 + p)$: **reading a weighted
# model at 0.5 is reading an unweighted one at $1/(1+p_c)$.** That explains three things at once:
#
# - the recall/precision shift above: $p_c > 1$ lowers the effective threshold, $p_c < 1$ raises it;
# - why a weighted model's probabilities are not calibrated: they are the odds of $q$ times $p_c$, not $q$;
# - why `04_evaluate` tunes one threshold per class on validation: the best threshold depends on $p_c$.
#
# First the check where the derivation applies exactly: the train texts grouped into bins by an
# unweighted probe's score, and a model with one free logit per bin trained with $p = 4$.

# %%
if teaching:
    bins = bce.binned_odds_check(probe_data, frequent_label, 4.0)
    display(bins.round(4))
    print(f"largest gap between the trained probability and p q / (p q + 1 - q): {bins['abs diff'].max():.1e}; "
          f"0.5 on the weighted model agrees with q >= 1/(1+p) = {bce.implied_threshold(4.0):.2f} "
          f"in {int((bins['says yes at 0.5'] == bins['q >= 1/(1+p)']).sum())} of {len(bins)} bins")

# %% [markdown]
# Then on a real model: the TF-IDF probe of the frequent label trained without and with $p_c$, read on
# validation. The probe is regularised (weight decay), which pulls every logit towards 0, so its shift
# can fall short of $\log p$; the decisions still agree on most texts, and the weighted probe's mean
# probability drifts away from the label's share of the texts just as the formula says.

# %%
if teaching:
    shift = bce.odds_shift_check(probe_data, frequent_label, (0.25, 4.0))
    display(shift.round(3))
    for row in shift.itertuples():
        print(f"p = {row.pos_weight:g}: median logit shift {row[3]:+.2f} (log p = {row[2]:+.2f}); weighted-at-0.5 "
              f"and unweighted-at-{bce.implied_threshold(row.pos_weight):.2f} agree on {row[6]:.1%} of the "
              f"texts; mean probability {row[9]:.3f} unweighted, {row[7]:.3f} weighted, {row[8]:.3f} predicted")

# %% [markdown]
# ## 4 · Per-class positive weights from the training split
#
# The weights come from the **train split only**. The strategies, for a class with $\text{pos}$
# positives and $\text{neg}$ negatives in train:
#
# | strategy | $p_c$ | when |
# |---|---|---|
# | `none` | $1$ | the plain recipe |
# | `ratio` | $\text{neg}/\text{pos}$ | balances each class exactly; rare classes get huge weights, and precision suffers |
# | `sqrt` | $\sqrt{\text{neg}/\text{pos}}$ | a common compromise, and the default here |
# | `damped` | $r$ for $r \le 1$, else $1 + \ln r$ (with $r = \text{neg}/\text{pos}$) | grows only logarithmically, so the rarest classes get tamed weights; the order of the classes is kept |
#
# A floor (default 0.5) keeps a very frequent class from losing most of its positive gradient, and an
# optional cap limits the rarest.
#
# Which strategy suits a data set is an empirical question, and the answer costs one training run per
# candidate: `python -m mlclf_utils sweep --base runs/<run-id> --grid pos_weight_strategy=none,ratio,sqrt,damped`
# trains and evaluates each on this run's data, and section 7 of `04_evaluate` compares them.

# %%
weights = train.pos_weights(train_split, label_map, config)  # what the trainer will use
comparison = train.strategy_comparison(train_split, label_map, config)
display(weights.sort_values("ratio", ascending=False).head(10))
display(comparison.describe().loc[["min", "50%", "max"]].round(2))
train.plot_pos_weights(weights, run_dir);

# %% [markdown]
# ### Why damp very high weights
#
# By the odds shift above, a label with weight $p_c$ read at 0.5 says "yes" wherever its unweighted
# probability passes $1/(1+p_c)$. `ratio` gives the rarest labels weights near their neg/pos ratio, so
# they are read at a percent or so: every text with the faintest hint of the label gets it, and precision
# on those labels collapses. Their positives also push the shared encoder tens of times harder than an
# ordinary label's. `sqrt` and `damped` keep the thresholds in a sane range. The weights on this run's
# train split:

# %%
if teaching:
    display(bce.strategy_weights(probe_data, floor=pos_weight_floor).round(3))

# %% [markdown]
# The evidence that this matters for the fine-tuned encoder is the class-weight sweep: each strategy
# fine-tuned and evaluated (03–04), once, on the same data. At 0.5, where the weights act unchecked,
# `ratio` should lose clearly against `sqrt` and `damped`; with thresholds tuned per class on validation
# (04) much of the gap closes, because tuning undoes the threshold shift. The cell says where its numbers
# come from: the newest sweep on this run's data if there is one, otherwise the committed benchmark.

# %%
evidence, source = bce.sweep_evidence(run_dir)
print(source)
if evidence is not None:
    display(evidence)
    by = evidence.set_index("pos_weight_strategy")
    for column in ("test_macro_f1_at_0.5", "test_macro_f1"):
        print(f"{column}: " + ", ".join(f"{s} {by.loc[s, column]:.3f}"
                                        for s in ("ratio", "sqrt", "damped") if s in by.index))

# %% [markdown]
# ## 5 · Fine-tune
#
# `mlclf_utils/modeling/train.py` is one script for every way of running: here in-process, under
# `torchrun --nproc_per_node=N` (DDP, gloo on CPU and nccl on GPU), or as the entry point of a
# SageMaker Hugging Face job; `train.fine_tune` (`mlclf_utils/stages/train.py`) picks the way from
# `mode` and `nproc_per_node`. It builds on `transformers.Trainer` with the weighted loss above,
# pads each batch dynamically and groups texts of similar length, runs under bf16 autocast where
# the CPU has bf16 units, steps torch's fused AdamW (docs/benchmarks.md measures each of these
# and the options that did not pay), evaluates micro- and macro-F1
# after every epoch, keeps the best checkpoint by validation macro-F1, stops early when macro-F1
# stops improving, and saves the model (safetensors), the tokenizer, the label map and the
# positive weights.
#
# The recipe is LP-FT on mean-pooled vectors. all-MiniLM-L6-v2 was trained to turn a text into the
# mean of its token vectors; its [CLS] pooler never was. So the model reads that mean, and its new
# head (one output per label, which the encoder checkpoint cannot hold) is first fitted as a linear
# probe: logistic regression with the same weighted BCE, on the frozen encoder's vectors of the
# train split. Only then does everything fine-tune together, at one learning rate. A random head
# would send random gradients into the encoder during the first steps and undo some of what it
# knows. Against the old recipe (a random head on the CLS pooler, at its own higher rate), LP-FT
# scored higher macro- and micro-F1 on the demo rows the run never saw, over three seeds; the
# "Recipes" table in docs/benchmarks.md has each seed and its command.
#
# The first lines name what is new: the head, freshly initialised (transformers' own "LOAD
# REPORT" calls those weights MISSING; that is expected here, so mlclf says it in one line instead,
# and shows transformers' report only when anything else is missing), then the probe that fits
# it. The progress bar counts optimizer steps; a run cut short by `max_steps` shows the fraction of
# an epoch it reaches.
#
# With `mode="sagemaker"` the job trains on the S3 channels 02 uploaded. By default the cell
# waits, streaming the job's logs, then unpacks the job's `model.tar.gz` and `output.tar.gz` into
# `03_train/model` and `03_train/metrics`: the layout of a local run, so 04 and 05 run unchanged.
# With `wait=False` it returns once the job is accepted; `attach_job="<job name>"` in a new run
# brings that job's model back later.

# %%
metrics = train.fine_tune(run_dir, config)  # here, under torchrun, or on SageMaker: see mode
{k: v for k, v in metrics.items() if k != "validation"}

# %% [markdown]
# ## 6 · Training curves

# %%
curves = train.plot_training_curves(run_dir)  # None until a job not waited for is brought back
if curves is not None:
    print(f"best validation macro-F1 at threshold 0.5: {metrics['best_validation_macro_f1']:.3f}")

# %% [markdown]
# The model folder (`03_train/model/`) holds safetensors weights and a config. `Classifier` loads
# it (`mlclf_utils/serving/predict.py`), and so do 05's explainer and SageMaker hosting. Plain
# `transformers` code can load it too, after `import mlclf_utils.modeling.pooling`: that import
# registers the mean-pooling model class with `AutoModelForSequenceClassification`.
# Next: `04_evaluate` tunes a threshold per class on validation and measures everything on test.
