# %% [markdown]
# # 05 · Explain: integrated gradients on the mistakes, over-fitted tokens, hard negatives
#
# Metrics say *how often* the model is wrong; explanations say *why*. This notebook takes the false
# positives and false negatives of the weakest classes from `04_evaluate` and asks, word by word, what
# pushed the model toward (red) or away from (blue) each label. Then it
#
# 1. ranks, per class, the words that drive the model toward the class across many explanations, and
#    how concentrated those words are in the class's training positives (**lift**). A word with high
#    attribution and high lift that also drives false positives is a **shortcut candidate**: the model
#    learned "this word means this label" instead of the meaning;
# 2. finds the **hard negatives**: training texts that contain such a word but *not* the class;
# 3. retrains with those negatives oversampled and compares precision and macro-F1 before and after.
#
# **Integrated gradients** (Sundararajan et al., 2017) attributes the change of one output between a
# baseline input $x'$ and the real input $x$ to the input features, by integrating the gradient along the
# straight path between them:
#
# $$
# \mathrm{IG}_i(x) = (x_i - x'_i)\int_0^1 \frac{\partial F\big(x' + \alpha (x - x')\big)}{\partial x_i}\, d\alpha ,
# \qquad \sum_i \mathrm{IG}_i(x) = F(x) - F(x') .
# $$
#
# Here $F$ is **one label's sigmoid probability** (never a softmax: the labels are independent), $x$ are
# the token embeddings, and the baseline $x'$ is the same sequence with every word token replaced by
# `[PAD]`. The *convergence delta* measures how far the numerical integral is from the completeness
# identity on the right; explanations with a large delta are flagged.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these).
run_dir = None            # type: str|None  None: the run your 01 started by hand (papermill: the latest); a new one if 05 ran there
n_classes = 6             # type: int  explain the classes with the most test errors (FP + FN)
n_per_kind = 3            # type: int  false positives and false negatives explained per class
n_steps = 50              # type: int  integration steps of integrated gradients
internal_batch_size = 16  # type: int  interpolated inputs per forward pass (memory against speed)
max_pairs = 8             # type: int  suspicious (class, word) pairs turned into hard negatives
oversample_factor = 3     # type: int  each hard negative appears this many times in the retrain set
retrain = True            # type: bool  retrain with the hard negatives and compare (one more training run)

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import display

from mlclf_utils.explain import attributions, hard_negatives, token_audit
from mlclf_utils.data import dataset
from mlclf_utils.evaluation import scoring, misclassifications
from mlclf_utils.runner import runs
from mlclf_utils.modeling import train

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
run_dir = runs.resolve_run_dir(run_dir, "05_explain")
out_dir = runs.stage_dir(run_dir, "05_explain")
figures = out_dir / "figures"
model_dir = run_dir / train.STAGE / train.MODEL_DIR
data_dir = run_dir / dataset.STAGE / dataset.DATASET_DIR
train_split, label_map = dataset.load_split(data_dir / "train")
errors = misclassifications.load_misclassifications(run_dir / "04_evaluate" / "misclassifications.parquet")
report = json.loads((run_dir / "04_evaluate" / "report.json").read_text())
explainer = attributions.Explainer.from_model_dir(model_dir, n_steps=n_steps,
                                                  internal_batch_size=internal_batch_size)
print("run directory:", run_dir.name, "| test texts with an error:", int((errors["n_errors"] > 0).sum()))

# %% [markdown]
# ## 1 · Explain the mistakes of the classes with the most errors

# %%
counts = {label: (errors["false_positives"].map(lambda xs: label in xs).sum(),
                  errors["false_negatives"].map(lambda xs: label in xs).sum()) for label in label_map.labels}
weakest = sorted(label_map.labels, key=lambda l: -(counts[l][0] + counts[l][1]))[:n_classes]
items, kinds = [], {}
for label in weakest:
    for kind in ("fp", "fn"):
        for text in misclassifications.worst_examples(errors, label, kind=kind, n=n_per_kind)["text"]:
            kinds[len(items)] = kind
            items.append((text, label))
print(f"{len(items)} (text, label) pairs from the classes {weakest}")
explanations = explainer.explain_many(items)
table = attributions.explanations_table(explanations)
table.to_parquet(out_dir / "attributions.parquet")
print("explanations with a convergence delta above tolerance:",
      sum(not e.delta_ok for e in explanations), "of", len(explanations))

# %% [markdown]
# Red words pushed the probability of the label up, blue words pushed it down. For a **false positive**
# (title says `fp`), the red words are what fooled the model; for a **false negative**, look for the
# evidence the model ignored.

# %%
attributions.plot_attributions(explanations[:6], figures / "attributions.png");

# %%
attributions.captum_html(explanations[:6])

# %% [markdown]
# ## 2 · The over-fitted token audit
#
# Across all explanations, for each class: the words' mean positive attribution toward the class, how
# many training texts contain them, and their **lift**, $P(\text{class} \mid \text{word}) / P(\text{class})$.
# A word with lift 10 appears in texts of the class ten times more often than chance. Words that
# combine a high attribution, a high lift and at least one false positive they drove are flagged as
# shortcut candidates.

# %%
audit = token_audit.audit_tokens(explanations, train_split["text"],
                                 label_map.from_multi_hot(np.asarray(train_split["labels"]) > 0.5),
                                 kinds=kinds)
audit.to_csv(out_dir / "token_audit.csv")
suspicious = audit[audit["suspicious"]]
display(token_audit.top_tokens_per_class(audit, n=3))
print(f"{len(suspicious)} suspicious (class, word) pairs")
token_audit.plot_top_tokens(audit, figures / "top_tokens.png");

# %% [markdown]
# ## 3 · Hard negatives
#
# For each suspicious (class, word) pair, the training texts that contain the word but do not carry the
# class. They are the counter-examples the model needs to stop treating the word as the label.

# %%
pairs = list(suspicious.reset_index()[["class", "token"]].itertuples(index=False, name=None))[:max_pairs]
train_label_sets = label_map.from_multi_hot(np.asarray(train_split["labels"]) > 0.5)
negatives = hard_negatives.find_hard_negatives(train_split["text"], train_label_sets,
                                               train_split["source_id"], pairs)
hard_negatives.save_hard_negatives(negatives, out_dir / "hard_negatives.csv")
print(f"{len(negatives)} hard negatives for {len(pairs)} pairs")
negatives.head(10)

# %% [markdown]
# ## 4 · Retrain with the hard negatives oversampled
#
# The same recipe as 03, on a training split where every hard negative appears `oversample_factor`
# times. Both models are evaluated the same way: thresholds tuned on validation, metrics on test.

# %%
if retrain and len(negatives):
    augmented = hard_negatives.oversampled_train_split(
        data_dir / "train", negatives["source_id"].unique(), out_dir / "retrain" / "train",
        factor=oversample_factor)
    trained = json.loads((model_dir / train.HYPERPARAMETERS_FILE).read_text())
    train.run_training(train_dir=str(augmented), validation_dir=str(data_dir / "validation"),
                       model_dir=str(out_dir / "retrain" / "model"),
                       output_data_dir=str(out_dir / "retrain" / "metrics"),
                       checkpoint_dir=str(out_dir / "retrain" / "checkpoints"), **train.recipe(trained))
    validation, test = (dataset.load_split(data_dir / s)[0] for s in ("validation", "test"))
    before = scoring.evaluate_model_dir(model_dir, validation, test, label_map.labels)
    after = scoring.evaluate_model_dir(out_dir / "retrain" / "model", validation, test, label_map.labels)
    classes = sorted({c for c, _ in pairs})
    comparison = hard_negatives.compare_before_after(before, after, classes)
    comparison.to_csv(out_dir / "retrain_comparison.csv", index=False)
    display(comparison.round(4))
else:
    print("retrain skipped:", "retrain=False" if not retrain else "no hard negatives found")

# %% [markdown]
# Oversampling negatives is a blunt tool: it can lower a class's recall along with its false positives,
# and `pos_weight` is recomputed on the augmented split. Read precision and recall together, and prefer
# adding *new* counter-examples to the data when you can.

# %% [markdown]
# ## 5 · Sanity check
#
# What was explained and whether every explanation converged, as names, counts and booleans only: the
# test suite (nbval) compares this cell's output with its reference.

# %%
# NBVAL_CHECK_OUTPUT
print(attributions.explanation_summary(explanations, kinds, delta_tolerance=explainer.delta_tolerance))
