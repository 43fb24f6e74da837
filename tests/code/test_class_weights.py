import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mlclf_utils import class_weights as cw
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
    from mlclf_utils.loss import WeightedBCEWithLogits, bce_with_logits

    table = cw.compute_pos_weight(TARGETS, LABELS)
    criterion = WeightedBCEWithLogits(cw.weights_tensor(table))
    logits = torch.linspace(-3, 3, 40).reshape(10, 4)
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    torch.testing.assert_close(criterion(logits, targets),
                               bce_with_logits(logits, targets, pos_weight=cw.weights_tensor(table)))


@pytest.mark.parametrize("kwargs", [dict(strategy="sqrt"), dict(strategy="ratio", floor=0.5, cap=5)])
def test_plot_is_saved_as_png(tmp_path, kwargs):
    table = cw.compute_pos_weight(TARGETS, LABELS, **kwargs)
    path = tmp_path / "pos_weight.png"
    figure = cw.plot_pos_weights(table, path)
    assert figure.axes[0].get_xscale() == "log"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200
