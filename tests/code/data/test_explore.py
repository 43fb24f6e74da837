import pandas as pd
import pytest
from PIL import Image

from mlclf_utils.data import explore


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


# --- issue 12, item 7: figures stay readable (and drawable) with 50,000 labels -----------------

def test_figures_with_fifty_thousand_labels_show_the_most_frequent_and_say_so(tmp_path):
    labels = [[f"l{i:05d}", f"l{(i + 1) % 50000:05d}", "common"] for i in range(50000)]
    big = pd.DataFrame({"labels": labels})
    names = sorted({x for row in labels for x in row})
    fig = explore.plot_label_frequency(big, tmp_path / "f.png")
    assert "50001 labels" in fig.axes[0].get_title() and "top 50" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_yticklabels()) == 50
    fig = explore.plot_cooccurrence(big, names, tmp_path / "c.png")
    assert "50 most frequent of 50001" in fig.axes[0].get_title()
    assert Image.open(tmp_path / "c.png").size[0] < 5000
    shown = explore.cooccurrence(big, names, max_labels=40)
    assert shown.shape == (40, 40) and shown.index[0] == "common"
