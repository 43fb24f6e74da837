"""01-04 with ``long_text="chunks"`` on the smoke CSV and the tiny model (issue 12, item 3):
01 writes the windows and counts them, 02 makes a row per window in the text's split, 03 trains
on them, 04 scores one row per text and the bundle reads long texts the same way."""

import json

import numpy as np
import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.data import windows
from mlclf_utils.modeling import encoders
from mlclf_utils.serving import bundle
from mlclf_utils.serving.predict import Classifier
from mlclf_utils.stages import evaluate, preprocess, save_data, train

SMOKE_03 = dict(epochs=1, batch_size=16, max_steps=4, eval_steps=4, learning_rate=1e-3,
                bf16=False, teaching=False)


@pytest.fixture(scope="module")
def chunked_run(tmp_path_factory, smoke_csv, tiny_model_dir):
    run_dir = tmp_path_factory.mktemp("long-text") / "run"
    config = preprocess.Config(source=str(smoke_csv), text_column="description",
                               labels_column="tags", sample_size=None, min_label_count=5,
                               model_name=encoders.TINY_MODEL, max_length=24,
                               long_text="chunks", window_stride=6)
    preprocess.run(run_dir, config)
    save_data.run(run_dir, save_data.Config())
    return run_dir


def test_01_writes_the_windows_and_counts_them(chunked_run):
    table, _, config = preprocess.load_artifacts(chunked_run)
    assert config["long_text"] == "chunks" and config["window_stride"] == 6
    counts = preprocess.read_report(chunked_run)["tokens"]["windows"]
    per_text = table[windows.WINDOW_IDS].map(len)
    assert counts["texts"] == len(table) and counts["windows"] == int(per_text.sum())
    assert counts["texts_with_several_windows"] == int((per_text > 1).sum()) > 0
    assert ((table["n_tokens"] > 24) == (per_text > 1)).all()
    assert all(len(w) <= 24 for ws in table[windows.WINDOW_IDS] for w in ws)
    # 02: a row per window, every window in its text's split.
    for split in artifacts.SPLITS:
        rows = pd.DataFrame(save_data_split(chunked_run, split).to_dict())
        texts = table[table["split"] == split]
        assert len(rows) == int(texts[windows.WINDOW_IDS].map(len).sum())
        assert set(rows["source_id"]) == set(texts["source_id"])


def save_data_split(run_dir, split):
    from mlclf_utils.data import dataset

    return dataset.load_split(save_data.split_dir(run_dir, split))[0].select_columns(
        ["source_id", windows.TEXT_INDEX, windows.WINDOW_INDEX])


def test_03_and_04_train_on_windows_and_score_texts(chunked_run):
    train.run(chunked_run, train.Config(**SMOKE_03))
    train_split, validation_split, label_map = train.load_splits(chunked_run)
    assert len(train_split) == len(set(train_split["source_id"]))  # one row per text
    weights_input = train.train_targets(save_data_split_full(chunked_run, "train"))
    assert len(weights_input) == len(train_split)  # pos_weight counts texts, not windows

    summary = evaluate.run(chunked_run, evaluate.Config.from_params(
        {"plain_baseline": False, "frozen_baseline": False}))
    errors = evaluate.read_misclassifications(chunked_run)
    table, _, _ = preprocess.load_artifacts(chunked_run)
    assert len(errors) == int((table["split"] == "test").sum())
    manifest = json.loads((artifacts.path(chunked_run, evaluate.STAGE, artifacts.BUNDLE_DIR)
                           / bundle.MANIFEST_FILE).read_text())
    assert manifest["long_text"] == "chunks" and manifest["window_stride"] == 6
    loaded = Classifier.load(summary["bundle"])
    assert loaded.windows == windows.WindowSettings(long_text="chunks", window_stride=6)
    long_text = table.loc[table["n_tokens"].idxmax(), "text"]
    probs = loaded.predict_proba([long_text, "a short text"])
    assert probs.shape == (2, len(label_map)) and np.isfinite(probs).all()


def save_data_split_full(run_dir, split):
    from mlclf_utils.data import dataset

    return dataset.load_split(save_data.split_dir(run_dir, split))[0]
