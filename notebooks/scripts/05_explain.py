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
# `[PAD]`. The integral is a weighted sum of the gradient at `n_steps` points $\alpha$ on the path, each
# costing a forward and a backward pass. A fine-tuned model's probability hardly moves near either end
# of the path and turns somewhere in the middle, so the points here are Gauss-Legendre nodes spread
# toward the middle by an arcsine map (`mlclf_utils/explain/quadrature.py`); Captum's Gauss-Legendre
# rule crowds them at the ends. The *convergence delta* measures how far the numerical integral is from
# the completeness identity on the right; explanations with a large delta are flagged.
# docs/benchmarks.md compares the two rules' speed at equal delta.

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
n_steps = 40              # type: int  integration steps of integrated gradients
internal_batch_size = 16  # type: int  forward passes hold this many max_length-token rows of interpolated inputs (memory against speed)
max_pairs = 8             # type: int  suspicious (class, word) pairs turned into hard negatives
oversample_factor = 3     # type: int  each hard negative appears this many times in the retrain set
retrain = True            # type: bool  retrain with the hard negatives and compare with a control
retrain_budget = 0.1      # type: float  fraction of 03's epochs for the retrain and its control (two trainings); 1.0: one full retrain compared with 03's model

# %%
from IPython.display import display

from mlclf_utils.explain import attribution_views, hard_negatives, token_audit
from mlclf_utils.runner import runs
from mlclf_utils.stages import explain

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
config = explain.Config(n_classes=n_classes, n_per_kind=n_per_kind, n_steps=n_steps,
                        internal_batch_size=internal_batch_size, max_pairs=max_pairs,
                        oversample_factor=oversample_factor, retrain=retrain,
                        retrain_budget=retrain_budget)
run_dir = runs.resolve_run_dir(run_dir, explain.STAGE)
inputs = explain.load_inputs(run_dir)  # 02's train split, 04's mistakes; 05's folder is made here
explainer = explain.load_explainer(inputs, config)
errors = inputs.errors
print("run directory:", run_dir.name, "| test texts with an error:", int((errors["n_errors"] > 0).sum()))

# %% [markdown]
# ## 1 · Explain the mistakes of the classes with the most errors

# %%
items, kinds, weakest = explain.pick_mistakes(inputs, config)
print(f"{len(items)} (text, label) pairs from the classes:", ", ".join(weakest))
explanations = explain.explain_mistakes(inputs, explainer, items)  # also attributions.parquet
print("explanations with a convergence delta above tolerance:",
      sum(not e.delta_ok for e in explanations), "of", len(explanations))

# %% [markdown]
# Red words pushed the probability of the label up, blue words pushed it down; the stronger the colour,
# the larger the push, relative to the text's strongest word. For a **false positive** (the title says
# so: the model gave the label, the text does not carry it), the red words are what fooled the model;
# for a **false negative** (a true label the model missed), look for the evidence it ignored.
#
# Each title gives **04's decision**: the calibrated probability it decided on, against the label's
# threshold, as in 04's `misclassifications.csv`. The grey line below it gives what integrated gradients
# explains: the model's **raw sigmoid** for the text (for a long text, the window that decided) and at the
# baseline; the attributions add up to their difference. Calibration is an increasing map on top of the
# raw sigmoid, so a word that raises one raises the other, but the two numbers can lie on opposite sides
# of the threshold: a false negative (calibrated p below the threshold) can have a raw sigmoid above it.

# %%
explain.plot_explanations(inputs, explanations, kinds=kinds, items=items);

# %% [markdown]
# The same explanations as a table, in the **same colours** (red raises, blue lowers; the legend is on
# top), with every word and each text's **true labels**, so a false positive can be read against what
# the text really carries. Hover a word for its attribution. We draw this table ourselves rather than
# with Captum's text view, whose green-for-positive would give red the opposite meaning here. It needs
# a live notebook (GitHub does not render it); the figure above is the copy that travels.

# %%
explain.show_explanations(inputs, items, explanations, kinds)

# %% [markdown]
# ## 2 · The over-fitted token audit
#
# Across all explanations, for each class: the words' mean positive attribution toward the class, how
# many training texts contain them, and their **lift**, $P(\text{class} \mid \text{word}) / P(\text{class})$.
# A word with lift 10 appears in texts of the class ten times more often than chance. Words that
# combine a high attribution, a high lift and at least one false positive they drove are flagged as
# shortcut candidates.
#
# The table's short column names: `n_expl`, the class's explanations that contain the word; `pos_attr`,
# its mean positive attribution, the push toward the class averaged over those (pushes down count as 0);
# `n_train`, the training texts that contain it, and `n_class`, those of them that carry the class (lift
# is `n_class / n_train` divided by the class's share of all training texts); `fp_driver`, the false
# positives in which it was the strongest word; `suspicious`, all three conditions at once (the rule is
# printed below the table). `token_audit.csv` has every word under the long names
# (`n_explanations`, `mean_positive_attribution`, `train_occurrences`, `class_occurrences`), with the two
# halves of lift (`exclusivity`, `class_prior`).

# %%
audit = explain.audit_tokens(inputs, explanations, kinds)  # also token_audit.csv
display(token_audit.top_tokens_view(audit, n=3))
print(token_audit.suspicious_note(audit))
explain.plot_top_tokens(inputs, audit);

# %% [markdown]
# ## 3 · Hard negatives
#
# For each suspicious (class, word) pair, the training texts that contain the word but do not carry the
# class. They are the counter-examples the model needs to stop treating the word as the label.
#
# Not every text without the class is a true negative: a package that mentions gtk may simply lack its
# `uitoolkit::gtk` tag. So a hard negative whose class 01's **label audit** (cleanlab on out-of-fold
# TF-IDF probabilities) flags as *probably missing* for that very text is not used as a negative: it
# is set aside as a **label to review** (`labels_to_review.csv`, with the audit's probability and
# score), and counted below. Oversampling it would teach the model that a probably-correct label is
# wrong.
#
# Both tables show a few rows per (class, word) pair, with each text, its labels and the reason whole;
# the review table only when the label audit set some aside. In it, `probability` is the audit model's probability that the text carries the class
# (it never saw the text while fitting), and `score` is cleanlab's label quality score for the given
# "absent" (low: the audit is confident the label is missing).

# %%
pairs, negatives, to_review = explain.find_hard_negatives(inputs, audit, config)  # also hard_negatives.csv
print(hard_negatives.review_note(negatives, to_review, pairs, audit=audit, max_pairs=max_pairs))
display(hard_negatives.table_view(negatives))
if to_review is not None and len(to_review):
    display(hard_negatives.table_view(to_review))  # also labels_to_review.csv

# %% [markdown]
# ## 4 · Retrain with the hard negatives oversampled
#
# The same recipe as 03, on a training split where every hard negative appears `oversample_factor`
# times. To keep it cheap, it trains for `retrain_budget` of 03's epochs; so that the comparison
# is fair, a **control** trains with the same recipe and the same budget on the original split, and
# "before" is that control, not 03's longer-trained model (with `retrain_budget = 1.0`, one full
# retrain is compared with 03's model instead). Both models are evaluated the same way: thresholds
# tuned on validation, metrics on test.

# %%
skipped = explain.retrain_skipped(config, negatives)
if skipped:
    print("retrain skipped:", skipped)
else:
    comparison = explain.retrain_with_hard_negatives(inputs, negatives, pairs, config)
    display(comparison.round(4))  # also retrain_comparison.csv

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
print(attribution_views.explanation_summary(explanations, kinds, delta_tolerance=explainer.delta_tolerance))
