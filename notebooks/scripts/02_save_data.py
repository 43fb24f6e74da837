# %% [markdown]
# # 02 · Save the data: a Hugging Face `DatasetDict`, locally and on S3
#
# This stage turns the table from `01_preprocess` into the format the trainer reads: a
# `datasets.DatasetDict` with `train`, `validation` and `test` splits. Each row holds
#
# | column | meaning |
# |---|---|
# | `input_ids` | token ids, **unpadded** (the collator pads each batch to its longest text) |
# | `attention_mask` | ones, one per token |
# | `labels` | a float multi-hot vector of length $K$: `labels[k] = 1.0` when the text carries label $k$ |
# | `length` | the number of tokens, so that batches can group texts of similar length |
# | `text`, `source_id` | kept for the evaluation and explanation stages |
#
# `labels` is a float vector, not a class index: in multi-label classification each of the $K$ outputs
# is its own yes/no question, and `BCEWithLogitsLoss` wants float targets.
#
# Each split is saved in its own folder together with the label map, the preprocessing config and the
# class statistics. That is exactly the layout a SageMaker Hugging Face training job receives: the
# S3 prefix `s3://bucket/prefix/train` is mounted at `SM_CHANNEL_TRAIN`, and so on.

# %%
# Every notebook here runs on the project's kernel, "Python (mlclf)", which `make install` registers.
try:
    import mlclf_utils
except ModuleNotFoundError:
    raise ModuleNotFoundError('mlclf_utils is not importable: choose the kernel "Python (mlclf)" '
                              "(Kernel > Change Kernel); README, section JupyterLab") from None

# %% tags=["parameters"]
# Parameters (papermill overrides these).
run_dir = None     # type: str|None  None: the run your 01 started by hand (papermill: the latest); a new one if 02 ran there
s3_uri = None      # type: str|None  e.g. "s3://my-bucket/mlclf/debtags"; None keeps the data local

# %%
from mlclf_utils.data import dataset
from mlclf_utils.runner import runs
from mlclf_utils.stages import preprocess, save_data

runs.check_injected_parameters()  # a name papermill was given that this notebook does not take
config = save_data.Config.from_parameters(s3_uri=s3_uri)  # a malformed URI fails here
run_dir = runs.resolve_run_dir(run_dir, save_data.STAGE)
out_dir = runs.stage_dir(run_dir, save_data.STAGE)
table, label_map, preprocess_config = preprocess.load_artifacts(run_dir)
print("run directory:", run_dir.name, "| labels:", len(label_map), "| rows:", len(table))

# %% [markdown]
# ## 1 · Build the `DatasetDict`

# %%
dataset_dict = dataset.build_dataset_dict(table, label_map)
dataset_dict

# %%
example = dataset_dict["train"][0]
print(example["text"][:200])
print("labels:", label_map.from_multi_hot([example["labels"]])[0])
print("multi-hot:", example["labels"])

# %% [markdown]
# ## 2 · Class statistics
#
# Positives per label and split. Stage 03 derives the per-class positive weights from the **train**
# column only: the validation and test splits must not leak into training choices.

# %%
class_stats = dataset.class_statistics(table, label_map)
dataset.class_statistics_table(class_stats)

# %%
# NBVAL_CHECK_OUTPUT
class_stats["rows"]

# %% [markdown]
# ## 3 · Save locally

# %%
dataset_dir = save_data.save_local(run_dir, dataset_dict, label_map=label_map,
                                   class_stats=class_stats, preprocess_config=preprocess_config)
sorted(p.name for p in (dataset_dir / "train").iterdir())

# %% [markdown]
# ## 4 · Upload to S3 (optional)
#
# With `s3_uri` set, each split goes to `s3://bucket/prefix/<split>/`, and the upload is verified by
# listing the prefix and comparing every object's size and MD5 with the local file. Credentials come
# from the standard AWS chain (environment, shared config, or the instance role in SageMaker Studio);
# this notebook never reads or prints them.

# %%
channels = save_data.publish_channels(run_dir, config.s3_uri)  # written to channels.json
channels

# %% [markdown]
# `save_data.run(run_dir, save_data.Config(s3_uri=...))` does this notebook's steps in one call,
# for scripts and tests. Next: `03_train` reads `train` and `validation` from these channels.
