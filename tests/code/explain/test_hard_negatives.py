"""Tests for mlclf_utils.explain.hard_negatives on small hand-made data: exact word matching, the CSV,
the oversampled split and the before/after table."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlclf_utils.explain import hard_negatives as hn
from mlclf_utils.errors import DataError, MlclfError, ParameterError

TEXTS = [
    "A zorblat viewer",                 # 0 zorblat, has alpha
    "Zorblat, the fast editor",         # 1 zorblat (capitalised, comma), no alpha -> hard
    "zorblats everywhere",              # 2 a different word
    "the un-zorblat tool",              # 3 zorblat after punctuation, no alpha -> hard
    "plain text editor",                # 4 no zorblat
    "zorblat_x library",                # 5 underscore splits words: zorblat, no alpha -> hard
    "kettle and zorblat",               # 6 zorblat, has alpha and beta
    "kettle boils",                     # 7 beta only
]
LABELS = [["alpha"], ["beta"], [], ["beta"], [], [], ["alpha", "beta"], ["beta"]]
IDS = [f"data.csv:{i + 1}" for i in range(len(TEXTS))]


def test_exactly_the_texts_with_the_word_and_without_the_class():
    table = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")])
    assert list(table.columns) == hn.COLUMNS
    assert table["source_id"].tolist() == ["data.csv:2", "data.csv:4", "data.csv:6"]
    assert table["labels"].tolist() == [["beta"], ["beta"], []]
    assert set(table["token"]) == {"zorblat"} and set(table["class"]) == {"alpha"}
    assert "zorblat" in table["reason"].iloc[0] and "alpha" in table["reason"].iloc[0]


def test_several_pairs_a_text_can_appear_once_per_pair():
    table = hn.find_hard_negatives(TEXTS, LABELS, IDS,
                                   [("alpha", "ZORBLAT"), ("beta", "kettle"), ("beta", "zorblat")],
                                   reason="{token} without {class}")
    assert table[table["class"] == "beta"]["source_id"].tolist() == ["data.csv:1", "data.csv:6"]
    assert table["source_id"].tolist().count("data.csv:6") == 2
    assert table[table["class"] == "beta"]["reason"].iloc[0] == "zorblat without beta"
    empty = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("beta", "kettle")])
    assert empty.empty and list(empty.columns) == hn.COLUMNS


@pytest.mark.parametrize("pairs, match", [
    ([("alpha", "two words")], "one word"),
    ([("gamma", "zorblat")], "gamma"),
    ([("alpha",)], "two strings"),
    (("alpha", "zorblat"), "list of"),
])
def test_bad_pairs(pairs, match):
    with pytest.raises(ParameterError, match=match):
        hn.find_hard_negatives(TEXTS, LABELS, IDS, pairs)


def test_mismatched_lengths_and_string_label_sets():
    with pytest.raises(DataError, match="train_source_ids"):
        hn.find_hard_negatives(TEXTS, LABELS, IDS[:-1], [("alpha", "zorblat")])
    with pytest.raises(DataError, match="not a string"):
        hn.find_hard_negatives(TEXTS[:2], ["alpha", "beta"], IDS[:2], [("alpha", "zorblat")])


def test_csv(tmp_path):
    table = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat"), ("beta", "zorblat")])
    path = hn.save_hard_negatives(table, tmp_path / "sub" / "hard_negatives.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(back.columns) == hn.COLUMNS
    assert back["labels"].tolist()[:3] == ["beta", "beta", ""]
    assert back["text"].tolist() == table["text"].tolist()
    bad = table.copy()
    bad.at[0, "labels"] = ["a,b"]
    with pytest.raises(DataError, match="comma|','"):
        hn.save_hard_negatives(bad, tmp_path / "bad.csv")


def _save_split(folder, texts, label_lists, labels):
    import datasets

    from mlclf_utils.data.label_map import LabelMap
    from mlclf_utils.artifacts import write_json

    label_map = LabelMap(labels)
    ds = datasets.Dataset.from_dict({
        "input_ids": [[101, 7 + i, 102] for i in range(len(texts))],
        "attention_mask": [[1, 1, 1]] * len(texts),
        "labels": list(label_map.to_multi_hot(label_lists)),
        "length": [3] * len(texts),
        "text": texts,
        "source_id": [f"data.csv:{i + 1}" for i in range(len(texts))],
    })
    ds.save_to_disk(str(folder))
    label_map.to_json(folder / "label_map.json")
    write_json(folder / "class_stats.json", {"labels": labels, "rows": {"train": len(texts)},
                                             "positives": {"train": [0, 0]}})
    write_json(folder / "preprocess_config.json", {"max_length": 8})
    return folder


def test_oversampled_split_row_counts(tmp_path):
    from mlclf_utils.data.dataset import load_split

    train = _save_split(tmp_path / "train", TEXTS, LABELS, ["alpha", "beta"])
    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")])
    out = hn.oversampled_train_split(train, hard["source_id"], tmp_path / "over", factor=3)
    split, label_map = load_split(out)
    assert label_map.labels == ["alpha", "beta"]
    assert len(split) == len(TEXTS) + 3 * 2
    counts = pd.Series(split["source_id"]).value_counts()
    assert {sid: counts[sid] for sid in hard["source_id"]} == dict.fromkeys(hard["source_id"], 3)
    assert counts.drop(hard["source_id"].tolist()).eq(1).all()
    config = "preprocess_config.json"
    assert (out / config).read_text() == (train / config).read_text()
    stats = json.loads((out / "class_stats.json").read_text())
    assert stats["rows"]["train"] == len(split)
    positives = np.asarray(split["labels"]).sum(axis=0).astype(int).tolist()
    assert stats["positives"]["train"] == positives
    assert stats["oversampling"]["rows_added"] == 6
    # The rows are copies of the originals, features and all.
    first = split.filter(lambda r: r["source_id"] == "data.csv:2")
    assert {tuple(r["input_ids"]) for r in first} == {(101, 8, 102)}


def test_oversampled_split_factor_one_and_errors(tmp_path):
    train = _save_split(tmp_path / "train", TEXTS, LABELS, ["alpha", "beta"])
    out = hn.oversampled_train_split(train, ["data.csv:2", "data.csv:2"], tmp_path / "one",
                                     factor=1)
    from mlclf_utils.data.dataset import load_split

    assert len(load_split(out)[0]) == len(TEXTS)
    with pytest.raises(MlclfError, match="not empty"):
        hn.oversampled_train_split(train, ["data.csv:2"], out)
    with pytest.raises(DataError, match="nope"):
        hn.oversampled_train_split(train, ["nope"], tmp_path / "x")
    with pytest.raises(ParameterError, match="factor"):
        hn.oversampled_train_split(train, ["data.csv:2"], tmp_path / "y", factor=0)
    with pytest.raises(ParameterError, match="hard_negative_source_ids"):
        hn.oversampled_train_split(train, "data.csv:2", tmp_path / "z")


def test_compare_before_after():
    from mlclf_utils.evaluation import metrics

    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    before_p = np.array([[0.9, 0.1], [0.8, 0.9], [0.7, 0.8], [0.6, 0.2]])  # alpha: 2 FPs
    after_p = np.array([[0.9, 0.1], [0.2, 0.9], [0.7, 0.8], [0.1, 0.2]])   # alpha: none
    names = ["alpha", "beta"]
    before = {"per_class": metrics.per_class_table(y, before_p, names, 0.5),
              "report": metrics.multilabel_report(y, before_p, names, 0.5)}
    after = metrics.per_class_table(y, after_p, names, 0.5)  # a bare table works too
    table = hn.compare_before_after(before, after, ["alpha"])
    assert table["metric"].tolist() == ["precision", "recall", "macro_f1"]
    precision = table.iloc[0]
    assert precision["before"] == pytest.approx(0.5) and precision["after"] == pytest.approx(1.0)
    assert precision["change"] == pytest.approx(0.5)
    macro = table.iloc[-1]
    assert macro["before"] == pytest.approx(before["report"]["macro_f1"])
    assert macro["after"] == pytest.approx(metrics.multilabel_report(y, after_p, names)["macro_f1"])
    with pytest.raises(ParameterError, match="gamma"):
        hn.compare_before_after(before, after, ["gamma"])
    with pytest.raises(ParameterError, match="per_class_table"):
        hn.compare_before_after({"macro_f1": 0.3}, after, ["alpha"])


# --- issue 12, item 4: a hard negative the label audit flags is a label to review -------------

def _label_audit_table(rows):
    """01's label audit table (data.label_audit's layout) holding ``rows`` of (id, label, issue)."""
    from mlclf_utils.data import label_audit

    return pd.DataFrame([{"rank": k + 1, "source_id": sid, "split": "train", "text": "t",
                          "label": label, "given": label_audit.ABSENT if issue ==
                          label_audit.MISSING else label_audit.PRESENT,
                          "probability": 0.97, "issue": issue, "score": 0.03 + k / 100,
                          "text_score": 0.1} for k, (sid, label, issue) in enumerate(rows)],
                        columns=label_audit.COLUMNS)


def test_a_hard_negative_flagged_as_probably_missing_is_set_aside_and_reported(tmp_path):
    from mlclf_utils.data.label_audit import MISSING, WRONG

    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat"), ("beta", "zorblat")])
    audit = _label_audit_table([
        ("data.csv:2", "alpha", MISSING),  # a hard negative for alpha: set aside
        ("data.csv:4", "beta", MISSING),  # carries beta already: not a hard negative for it
        ("data.csv:6", "alpha", WRONG),  # another kind: kept
        ("data.csv:6", "beta", MISSING),  # for beta, not alpha: only that row is set aside
    ])
    kept, review = hn.set_aside_flagged(hard, audit)
    assert len(kept) + len(review) == len(hard)
    assert list(zip(review["source_id"], review["class"])) == [("data.csv:2", "alpha"),
                                                               ("data.csv:6", "beta")]
    assert ("data.csv:2", "alpha") not in set(zip(kept["source_id"], kept["class"]))
    assert ("data.csv:6", "alpha") in set(zip(kept["source_id"], kept["class"]))
    assert list(review.columns) == hn.REVIEW_COLUMNS
    assert "probably missing" in review["reason"].iloc[0]
    note = hn.review_note(kept, review)
    assert f"{len(kept)} hard negatives kept" in note and "2 set aside" in note
    path = hn.save_labels_to_review(review, tmp_path / "labels_to_review.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back["source_id"].tolist() == ["data.csv:2", "data.csv:6"]
    assert back["probability"].astype(float).tolist() == [0.97, 0.97]


def test_without_a_label_audit_nothing_is_set_aside_and_it_says_so():
    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")])
    kept, review = hn.set_aside_flagged(hard, None)
    assert review is None and kept.equals(hard)
    assert "none checked" in hn.review_note(kept, review)
    with pytest.raises(DataError, match="label audit"):
        hn.set_aside_flagged(hard, pd.DataFrame({"source_id": ["x"]}))


LONG = ("a graphical zorblat frontend for the command line tools of the kettle suite, with a "
        "settings dialog, a tray icon and a manual")


def test_the_notebook_view_shows_every_cell_whole_a_few_rows_per_pair():
    """05 displayed head(10): every row from the first pair, text and reason cut at 50 chars."""
    texts = [LONG, LONG, LONG, "zorblat kettle", "zorblat kettle", "an alpha text"]
    labels = [[], [], ["beta", "gamma"], ["beta"], [], ["alpha"]]
    table = hn.find_hard_negatives(texts, labels, [f"r{i}" for i in range(6)],
                                   [("alpha", "zorblat"), ("beta", "kettle")])
    assert len(table) == 5 + 3
    view = hn.table_view(table, per_pair=3)
    html, text = view._repr_html_(), repr(view)
    reason = table["reason"].iloc[0]
    assert len(reason) > 50 and len(LONG) > 50
    for shown in (html, text):
        assert reason in shown and LONG in shown
        assert "6 of 8 rows: at most 3 for each of the 2 (class, word) pairs" in shown
    assert view.frame["class"].tolist() == ["alpha"] * 3 + ["beta"] * 3
    assert view.frame["labels"].tolist() == ["(none)", "(none)", "beta, gamma"] + ["(none)"] * 3
    assert pd.get_option("display.max_colwidth") == 50  # lifted only while rendering
    assert "no rows" in repr(hn.table_view(table.iloc[:0]))
    with pytest.raises(DataError, match="table"):
        hn.table_view(table.drop(columns="reason"))
    with pytest.raises(ParameterError, match="per_pair"):
        hn.table_view(table, per_pair=0)


def test_the_review_view_keeps_the_audit_numbers_rounded():
    from mlclf_utils.data.label_audit import MISSING

    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")])
    _, review = hn.set_aside_flagged(hard, _label_audit_table([("data.csv:2", "alpha", MISSING)]))
    view = hn.table_view(review)
    assert list(view.frame.columns)[-2:] == ["probability", "score"]
    assert review["reason"].iloc[0] in view._repr_html_()
    assert view.frame["probability"].tolist() == [round(float(review["probability"].iloc[0]), 3)]


def _cells(html: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag} style=\"([^\"]*)\">", html)


def test_the_view_reads_left_to_right_within_the_output_width():
    """05's texts were right-aligned in columns a few words wide (35 lines a row, 1097 px in a
    953 px output): cells are left- and top-aligned now, the table as wide as the output, the
    short columns fixed, and the text column takes the rest; long words wrap in their cell."""
    texts = [LONG, "zorblat kettle", "an alpha text"]
    table = hn.find_hard_negatives(texts, [["works-with::software:source"], [], ["alpha"]],
                                   ["r0", "r1", "r2"], [("alpha", "zorblat")])
    html = hn.table_view(table)._repr_html_()
    cells = _cells(html, "td") + _cells(html, "th")
    assert len(cells) == 3 * len(hn.VIEW_COLUMNS)  # header and two rows, no index column
    for style in cells:
        assert "text-align: left" in style and "vertical-align: top" in style
        assert "overflow-wrap: break-word" in style  # a word too long for its cell wraps
    table_style = re.search(r"<table style=\"([^\"]*)\"", html).group(1)
    assert "table-layout: fixed" in table_style and "width: 100%" in table_style
    widths = re.findall(r"<col(?: style=\"width: (\d+)%\")?>", html)
    assert len(widths) == len(hn.VIEW_COLUMNS)
    named = dict(zip(hn.VIEW_COLUMNS, widths))
    assert named["text"] == "" and all(named[c] for c in hn.VIEW_COLUMNS if c != "text")
    assert 100 - sum(int(w) for w in widths if w) >= 40  # the text column keeps 40% or more
    assert LONG in html and "contains 'zorblat'" in html  # whole, and quotes not escaped
    assert "works-with::<wbr>software:<wbr>source" in html  # a label wraps at its colons


def test_an_empty_view_is_one_line_not_a_header_without_rows():
    table = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")]).iloc[:0]
    html = hn.table_view(table)._repr_html_()
    assert "<table" not in html and html.count("no rows") == 1


def test_the_wording_counts_one_pair_and_none_set_aside_plainly():
    from mlclf_utils.data.label_audit import WRONG

    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, [("alpha", "zorblat")])
    caption = hn.table_view(hard).caption
    assert "for its one (class, word) pair" in caption and "1 (class, word) pairs" not in caption
    kept, review = hn.set_aside_flagged(hard, _label_audit_table([("data.csv:2", "alpha", WRONG)]))
    note = hn.review_note(kept, review, [("alpha", "zorblat")])
    assert note.startswith("3 hard negatives kept for 1 suspicious (class, word) pair; ")
    assert "none set aside" in note and "0 set aside" not in note and "because" not in note
    one = hn.review_note(kept.iloc[:1], review, [("alpha", "zorblat"), ("beta", "kettle")])
    assert one.startswith("1 hard negative kept for 2 suspicious (class, word) pairs; ")


# --- session 7: the note counts the pairs as the token audit's line does ---------------------

def _token_audit(suspicious: dict):
    """05's token audit, as far as the note reads it: (class, token) rows and ``suspicious``."""
    index = pd.MultiIndex.from_tuples(list(suspicious), names=["class", "token"])
    return pd.DataFrame({"suspicious": list(suspicious.values())}, index=index)


AUDIT = _token_audit({("alpha", "zorblat"): True, ("beta", "boils"): True,
                      ("beta", "kettle"): True, ("alpha", "plain"): False})


def test_the_note_says_max_pairs_cut_the_suspicious_pairs_and_which_found_none():
    """05's audit said "9 of 120 (class, word) pairs are suspicious", then this line "for 8
    suspicious (class, word) pairs": max_pairs = 8 had cut the list, and the line did not say."""
    pairs = [("alpha", "zorblat"), ("beta", "boils")]  # the first 2 of the audit's 3
    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, pairs)
    assert set(hard["token"]) == {"zorblat"}  # "kettle boils" carries beta: none for boils
    kept, review = hn.set_aside_flagged(hard, None)
    note = hn.review_note(kept, review, pairs, audit=AUDIT, max_pairs=2)
    assert note.startswith("3 hard negatives kept for the first 2 of the 3 suspicious "
                           "(class, word) pairs (max_pairs = 2); 1 of those 2 found no hard "
                           "negative; none checked against a label audit"), note
    every = hn.review_note(kept, review, pairs, audit=AUDIT.iloc[[0, 1, 3]], max_pairs=8)
    assert every.startswith("3 hard negatives kept for 2 suspicious (class, word) pairs; "
                            "1 of those 2 found no hard negative; "), every
    assert "max_pairs" not in every and "first" not in every  # nothing was cut
    alone = hn.review_note(kept.iloc[:0], review, [("beta", "boils")])
    assert alone.startswith("0 hard negatives kept for 1 suspicious (class, word) pair; "
                            "it found no hard negative; "), alone
    both = hn.review_note(kept.iloc[:0], review, [("beta", "boils"), ("alpha", "viewers")])
    assert "; none of the 2 found a hard negative; " in both
    with pytest.raises(DataError, match="suspicious"):
        hn.review_note(kept, review, pairs, audit=AUDIT.drop(columns="suspicious"))


def test_a_pair_whose_hard_negatives_all_went_to_review_did_find_some():
    from mlclf_utils.data.label_audit import MISSING

    pairs = [("alpha", "zorblat"), ("beta", "zorblat")]
    hard = hn.find_hard_negatives(TEXTS, LABELS, IDS, pairs)
    beta = hard.loc[hard["class"] == "beta", "source_id"].tolist()
    assert beta  # the texts with zorblat and without beta
    kept, review = hn.set_aside_flagged(hard, _label_audit_table(
        [(sid, "beta", MISSING) for sid in beta]))
    assert set(kept["class"]) == {"alpha"} and set(review["class"]) == {"beta"}
    note = hn.review_note(kept, review, pairs, audit=_token_audit(dict.fromkeys(pairs, True)))
    assert note.startswith("3 hard negatives kept for 2 suspicious (class, word) pairs; "
                           f"{len(beta)} set aside as labels to review"), note
    assert "found no hard negative" not in note
    # The audit spells words as words_of does; a pair typed otherwise is the same pair.
    same = hn.review_note(kept, review, [("alpha", "Zorblat"), ("beta", "zorblat")])
    assert "found no hard negative" not in same
