"""Long texts as overlapping windows, on the real MiniLM tokenizer (issue 12, item 3)."""

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.data import windows
from mlclf_utils.data.dataset import build_dataset_dict
from mlclf_utils.data.label_map import LabelMap
from mlclf_utils.data.tokenization import tokenize_table
from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import encoders

CHUNKS = windows.WindowSettings(long_text="chunks", window_stride=4)


@pytest.fixture(scope="module")
def tokenizer():
    return encoders.load_tokenizer(encoders.DEFAULT_MODEL)


def numbered(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))  # two word pieces per word: 2n text tokens


def test_windows_cover_every_token_overlap_by_the_stride_and_keep_the_specials(tokenizer):
    ids = tokenizer(numbered(40))["input_ids"]
    body = ids[1:-1]
    pieces, left_out = windows.split_ids(ids, max_length=16, stride=4)
    assert left_out == 0 and len(pieces) > 1
    assert all(len(p) <= 16 for p in pieces)
    assert all(p[0] == tokenizer.cls_token_id and p[-1] == tokenizer.sep_token_id for p in pieces)
    inner = [p[1:-1] for p in pieces]
    for before, after in zip(inner, inner[1:]):
        assert before[-4:] == after[:4]  # neighbours share exactly the stride
    rebuilt = inner[0] + [t for piece in inner[1:] for t in piece[4:]]
    assert rebuilt == body  # every token, in order, none twice beyond the overlap


@pytest.mark.parametrize("n_words, max_length, stride", [
    (1, 16, 4), (7, 16, 4), (8, 16, 4), (40, 16, 4), (40, 16, 0), (40, 16, 13), (33, 20, 7)])
def test_the_windows_are_the_fast_tokenizers_overflowing_windows(tokenizer, n_words, max_length,
                                                                  stride):
    """Our slicing means what transformers' ``stride`` means with return_overflowing_tokens."""
    text = numbered(n_words)
    ids = tokenizer(text)["input_ids"]
    expected = tokenizer([text], truncation=True, max_length=max_length, stride=stride,
                         return_overflowing_tokens=True)["input_ids"]
    assert windows.split_ids(ids, max_length=max_length, stride=stride)[0] == expected


def test_a_short_text_gives_one_window_identical_to_truncation(tokenizer):
    texts = ["a short text", numbered(40)]
    truncated, _ = tokenize_table(pd.DataFrame({"text": texts}), tokenizer, max_length=16,
                                  progress=False)
    chunked, report = tokenize_table(pd.DataFrame({"text": texts}), tokenizer, max_length=16,
                                     progress=False, windows=CHUNKS)
    short = chunked[windows.WINDOW_IDS].iloc[0]
    assert len(short) == 1 and list(short[0]) == list(truncated["input_ids"].iloc[0])
    # The long text's first window is its truncation too, and input_ids is unchanged.
    assert list(chunked[windows.WINDOW_IDS].iloc[1][0]) == list(truncated["input_ids"].iloc[1])
    assert [list(x) for x in chunked["input_ids"]] == [list(x) for x in truncated["input_ids"]]
    assert windows.WINDOW_IDS not in truncated
    counts = report["windows"]
    n_long = len(windows.split_ids(tokenizer(texts[1])["input_ids"], max_length=16, stride=4)[0])
    assert counts["texts"] == 2 and counts["windows"] == 1 + n_long
    assert counts["texts_with_several_windows"] == 1
    assert counts["long_text"] == "chunks" and counts["window_stride"] == 4


def test_a_cap_on_windows_is_counted(tokenizer):
    ids = tokenizer(numbered(40))["input_ids"]  # 80 text tokens, 14 per window, step 10
    pieces, left_out = windows.split_ids(ids, max_length=16, stride=4, max_windows=3)
    assert len(pieces) == 3 and left_out == 80 - (20 + 14)
    capped = windows.split_texts([ids, ids[:5]], windows.WindowSettings(
        long_text="chunks", window_stride=4, max_windows=3), 16, tokenizer)
    assert capped.capped_texts == 1 and capped.tokens_left_out == left_out
    assert capped.owners.tolist() == [0, 0, 0, 1]


def test_truncate_mode_gives_one_window_per_text(tokenizer):
    ids = tokenizer(numbered(40))["input_ids"]
    split = windows.split_texts([ids], windows.WindowSettings(), 16, tokenizer)
    assert len(split) == 1 and split[0] == ids[:15] + [tokenizer.sep_token_id]


@pytest.mark.parametrize("values, name", [
    ({"long_text": "chunk"}, "long_text"), ({"window_stride": -1}, "window_stride"),
    ({"window_stride": 2.0}, "window_stride"), ({"max_windows": 0}, "max_windows"),
    ({"window_aggregation": "median"}, "window_aggregation")])
def test_bad_settings_are_named(values, name):
    with pytest.raises(ParameterError, match=name):
        windows.WindowSettings(**values)


def test_a_stride_must_leave_room_for_new_tokens(tokenizer):
    with pytest.raises(ParameterError, match="window_stride"):
        windows.WindowSettings(long_text="chunks", window_stride=14).check_fits(16)
    with pytest.raises(ParameterError, match="window_stride"):
        tokenize_table(pd.DataFrame({"text": ["x"]}), tokenizer, max_length=16, progress=False,
                       windows=windows.WindowSettings(long_text="chunks", window_stride=20))


def test_an_older_config_means_truncate():
    assert windows.WindowSettings.from_config({"max_length": 128}) == windows.WindowSettings()
    assert windows.for_classifier({"long_text": "truncate"}) is None
    assert windows.for_classifier(CHUNKS.to_dict()) == CHUNKS


def test_split_integrity_every_window_stays_in_its_texts_split(tokenizer):
    """02's rows: one per window, with the text's labels and split; no text in two splits."""
    rng = np.random.default_rng(0)
    texts = [numbered(int(n)) for n in rng.integers(1, 40, size=30)]
    splits = ["train"] * 20 + ["validation"] * 5 + ["test"] * 5
    label_sets = [["a"] if i % 2 else ["a", "b"] for i in range(30)]
    table = pd.DataFrame({"text": texts, "labels": label_sets, "split": splits,
                          "source_id": [f"t{i}" for i in range(30)]})
    table, report = tokenize_table(table, tokenizer, max_length=16, progress=False, windows=CHUNKS)
    data = build_dataset_dict(table, LabelMap(["a", "b"]))
    assert sum(len(data[s]) for s in data) == report["windows"]["windows"]
    owner_split = {}
    for split in data:
        rows = data[split]
        assert set(rows.column_names) >= {windows.TEXT_INDEX, windows.WINDOW_INDEX}
        for source_id, text_index, window_index, labels in zip(
                rows["source_id"], rows[windows.TEXT_INDEX], rows[windows.WINDOW_INDEX],
                rows["labels"]):
            assert owner_split.setdefault(source_id, split) == split
            position = int(source_id[1:])
            assert labels == [1.0, float(position % 2 == 0)]
        per_text = windows.text_rows(rows)
        assert per_text[windows.TEXT_INDEX] == list(range(len(per_text)))
        assert per_text["text"] == table.loc[table["split"] == split, "text"].tolist()
        assert windows.text_targets(rows).shape == (len(per_text), 2)
        owners = np.asarray(rows[windows.TEXT_INDEX])
        assert np.all(np.diff(owners) >= 0)  # grouped by text, in text order
    assert len(owner_split) == 30
