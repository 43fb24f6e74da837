"""What 03's training entry point says about its own loss (the real model runs in tests/model)."""

import torch

from mlclf_utils.modeling import class_weights, train


def test_the_probe_line_says_weighted_only_when_a_weight_is_not_one():
    """04's plain recipe (strategy none) printed "weighted BCE 0.114" while it trained with
    plain BCE (session 6's JupyterLab check)."""
    targets = [[1, 0], [0, 1], [0, 1], [0, 1]]
    plain = class_weights.weights_tensor(
        class_weights.compute_pos_weight(targets, ["a", "b"], strategy="none"))
    line = train.probe_line(502, 0.1144, plain)
    assert ", BCE 0.114;" in line and "weighted" not in line
    assert "of 502 train texts" in line
    weighted = class_weights.weights_tensor(
        class_weights.compute_pos_weight(targets, ["a", "b"], strategy="sqrt"))
    assert weighted.tolist() != [1.0, 1.0]
    assert ", weighted BCE 0.114;" in train.probe_line(3199, 0.1144, weighted)
    assert "of 3,199 train texts" in train.probe_line(3199, 0.1144, weighted)
    # A floor above 1 weighs every positive, even with the strategy none: still weighted.
    floored = torch.full((2,), 2.0)
    assert "weighted BCE" in train.probe_line(10, 0.2, floored)
