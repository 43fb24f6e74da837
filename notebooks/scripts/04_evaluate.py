# %% [markdown]
# # 04 · Evaluate: honest multi-label metrics, per-class thresholds, baselines, and a usable model
#
# A multi-label model outputs $K$ probabilities per text; turning them into label sets needs a
# **threshold per label**. A single 0.5 for every label is the most common mistake in multi-label
# projects: with many rare labels, their probabilities rarely cross 0.5 and the model predicts almost
# nothing. This notebook
#
# 1. predicts probabilities for validation and test (batched, sorted by length);
# 2. tunes one threshold per label **on validation**, falling back to a shared threshold when a label
#    has too few validation positives to tune on;
# 3. reports every usual metric on **test**, at 0.5 and at the tuned thresholds;
# 4. compares with three baselines on the same splits: TF-IDF + logistic regression, the frozen
#    encoder + logistic regression, and the plain recipe (BCE without `pos_weight`, read at 0.5);
# 5. saves a **model bundle** (weights, tokenizer, label map, thresholds, cleaning config) that
#    `Classifier.load(dir).predict(texts)`, the CLI, SageMaker hosting and `transformers.pipeline`
#    can all use.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these).
run_dir = None              # type: str|None  None: the run your 01 started by hand (papermill: the latest); a new one if 04 ran there
min_support = 5             # type: int  labels with fewer validation positives use the shared threshold (and calibration)
calibration_method = "platt"  # type: str|None  per-label calibration fitted on validation: "platt", "temperature" or None
threshold_fallback = "global"   # type: str|float  "global" (one threshold tuned for micro-F1) or a number
threshold_shrinkage = 0.0   # type: float  k: each tuned threshold moves toward the fallback by k/(support+k); 0 off
frozen_baseline = True      # type: bool  the frozen-encoder baseline (one forward pass per text, no fine-tuning)
plain_baseline = True       # type: bool  the plain-recipe baseline: a sweep's matching `none` combination, else one more (budget) training
plain_budget = 0.1          # type: float  fraction of 03's epochs the plain recipe trains for when no sweep has it; 1.0: in full
batch_size = 64             # type: int  texts per inference batch
worst_n = 3                 # type: int  worst examples shown per class
sweep_dir = None            # type: str|bool|None  a class-weight sweep to show; None: the newest on this data; False: none
export_onnx = True          # type: bool  also write model.onnx (ONNX Runtime) into the bundle; model.int8.onnx when int8 holds test macro-F1

# %%
import numpy as np
import pandas as pd
from IPython.display import display

from mlclf_utils.evaluation import misclassifications, scoring
from mlclf_utils.runner import runs, sweep
from mlclf_utils.serving import bundle_summary, predict
from mlclf_utils.stages import evaluate

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
config = evaluate.Config(min_support=min_support, calibration_method=calibration_method,
                         threshold_fallback=threshold_fallback,
                         threshold_shrinkage=threshold_shrinkage, frozen_baseline=frozen_baseline,
                         plain_baseline=plain_baseline, plain_budget=plain_budget,
                         batch_size=batch_size, worst_n=worst_n, sweep_dir=sweep_dir,
                         export_onnx=export_onnx)
run_dir = runs.resolve_run_dir(run_dir, evaluate.STAGE)
inputs = evaluate.load_inputs(run_dir)  # 02's splits and 03's model; 04's folder is made here
splits, labels, y = inputs.splits, inputs.labels, inputs.y
print("run directory:", run_dir.name, "| labels:", len(labels),
      "| validation:", len(y["validation"]), "| test:", len(y["test"]))

# %% [markdown]
# ## 1 · Probabilities for validation and test
#
# Each output goes through its own **sigmoid**, never a softmax: the labels are independent yes/no
# questions, and the probabilities of one text do not sum to one.

# %%
raw_probs = evaluate.predict_probabilities(inputs, config, progress=True)
print("row sums of the test probabilities (not 1):", np.round(raw_probs["test"].sum(axis=1)[:5], 2))

# %% [markdown]
# **Calibration, one label at a time.** `pos_weight` pushes every weighted label's probabilities
# up (03 derives by how much), so the raw outputs over-state how often a label applies. A per-label
# map $\sigma(a_c\,x + b_c)$ of the logit $x$ (Platt scaling; `"temperature"` fixes $b_c = 0$),
# fitted by maximum likelihood on validation, brings them back. Labels with fewer than
# `min_support` validation positives share one map fitted to all pairs. The map is increasing, so
# it reorders nothing: AUC and average precision stay, and the thresholds below are tuned on the
# calibrated probabilities, which are exactly what the bundle's `Classifier` returns. The test
# ECE is the honest check: the maps never saw test.

# %%
calibrator, probs, ece_table = evaluate.calibrate(inputs, raw_probs, config)
display(ece_table.round(4))
print({k: v for k, v in ece_table.attrs.items()} or "calibration is off (calibration_method=None)")
evaluate.plot_raw_reliability(inputs, raw_probs);

# %% [markdown]
# ## 2 · One threshold per label, tuned on validation
#
# For each label we search every distinct validation probability for the threshold that maximises that
# label's F1. A label with fewer than `min_support` validation positives would get a threshold fitted to
# noise, so it falls back to one shared threshold (the one that maximises micro-F1 over all labels).
# With `threshold_shrinkage` $k > 0$, a tuned threshold $t_c$ of a label with $n_c$ validation
# positives becomes $(n_c t_c + k\,t_{shared})/(n_c + k)$: the less support, the more it leans on the
# shared threshold, since a small validation split makes $t_c$ partly a fit to noise.
# The thresholds are chosen on validation (on the calibrated probabilities) and only *applied* to test.

# %%
tuned, tuned_values = evaluate.tune_thresholds(inputs, probs, config)
display(tuned.sort_values("support").head(8))
print(tuned["source"].value_counts().to_string())

# %%
evaluate.plot_threshold_curves(inputs, probs, tuned);  # the two most and two least frequent labels

# %% [markdown]
# ## 3 · Test metrics at 0.5 and at the tuned thresholds
#
# Micro averages pool every (text, label) decision, so frequent labels dominate; macro averages give
# every label the same say, so rare labels count. *Samples*-F1 averages per text. Subset accuracy asks
# for the exact label set, and Hamming loss is the share of wrong (text, label) decisions. ROC-AUC and
# average precision do not depend on any threshold. A label with no positives in test cannot have a
# recall or an AUC there: it is listed and left out of the macro averages, never counted as 0 or 1.

# %%
reports = evaluate.metric_reports(inputs, probs, tuned_values)
summary = pd.DataFrame({"threshold 0.5": reports["test_at_0.5"], "tuned per class": reports["test_tuned"]})
display(summary.drop(index=["labels_without_positives", "note"], errors="ignore"))
print(reports["test_tuned"]["note"] or "every label has positives in test")

# %%
per_class = evaluate.per_class_tables(inputs, probs, tuned_values)
evaluate.plot_per_class_f1(inputs, per_class);

# %%
evaluate.plot_pr_curves(inputs, probs);

# %%
evaluate.plot_confusion_counts(inputs, per_class);

# %% [markdown]
# **Calibration, after.** Are the probabilities honest? In the reliability diagram, the pairs
# predicted at about 0.8 should be right about 80% of the time; the expected calibration error (ECE)
# is the average gap. The raw outputs' diagram (section 1, `reliability_raw.png`) shows what class
# weights did; this one shows the calibrated probabilities on test, which the maps never saw.

# %%
fig, ece = evaluate.plot_reliability(inputs, probs)
print(f"expected calibration error on test: {ece:.3f} calibrated, "
      f"{ece_table.loc['test', 'ECE raw']:.3f} raw")

# %% [markdown]
# **Which labels get confused with which?** A cell (A, B) counts the test texts where label A was missed
# while label B was predicted wrongly: the model saw *something*, but named it B.

# %%
evaluate.plot_label_confusion(inputs, probs, tuned_values);

# %% [markdown]
# ## 4 · Misclassifications
#
# One row per test text with its true and predicted labels, the false positives and negatives, and
# all probabilities. Stage 05 explains these rows with integrated gradients.

# %%
errors = evaluate.save_misclassifications(inputs, probs, tuned_values)
print(f"{int((errors['n_errors'] > 0).sum())} of {len(errors)} test texts have at least one error")
for label in evaluate.worst_classes(per_class, n=3):
    for kind in ("fp", "fn"):
        print(f"\n{label}: most confident {'false positives' if kind == 'fp' else 'false negatives'}")
        display(misclassifications.worst_examples(errors, label, kind=kind, n=worst_n)[["source_id", "text"]])

# %% [markdown]
# ### The model's mistakes, or the labels'? A label audit on validation and test
#
# Some "false positives" are texts whose label is missing, and some "false negatives" carry a label
# they should not. 01 audited train and validation with a cross-validated TF-IDF model; here the same
# audit (cleanlab's multi-label `find_label_issues`) runs on the fine-tuned model's probabilities for
# validation and test, which it never trained on, so no cross-validation is needed. Each flagged
# (text, label) pair is **probably missing** (absent, the model is confident it applies) or **probably
# wrong** (given, the model is confident it does not), ranked by cleanlab's label-quality score,
# lowest first. Labels with fewer than `min_support` positives here are left out and counted. Nothing
# is changed: the metrics above still score the labels as given. The table is `label_audit.csv`,
# the summary `label_audit.json`.

# %%
from mlclf_utils.data import label_audit

audit_issues, audit_summary = label_audit.run_04(inputs, probs, min_support=min_support)
print({k: v for k, v in audit_summary.items() if k not in ("top_labels", "not_audited")})
display(label_audit.top_examples(audit_issues, n=5))

# %% [markdown]
# ## 5 · Baselines on the same splits
#
# * **TF-IDF + logistic regression**, one classifier per label with `class_weight="balanced"`, and its
#   thresholds tuned on validation exactly like ours;
# * **the frozen encoder + logistic regression**: the encoder 03 started from, never trained here, run
#   once over each text (the same token ids 03 saw); the mean of its token vectors is the text's
#   embedding (all-MiniLM-L6-v2 was trained for exactly that), and the same per-label logistic
#   regression, thresholds tuned the same way, reads it. It costs one forward pass per text; the gap
#   between it and our model is **what fine-tuning buys**, and the gap between it and TF-IDF is what
#   the pretrained encoder knows that word counts do not;
# * **the plain recipe**: the same encoder and hyperparameters, trained with unweighted BCE and read at
#   0.5, which is what `problem_type="multi_label_classification"` gives out of the box. When a sweep
#   on this data holds that exact recipe (its `none` combination), its model is reused and the column
#   says `from sweep ...`; otherwise it is fine-tuned here for `plain_budget` of 03's epochs, and the
#   column says so (for example `budget: 10% of 03's training`): a shorter training than ours, so read its gap as
#   an upper bound on what the class weights and tuned thresholds buy.

# %%
comparison = evaluate.compare_with_baselines(inputs, config, reports)  # plain: a sweep's, or a budget training
comparison

# %% [markdown]
# ## 6 · The model bundle
#
# Everything needed to use the model elsewhere, in one folder: weights (safetensors), tokenizer, label
# map, the tuned thresholds, and the preprocessing config (so that texts are cleaned exactly as in
# training).
#
# ```python
# from mlclf_utils.serving.predict import Classifier
# clf = Classifier.load("runs/<run-id>/04_evaluate/bundle")
# clf.predict(["A GTK image viewer with thumbnails"])
# ```
#
# or from a shell: `python -m mlclf_utils predict --model runs/<run-id>/04_evaluate/bundle "some text"`.
#
# With `export_onnx` the bundle also holds `model.onnx`, the same model for ONNX Runtime, checked
# against PyTorch as it is written: `Classifier.load(dir, backend="onnx")` or `predict --backend onnx`
# apply the same calibration and thresholds, several times faster on a CPU (docs/benchmarks.md). Its
# int8 version, `model.int8.onnx` (`quantize=True`), is kept only when its test macro-F1 at the tuned
# thresholds is within 0.5 points of fp32 (not validation's: the thresholds sit on its scores, where
# any shift flips texts); `bundle.json` records the verdict under `onnx`, and the cell below prints
# it with the bundle's files. Then the bundle is loaded back as a user would load it and asked about
# one test text: the labels it predicts, and its most probable labels beside their thresholds
# (`predict` returns every label's probability too, for code to use).

# %%
bundle_dir = evaluate.export_bundle(inputs, tuned_values, calibrator, reports, onnx=config.export_onnx)
evaluate.save_outputs(inputs, tuned, per_class, reports, comparison)  # thresholds, per-class table, report
print(bundle_summary.describe_bundle(bundle_dir))  # its files, and the ONNX fp32 / int8 checks
loaded = predict.Classifier.load(bundle_dir)
print(bundle_summary.describe_prediction(loaded, splits["test"]["text"][0], truth=y["test"][0]))

# %% [markdown]
# ## 7 · Which class weights? The sweep
#
# `pos_weight_strategy` and `pos_weight_floor` are choices, and the way to choose is to try them. The
# sweep command trains and evaluates (stages 03-04) once per combination, on the data of a finished
# run, each combination in a run directory and a process of its own:
#
# ```
# python -m mlclf_utils sweep --base runs/<run-id> --grid pos_weight_strategy=none,ratio,sqrt,damped --jobs 2
# ```
#
# The best combination is the one with the highest **validation** macro-F1. The test columns are there
# to read, not to choose by: picking the winner on test would make its test score optimistic. The
# combination `none` is the plain recipe with tuned thresholds; its `test_macro_f1_at_0.5` column is the
# plain recipe as it comes out of the box. The rarest labels are those with the fewest training
# positives: if class weights help anywhere, it is in their recall.

# %%
found = evaluate.load_sweep(inputs, config)
if found is None:
    print("No sweep on this run's data yet; run the command above, then this cell again.")
else:
    sweep_table, sweep_info = found
    print(f"sweep {sweep_info['sweep_id']}: {len(sweep_table)} combinations, best on validation:",
          sweep_info.get("best", {}).get("values"))
    display(sweep.summary(sweep_table))
    evaluate.plot_sweep(inputs, sweep_table)

# %% [markdown]
# ## 8 · Sanity check
#
# The comparison's structure, and whether the model beats chance, as names and booleans only: the test
# suite (nbval) compares this cell's output with its reference, so a change that breaks the table or
# stops the model from learning fails a test, while the numbers may still move a little.

# %%
# NBVAL_CHECK_OUTPUT
print(scoring.comparison_summary(comparison, y["test"], reference=evaluate.REFERENCE))
