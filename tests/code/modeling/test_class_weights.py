import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.modeling import class_weights as cw
from mlclf_utils.errors import DataError, ParameterError


def multi_hot(rows: int, positives: list[int]) -> np.ndarray:
    """Column c has positives[c] ones (in its first rows) and zeros below."""
    targets = np.zeros((rows, len(positives)), dtype=np.int64)
    for column, count in enumerate(positives):
        targets[:count, column] = 1
    return targets


# 10 train rows; ratios neg/pos: a 5/5 = 1, b 8/2 = 4, c 9/1 = 9, d 1/9.
TARGETS = multi_hot(10, [5, 2, 1, 9])
LABELS = ["a", "b", "c", "d"]


@pytest.mark.parametrize("strategy, expected", [
    ("none", [1, 1, 1, 1]),
    ("ratio", [1, 4, 9, 1 / 9]),
    ("sqrt", [1, 2, 3, 1 / 3]),
    ("damped", [1, 1 + math.log(4), 1 + math.log(9), 1 / 9]),
])
def test_hand_worked_weights_per_strategy(strategy, expected):
    table = cw.compute_pos_weight(TARGETS, LABELS, strategy=strategy, floor=None)
    assert list(table.columns) == cw.COLUMNS and list(table.index) == LABELS
    assert table.index.name == "label"
    assert table["positives"].tolist() == [5, 2, 1, 9]
    assert table["negatives"].tolist() == [5, 8, 9, 1]
    assert table["ratio"].tolist() == pytest.approx([1, 4, 9, 1 / 9])
    assert table["raw_weight"].tolist() == pytest.approx(expected)
    assert table["weight"].tolist() == pytest.approx(expected)
    assert (table["clipped"] == "").all()
    assert table.attrs["strategy"] == strategy


def test_floor_and_cap_are_applied_after_the_strategy_and_reported():
    table = cw.compute_pos_weight(TARGETS, LABELS, strategy="ratio", floor=0.5, cap=5)
    assert table["raw_weight"].tolist() == pytest.approx([1, 4, 9, 1 / 9])
    assert table["weight"].tolist() == pytest.approx([1, 4, 5, 0.5])
    assert table["clipped"].tolist() == ["", "", "cap", "floor"]


def test_default_is_sqrt_with_a_floor_of_one_half():
    table = cw.compute_pos_weight(TARGETS, LABELS)
    assert table.attrs["strategy"] == "sqrt" and table.attrs["floor"] == 0.5
    assert table.loc["d", "weight"] == 0.5 and table.loc["d", "clipped"] == "floor"


def test_bool_and_tensor_targets_are_accepted():
    expected = cw.compute_pos_weight(TARGETS, LABELS)
    pd.testing.assert_frame_equal(cw.compute_pos_weight(TARGETS.astype(bool), LABELS), expected)
    pd.testing.assert_frame_equal(cw.compute_pos_weight(torch.tensor(TARGETS), LABELS), expected)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 400).flatmap(
    lambda rows: st.tuples(st.just(rows), st.lists(st.integers(1, rows - 1), min_size=2, max_size=12))))
def test_damped_narrows_the_spread_of_ratio_and_keeps_the_order(case):
    rows, positives = case
    labels = [f"l{i}" for i in range(len(positives))]
    tables = {s: cw.compute_pos_weight(multi_hot(rows, positives), labels, strategy=s, floor=None)
              for s in ("ratio", "damped")}
    ratio, damped = tables["ratio"]["weight"], tables["damped"]["weight"]
    assert (damped > 0).all()
    spread_ratio, spread_damped = ratio.max() / ratio.min(), damped.max() / damped.min()
    assert spread_damped <= spread_ratio * (1 + 1e-12)
    if ratio.max() > 1 and ratio.max() > ratio.min():
        assert spread_damped < spread_ratio
    assert damped.rank(method="dense").tolist() == ratio.rank(method="dense").tolist()


def test_damped_pulls_a_long_tail_in_more_than_sqrt():
    # 10,000 texts; one label on half of them, the rarest on 1 text (ratio 9,999).
    table = {s: cw.compute_pos_weight(multi_hot(10_000, [5000, 500, 50, 5, 1]), list("abcde"),
                                      strategy=s, floor=None)["weight"] for s in cw.STRATEGIES}
    spread = {s: w.max() / w.min() for s, w in table.items()}
    assert spread["none"] == 1 < spread["damped"] < spread["sqrt"] < spread["ratio"]
    assert table["damped"]["e"] == pytest.approx(1 + math.log(9999))
    assert table["damped"]["e"] < table["sqrt"]["e"] / 9


def test_label_on_every_train_text_gets_ratio_zero_and_the_floor():
    table = cw.compute_pos_weight(multi_hot(4, [4, 1]), ["everywhere", "rare"], strategy="damped")
    assert table.loc["everywhere", "ratio"] == 0 and table.loc["everywhere", "raw_weight"] == 0
    assert table.loc["everywhere", "weight"] == 0.5 and table.loc["everywhere", "clipped"] == "floor"


# --------------------------------------------------------------------------- errors


def test_label_without_positives_is_named():
    with pytest.raises(DataError) as caught:
        cw.compute_pos_weight(multi_hot(6, [2, 0, 3]), ["a", "unseen", "c"])
    message = str(caught.value)
    assert "label 'unseen' has no positive example in the train split; pos_weight is undefined" in message
    with pytest.raises(DataError, match=r"labels 'x', 'z' have no positive example"):
        cw.compute_pos_weight(multi_hot(6, [0, 1, 0]), ["x", "y", "z"])


def test_unknown_strategy_names_the_parameter_and_the_choices():
    with pytest.raises(ParameterError) as caught:
        cw.compute_pos_weight(TARGETS, LABELS, strategy="inverse")
    assert caught.value.name == "pos_weight_strategy"
    assert all(choice in str(caught.value) for choice in cw.STRATEGIES)


@pytest.mark.parametrize("labels", [["a", "b", "c"], ["a", "b", "c", "d", "e"]])
def test_labels_must_match_the_columns(labels):
    with pytest.raises(ParameterError) as caught:
        cw.compute_pos_weight(TARGETS, labels)
    assert caught.value.name == "labels" and "4 columns" in str(caught.value)


@pytest.mark.parametrize("kwargs, name", [
    (dict(floor=0), "pos_weight_floor"),
    (dict(floor=-1.0), "pos_weight_floor"),
    (dict(floor=float("nan")), "pos_weight_floor"),
    (dict(cap=0), "pos_weight_cap"),
    (dict(floor=2.0, cap=1.0), "pos_weight_cap"),
])
def test_bad_floor_or_cap_is_named(kwargs, name):
    with pytest.raises(ParameterError) as caught:
        cw.compute_pos_weight(TARGETS, LABELS, **kwargs)
    assert caught.value.name == name


def test_bad_targets_are_reported():
    with pytest.raises(ParameterError, match="train_targets"):
        cw.compute_pos_weight(np.ones(4), LABELS)
    bad = TARGETS.copy()
    bad[7, 2] = 2
    with pytest.raises(DataError, match=r"row 7: .*0/1 multi-hot; found values \[2\]"):
        cw.compute_pos_weight(bad, LABELS)
    with pytest.raises(ParameterError, match="unique"):
        cw.compute_pos_weight(TARGETS, ["a", "b", "a", "d"])


# --------------------------------------------------------------------------- outputs


def test_weights_tensor_is_float32_in_label_order():
    table = cw.compute_pos_weight(TARGETS, LABELS, strategy="ratio", floor=None)
    tensor = cw.weights_tensor(table)
    assert tensor.dtype == torch.float32
    assert tensor.tolist() == pytest.approx([1, 4, 9, 1 / 9])


def test_json_round_trip_keeps_order_and_values(tmp_path):
    labels = ["zeta", "alpha", "mu", "beta"]  # not sorted: the order must survive as given
    table = cw.compute_pos_weight(TARGETS, labels, strategy="damped")
    path = cw.save_pos_weight(table, tmp_path / "model" / "pos_weight.json")
    loaded = cw.load_pos_weight(path)
    assert list(loaded) == labels
    assert loaded == table["weight"].to_dict()
    assert torch.equal(cw.weights_tensor(loaded), cw.weights_tensor(table))
    document = json.loads(path.read_text())
    assert document["strategy"] == "damped" and document["floor"] == 0.5 and document["cap"] is None


def test_loading_a_broken_file_names_it(tmp_path):
    with pytest.raises(DataError, match="pos_weight.json"):
        cw.load_pos_weight(tmp_path / "pos_weight.json")
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="broken.json"):
        cw.load_pos_weight(path)
    path.write_text(json.dumps({"pos_weight": {"a": -1}}))
    with pytest.raises(DataError, match="'a'"):
        cw.load_pos_weight(path)


def test_weights_feed_the_training_loss():
    from mlclf_utils.modeling.loss import WeightedBCEWithLogits, bce_with_logits

    table = cw.compute_pos_weight(TARGETS, LABELS)
    criterion = WeightedBCEWithLogits(cw.weights_tensor(table))
    logits = torch.linspace(-3, 3, 40).reshape(10, 4)
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    torch.testing.assert_close(criterion(logits, targets),
                               bce_with_logits(logits, targets, pos_weight=cw.weights_tensor(table)))


# --- Found by mutation testing (docs/mutation.md): changes no test above noticed.

def test_no_floor_and_no_cap_keep_the_raw_weights():
    targets = np.array([[1, 1], [1, 0], [1, 0], [0, 0]])  # ratios 1/3 and 3
    table = cw.compute_pos_weight(targets, ["common", "rare"], strategy="ratio", floor=None, cap=None)
    assert table["weight"].tolist() == pytest.approx([1 / 3, 3.0])
    assert table["clipped"].tolist() == ["", ""]
    assert table.attrs == {"strategy": "ratio", "floor": None, "cap": None, "n_train": 4}


def test_the_table_records_the_cap_and_the_number_of_train_texts():
    targets = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1]])
    table = cw.compute_pos_weight(targets, list("abc"), strategy="none", floor=0.5, cap=0.5)
    assert table.attrs == {"strategy": "none", "floor": 0.5, "cap": 0.5, "n_train": 3}  # cap == floor is fine
    assert table["weight"].dtype == np.float64 and table["weight"].tolist() == [0.5, 0.5, 0.5]


def test_repeated_and_missing_label_messages_name_exactly_the_offenders():
    with pytest.raises(ParameterError, match=r"\['b'\]") as info:
        cw.compute_pos_weight(np.ones((2, 3)), ["a", "b", "b"])
    assert info.value.name == "labels" and info.value.value == ["b"]
    names = [f"l{i:02d}" for i in range(12)]
    with pytest.raises(DataError) as info:
        cw.compute_pos_weight(np.c_[np.ones((3, 1)), np.zeros((3, 12))], ["ok", *names])
    message = str(info.value)
    assert "'l09'" in message and "'l10'" not in message and "and 2 more" in message
    assert "re-split" in message  # the hint says what to do


# --- issue 18: tests for the survivors of the mutation run "after" -----------------------

SMALL_TARGETS = np.array([[1, 0], [1, 1], [0, 1], [0, 1]])


@pytest.mark.parametrize("bound", ["pos_weight_floor", "pos_weight_cap"])
@pytest.mark.parametrize("value", [True, "1", 0, -1.0, float("inf"), float("nan")])
def test_bounds_refuse_non_numbers_and_non_positive_values(bound, value):
    kwargs = {"floor": None, "cap": None, bound.removeprefix("pos_weight_"): value}
    with pytest.raises(ParameterError, match="finite number > 0") as exc:
        cw.compute_pos_weight(SMALL_TARGETS, ["a", "b"], **kwargs)
    assert exc.value.name == bound
    assert exc.value.value is value or (value != value and exc.value.value != exc.value.value)


def test_compute_pos_weight_errors_name_the_parameter_and_value():
    cases = [
        (dict(strategy="log"), "pos_weight_strategy", "log"),
        (dict(floor=2.0, cap=1.0), "pos_weight_cap", 1.0),
        (dict(labels="ab"), "labels", "ab"),
        (dict(labels=["a", "a"]), "labels", ["a"]),
        (dict(labels=["a", "b", "c"]), "labels", "3 names"),
        (dict(targets=np.array([1, 0, 1])), "train_targets", "array of shape (3,)"),
        (dict(targets=np.array([["1", "0"]])), "train_targets", "array of dtype <U1"),
    ]
    for kwargs, name, value in cases:
        targets = kwargs.pop("targets", SMALL_TARGETS)
        labels = kwargs.pop("labels", ["a", "b"])
        with pytest.raises(ParameterError, match="must") as exc:
            cw.compute_pos_weight(targets, labels, **kwargs)
        assert (exc.value.name, exc.value.value) == (name, value)
        assert not str(exc.value).endswith("None")


def test_non_binary_targets_name_the_rows_and_say_how_they_count():
    with pytest.raises(DataError, match="found values \\[2\\]") as exc:
        cw.compute_pos_weight(np.array([[1, 0], [0, 1], [2, 1]]), ["a", "b"])
    assert exc.value.rows == [2] and "train split" in exc.value.hint


def test_a_torch_tensor_that_requires_grad_is_accepted():
    targets = torch.tensor(SMALL_TARGETS, dtype=torch.float32, requires_grad=True)
    table = cw.compute_pos_weight(targets, ["a", "b"], strategy="ratio", floor=None)
    assert table["weight"].tolist() == [1.0, pytest.approx(1 / 3)]


def test_table_dtypes_counts_are_integers_and_weights_floats():
    table = cw.compute_pos_weight(SMALL_TARGETS, ["a", "b"], strategy="none")
    assert table["positives"].dtype == np.int64 and table["negatives"].dtype == np.int64
    assert table["raw_weight"].dtype == np.float64 and table["weight"].dtype == np.float64
    assert table["raw_weight"].tolist() == [1.0, 1.0]


def test_weights_errors_name_the_table():
    with pytest.raises(ParameterError, match="needs a 'weight' column") as exc:
        cw.weights_tensor(pd.DataFrame({"ratio": [1.0]}, index=["a"]))
    assert (exc.value.name, exc.value.value) == ("table", "columns ['ratio']")
    with pytest.raises(ParameterError, match="label -> weight dict") as exc:
        cw.weights_tensor([1.0, 2.0])
    assert (exc.value.name, exc.value.value) == ("table", "list")


def test_save_pos_weight_round_trip_keeps_attrs_and_non_ascii_labels(tmp_path):
    table = cw.compute_pos_weight(SMALL_TARGETS, ["café", "b"], strategy="sqrt", floor=0.5, cap=3.0)
    path = tmp_path / "deep" / "model" / "pos_weight.json"
    cw.save_pos_weight(table, path)
    cw.save_pos_weight(table, path)  # an existing folder is fine
    text = path.read_bytes().decode("utf-8")
    assert '"café"' in text  # readable, not \u00e9
    document = json.loads(text)
    assert (document["strategy"], document["floor"], document["cap"]) == ("sqrt", 0.5, 3.0)
    assert cw.load_pos_weight(path) == {"café": table.loc["café", "weight"],
                                        "b": table.loc["b", "weight"]}


def test_save_pos_weight_from_a_dict_allows_zero_and_refuses_bad_weights(tmp_path):
    path = cw.save_pos_weight({"a": 0.0, "b": 2.0}, tmp_path / "w.json")
    assert json.loads(path.read_text())["strategy"] is None
    assert cw.load_pos_weight(path) == {"a": 0.0, "b": 2.0}
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="finite and non-negative") as exc:
            cw.save_pos_weight({"a": 1.0, "b": bad}, tmp_path / "bad.json")
        assert (exc.value.name, exc.value.value) == ("table", ["b"])
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize("text", [
    '["not", "an", "object"]',
    '{"pos_weight": [1.0]}',
    '{"pos_weight": {"a": true}}',
    '{"pos_weight": {"a": "1"}}',
    '{"pos_weight": {"a": NaN}}',
    '{"pos_weight": {"a": -0.5}}',
])
def test_load_pos_weight_refuses_bad_files_and_names_them(tmp_path, text):
    path = tmp_path / "pos_weight.json"
    path.write_text(text)
    with pytest.raises(DataError) as exc:
        cw.load_pos_weight(path)
    assert exc.value.file == str(path)
    assert exc.value.message and exc.value.message != "None"


def test_load_pos_weight_missing_file_says_what_and_how(tmp_path):
    with pytest.raises(DataError, match="pos_weight file not found") as exc:
        cw.load_pos_weight(tmp_path / "pos_weight.json")
    assert "save_pos_weight" in exc.value.hint
