import pandas as pd
import pytest
from PIL import Image

from mlclf_utils import explore


@pytest.fixture()
def table():
    return pd.DataFrame({
        "labels": [["a", "b"], ["a"], ["a", "b", "c"], ["c"]],
        "split": ["train", "train", "validation", "test"],
        "n_tokens": [10, 200, 30, 40],
    })


def test_label_counts_are_sorted_with_stable_ties(table):
    counts = explore.label_counts(table)
    assert counts.to_dict() == {"a": 3, "b": 2, "c": 2} and list(counts.index) == ["a", "b", "c"]


def test_cooccurrence_is_conditional_on_the_row_label(table):
    matrix = explore.cooccurrence(table, ["a", "b", "c"])
    assert matrix.loc["a", "b"] == pytest.approx(2 / 3)  # P(b | a)
    assert matrix.loc["b", "a"] == 1.0 and matrix.loc["c", "a"] == 0.5
    assert (matrix.values.diagonal() == 1).all()


@pytest.mark.parametrize("name", ["label_frequency", "labels_per_text", "cooccurrence", "token_lengths"])
def test_every_figure_is_saved_as_png(table, tmp_path, name):
    path = tmp_path / f"{name}.png"
    plot = getattr(explore, f"plot_{name}")
    if name == "cooccurrence":
        plot(table, ["a", "b", "c"], path)
    elif name == "token_lengths":
        plot(table, 128, path)
    else:
        plot(table, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200
