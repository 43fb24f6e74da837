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
# 4. compares with two baselines on the same splits: TF-IDF + logistic regression, and the plain
#    recipe (BCE without `pos_weight`, read at 0.5);
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
plain_baseline = True       # type: bool  fine-tune the plain-recipe baseline (one more training run)
batch_size = 64             # type: int  texts per inference batch
worst_n = 3                 # type: int  worst examples shown per class
sweep_dir = None            # type: str|bool|None  a class-weight sweep to show; None: the newest on this data; False: none

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import display

from mlclf_utils import artifacts
from mlclf_utils.evaluation import baselines, calibration, plots, metrics, misclassifications, thresholds
from mlclf_utils.serving import bundle, predict
from mlclf_utils.data import dataset
from mlclf_utils.runner import runs, sweep
from mlclf_utils.modeling import train

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
run_dir = runs.resolve_run_dir(run_dir, "04_evaluate")
out_dir = runs.stage_dir(run_dir, "04_evaluate")
figures = out_dir / "figures"
model_dir = run_dir / train.STAGE / train.MODEL_DIR
data_dir = run_dir / dataset.STAGE / dataset.DATASET_DIR
splits = {name: dataset.load_split(data_dir / name)[0] for name in dataset.SPLITS}
labels = dataset.load_split(data_dir / "train")[1].labels
y = {name: np.asarray(split["labels"], dtype=np.int8) for name, split in splits.items()}
print("run directory:", run_dir.name, "| labels:", len(labels),
      "| validation:", len(y["validation"]), "| test:", len(y["test"]))

# %% [markdown]
# ## 1 · Probabilities for validation and test
#
# Each output goes through its own **sigmoid**, never a softmax: the labels are independent yes/no
# questions, and the probabilities of one text do not sum to one.

# %%
classifier = predict.Classifier.from_model_dir(model_dir)
probs = {name: classifier.predict_proba(splits[name]["text"], batch_size=batch_size, progress=True)
         for name in ("validation", "test")}
print("row sums of the test probabilities (not 1):", np.round(probs["test"].sum(axis=1)[:5], 2))

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
raw_probs = probs
calibrator, probs, ece_table = calibration.calibrate_splits(
    y, raw_probs, labels, method=calibration_method, min_support=min_support)
display(ece_table.round(4))
print({k: v for k, v in ece_table.attrs.items()} or "calibration is off (calibration_method=None)")
plots.reliability_diagram(y["test"], raw_probs["test"],
                                     path=figures / "reliability_raw.png");

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
tuned = thresholds.tune_thresholds(y["validation"], probs["validation"], labels,
                                   min_support=min_support, fallback=threshold_fallback,
                                   shrinkage=threshold_shrinkage)
tuned_values = thresholds.thresholds_array(tuned, labels)
display(tuned.sort_values("support").head(8))
print(tuned["source"].value_counts().to_string())

# %%
curves = thresholds.f1_threshold_curves(y["validation"], probs["validation"], labels)
by_support = tuned[tuned["support"] > 0].sort_values("support").index.tolist()
show = by_support[-2:] + by_support[:2]   # the two most and the two least frequent labels
plots.plot_f1_vs_threshold(curves, show, tuned, figures / "f1_vs_threshold.png");

# %% [markdown]
# ## 3 · Test metrics at 0.5 and at the tuned thresholds
#
# Micro averages pool every (text, label) decision, so frequent labels dominate; macro averages give
# every label the same say, so rare labels count. *Samples*-F1 averages per text. Subset accuracy asks
# for the exact label set, and Hamming loss is the share of wrong (text, label) decisions. ROC-AUC and
# average precision do not depend on any threshold. A label with no positives in test cannot have a
# recall or an AUC there: it is listed and left out of the macro averages, never counted as 0 or 1.

# %%
report_05 = metrics.multilabel_report(y["test"], probs["test"], labels, 0.5)
report_tuned = metrics.multilabel_report(y["test"], probs["test"], labels, tuned_values)
summary = pd.DataFrame({"threshold 0.5": report_05, "tuned per class": report_tuned})
display(summary.drop(index=["labels_without_positives", "note"], errors="ignore"))
print(report_tuned["note"] or "every label has positives in test")

# %%
per_class_05 = metrics.per_class_table(y["test"], probs["test"], labels, 0.5)
per_class_tuned = metrics.per_class_table(y["test"], probs["test"], labels, tuned_values)
plots.plot_per_class_f1(per_class_05, per_class_tuned, figures / "per_class_f1.png");

# %%
plots.plot_pr_curves(y["test"], probs["test"], labels, path=figures / "pr_curves.png");

# %%
plots.plot_confusion_counts(per_class_tuned, figures / "confusion_counts.png");

# %% [markdown]
# **Calibration, after.** Are the probabilities honest? In the reliability diagram, the pairs
# predicted at about 0.8 should be right about 80% of the time; the expected calibration error (ECE)
# is the average gap. The raw outputs' diagram (section 1, `reliability_raw.png`) shows what class
# weights did; this one shows the calibrated probabilities on test, which the maps never saw.

# %%
fig, ece = plots.reliability_diagram(y["test"], probs["test"], path=figures / "reliability.png")
print(f"expected calibration error on test: {ece:.3f} calibrated, "
      f"{ece_table.loc['test', 'ECE raw']:.3f} raw")

# %% [markdown]
# **Which labels get confused with which?** A cell (A, B) counts the test texts where label A was missed
# while label B was predicted wrongly: the model saw *something*, but named it B.

# %%
predicted_test = metrics.predict_with_thresholds(probs["test"], tuned_values)
confusion = plots.label_confusion(y["test"], predicted_test, labels)
plots.plot_label_confusion(confusion, figures / "label_confusion.png");

# %% [markdown]
# ## 4 · Misclassifications
#
# One row per test text with its true and predicted labels, the false positives and negatives, and
# all probabilities. Stage 05 explains these rows with integrated gradients.

# %%
errors = misclassifications.misclassification_table(
    splits["test"]["text"], splits["test"]["source_id"], y["test"], probs["test"], labels, tuned_values)
paths = misclassifications.save_misclassifications(errors, out_dir)
print(f"{int((errors['n_errors'] > 0).sum())} of {len(errors)} test texts have at least one error")
worst_classes = per_class_tuned.dropna(subset=["f1"]).sort_values("f1").index[:3]
for label in worst_classes:
    for kind in ("fp", "fn"):
        print(f"\n{label}: most confident {'false positives' if kind == 'fp' else 'false negatives'}")
        display(misclassifications.worst_examples(errors, label, kind=kind, n=worst_n)[["source_id", "text"]])

# %% [markdown]
# ## 5 · Baselines on the same splits
#
# * **TF-IDF + logistic regression**, one classifier per label with `class_weight="balanced"`, and its
#   thresholds tuned on validation exactly like ours;
# * **the plain recipe**: the same encoder and hyperparameters, trained with unweighted BCE and read at
#   0.5, which is what `problem_type="multi_label_classification"` gives out of the box.

# %%
tfidf = baselines.tfidf_logistic(splits["train"]["text"], y["train"],
                                 {"validation": splits["validation"]["text"], "test": splits["test"]["text"]})
tfidf_thresholds = thresholds.thresholds_array(
    thresholds.tune_thresholds(y["validation"], tfidf["validation"], labels,
                               min_support=min_support, fallback=threshold_fallback), labels)
reports = {"fine-tuned, tuned thresholds": report_tuned,
           "TF-IDF + LR, tuned thresholds": metrics.multilabel_report(y["test"], tfidf["test"], labels, tfidf_thresholds)}
if plain_baseline:
    trained = json.loads((model_dir / train.HYPERPARAMETERS_FILE).read_text())
    plain_dir = baselines.train_plain_bce(run_dir, trained, out_dir / "plain_bce")
    plain = predict.Classifier.from_model_dir(plain_dir)
    reports["plain BCE @ 0.5"] = metrics.multilabel_report(
        y["test"], plain.predict_proba(splits["test"]["text"], batch_size=batch_size), labels, 0.5)
comparison = metrics.compare_reports(reports, reference="fine-tuned, tuned thresholds")
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

# %%
preprocess_config = json.loads((data_dir / "train" / dataset.PREPROCESS_CONFIG_FILE).read_text())
bundle_dir = bundle.export_bundle(
    model_dir, out_dir / "bundle", thresholds=dict(zip(labels, map(float, tuned_values))),
    preprocess_config=preprocess_config, calibration=calibrator,
    metrics={k: v for k, v in report_tuned.items() if isinstance(v, (int, float))})
thresholds.save_thresholds(tuned, out_dir / "thresholds.json")
per_class_tuned.to_csv(out_dir / "per_class_test.csv")
report_validation = metrics.multilabel_report(y["validation"], probs["validation"], labels, tuned_values)
artifacts.write_json(out_dir / "report.json", {"test_at_0.5": report_05, "test_tuned": report_tuned,
                                          "validation_tuned": report_validation,
                                          "comparison": comparison.to_dict()})
loaded = predict.Classifier.load(bundle_dir)
loaded.predict(splits["test"]["text"][:3])

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
found = sweep.find_sweep(run_dir, sweep_dir)
if found is None:
    print("No sweep on this run's data yet; run the command above, then this cell again.")
else:
    sweep_table, sweep_info = sweep.load(found)
    print(f"sweep {sweep_info['sweep_id']}: {len(sweep_table)} combinations, best on validation:",
          sweep_info.get("best", {}).get("values"))
    display(sweep.summary(sweep_table))
    sweep.plot_f1(sweep_table, figures / "sweep_f1.png")
    sweep.plot_rare_labels(sweep_table, figures / "sweep_rare_labels.png")

# %% [markdown]
# ## 8 · Sanity check
#
# The comparison's structure, and whether the model beats chance, as names and booleans only: the test
# suite (nbval) compares this cell's output with its reference, so a change that breaks the table or
# stops the model from learning fails a test, while the numbers may still move a little.

# %%
# NBVAL_CHECK_OUTPUT
from mlclf_utils.evaluation import scoring

print(scoring.comparison_summary(comparison, y["test"], reference="fine-tuned, tuned thresholds"))
