"""The figures of the loss and of the class weights (modeling.plots), saved as PNG."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mlclf_utils.errors import ParameterError
from mlclf_utils.modeling import class_weights as cw
from mlclf_utils.modeling import plots

# 10 train rows; ratios neg/pos: a 5/5 = 1, b 8/2 = 4, c 9/1 = 9, d 1/9.
TARGETS = np.zeros((10, 4), dtype=np.int64)
for column, count in enumerate([5, 2, 1, 9]):
    TARGETS[:count, column] = 1
LABELS = ["a", "b", "c", "d"]


@pytest.mark.parametrize("plot", [plots.plot_stability, plots.plot_pos_weight_effect])
def test_loss_figures_are_saved_as_png(tmp_path, plot):
    path = tmp_path / "figures" / f"{plot.__name__}.png"
    figure = plot(path)
    assert figure.axes
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400


@pytest.mark.parametrize("kwargs", [dict(strategy="sqrt"), dict(strategy="ratio", floor=0.5, cap=5)])
def test_pos_weight_plot_is_saved_as_png(tmp_path, kwargs):
    table = cw.compute_pos_weight(TARGETS, LABELS, **kwargs)
    path = tmp_path / "pos_weight.png"
    figure = plots.plot_pos_weights(table, path)
    assert figure.axes[0].get_xscale() == "log"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200


def test_pos_weight_plot_refuses_a_table_that_is_not_compute_pos_weights():
    with pytest.raises(ParameterError, match="compute_pos_weight table"):
        plots.plot_pos_weights(pd.DataFrame({"weight": [1.0]}))


def test_the_stability_figure_marks_where_the_naive_form_fails():
    figure = plots.plot_stability(None)
    legends = [text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts()]
    assert any("naive = inf" in text for text in legends)
