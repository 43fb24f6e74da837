import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlclf_utils.modeling import loss
from mlclf_utils.errors import ParameterError



def reference(logits, targets, weight=None, pos_weight=None, reduction="mean"):
    return F.binary_cross_entropy_with_logits(logits, targets, weight=weight, pos_weight=pos_weight,
                                              reduction=reduction)


# --------------------------------------------------------------------------- hand-worked cases

LOG3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, so every term below has a closed form


def test_hand_worked_values_without_weights():
    logits = torch.tensor([[0.0, LOG3], [LOG3, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[math.log(2), math.log(4 / 3)], [math.log(4), math.log(2)]], dtype=torch.float64)
    assert torch.allclose(loss.bce_with_logits(logits, targets, reduction="none"), expected)
    assert loss.bce_with_logits(logits, targets).item() == pytest.approx(expected.mean().item())
    total = loss.bce_with_logits(logits, targets, reduction="sum").item()
    assert total == pytest.approx(expected.sum().item())


def test_hand_worked_pos_weight_scales_only_positives_and_weight_scales_everything():
    logits = torch.tensor([[LOG3, LOG3]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    pos_weight = torch.tensor([2.0, 5.0], dtype=torch.float64)  # 5 must not touch the negative
    got = loss.bce_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    assert got[0].tolist() == pytest.approx([2 * math.log(4 / 3), math.log(4)])
    weight = torch.tensor([3.0, 0.5], dtype=torch.float64)
    got = loss.bce_with_logits(logits, targets, weight=weight, pos_weight=pos_weight, reduction="none")
    assert got[0].tolist() == pytest.approx([6 * math.log(4 / 3), 0.5 * math.log(4)])


def test_soft_target_mixes_both_terms():
    got = loss.bce_with_logits(torch.tensor([[LOG3]], dtype=torch.float64),
                               torch.tensor([[0.25]], dtype=torch.float64), reduction="none")
    assert got.item() == pytest.approx(0.25 * math.log(4 / 3) + 0.75 * math.log(4))


@pytest.mark.parametrize("reduction", loss.REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (3,), (2, 3), (2, 1)])
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_every_variant_matches_pytorch_on_a_fixed_batch(reduction, weight_shape, with_pos_weight):
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 3, generator=generator, dtype=torch.float64) * 4
    targets = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0]], dtype=torch.float64)
    weight = None if weight_shape is None else torch.rand(weight_shape, generator=generator,
                                                          dtype=torch.float64)
    pos_weight = torch.tensor([0.5, 3.0, 20.0], dtype=torch.float64) if with_pos_weight else None
    ours = loss.bce_with_logits(logits, targets, weight=weight, pos_weight=pos_weight, reduction=reduction)
    theirs = reference(logits, targets, weight, pos_weight, reduction)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- property test


@st.composite
def batches(draw):
    n, c = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    width = 64 if dtype == torch.float64 else 32
    logits = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-100, 100, width=width)))
    if draw(st.booleans()):
        targets = draw(hnp.arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 1.0])))
    else:
        targets = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1, width=width)))
    weight_shape = draw(st.sampled_from([None, (c,), (n, c), (n, 1)]))
    weight = None if weight_shape is None else draw(
        hnp.arrays(np.float64, weight_shape, elements=st.floats(0, 10, width=width)))
    pos_weight = draw(st.none() | hnp.arrays(
        np.float64, (c,), elements=st.floats(0, 50, exclude_min=True, width=width)))
    reduction = draw(st.sampled_from(loss.REDUCTIONS))

    def tensor(array):
        return None if array is None else torch.tensor(array, dtype=dtype)

    return tensor(logits), tensor(targets), tensor(weight), tensor(pos_weight), reduction


def error_bound(dtype, logits, targets, weight, pos_weight, reduction, upstream):
    """A few ulps of the size of the terms being added, for the loss and for its gradient.

    Both forms add terms of size ~ w (1 + p) (|x| + 1) that can cancel (soft targets), so a
    bound relative to the result alone would demand more than float arithmetic can give.
    """
    w = torch.ones_like(logits) if weight is None else weight.expand_as(logits)
    p = torch.ones(logits.shape[-1], dtype=logits.dtype) if pos_weight is None else pos_weight
    term = w * (1 + p)
    size = term * (logits.abs() + 1)
    if reduction == "none":
        loss_size, grad_size = size, term * upstream.abs()
    elif reduction == "sum":
        loss_size, grad_size = size.sum(), term * upstream.abs()
    else:
        loss_size, grad_size = size.mean(), term * upstream.abs() / logits.numel()
    ulps, tiny = 16 * torch.finfo(dtype).eps, 16 * torch.finfo(dtype).tiny  # tiny: subnormal weights
    return ulps * loss_size + tiny, ulps * grad_size + tiny


def assert_within(actual, expected, bound):
    excess = (actual.double() - expected.double()).abs() - bound.double()
    assert (excess <= 0).all(), f"off by {excess.max().item():.3g} beyond the bound"


@settings(max_examples=50, deadline=None)
@given(batches())
def test_formula_and_its_gradient_match_pytorch(batch):
    logits, targets, weight, pos_weight, reduction = batch
    ours_x = logits.clone().requires_grad_(True)
    theirs_x = logits.clone().requires_grad_(True)
    ours = loss.bce_with_logits(ours_x, targets, weight=weight, pos_weight=pos_weight, reduction=reduction)
    theirs = reference(theirs_x, targets, weight, pos_weight, reduction)
    assert ours.shape == theirs.shape and torch.isfinite(ours).all()
    # The same upstream gradient for both, so "none" is checked elementwise too.
    upstream = torch.linspace(0.5, 1.5, ours.numel(), dtype=logits.dtype).reshape(ours.shape)
    (ours_grad,) = torch.autograd.grad(ours, ours_x, upstream)
    (theirs_grad,) = torch.autograd.grad(theirs, theirs_x, upstream)
    loss_bound, grad_bound = error_bound(logits.dtype, logits, targets, weight, pos_weight,
                                         reduction, upstream)
    assert_within(ours, theirs, loss_bound)
    assert_within(ours_grad, theirs_grad, grad_bound)

    # And both against float64 on the same (exactly representable) inputs: ours is not just
    # equal to PyTorch's kernel, it is as accurate as the dtype allows.
    wide = [None if t is None else t.double() for t in (logits, targets, weight, pos_weight)]
    truth_x = wide[0].clone().requires_grad_(True)
    truth = reference(truth_x, wide[1], wide[2], wide[3], reduction)
    (truth_grad,) = torch.autograd.grad(truth, truth_x, upstream.double())
    assert_within(ours, truth, loss_bound)
    assert_within(ours_grad, truth_grad, grad_bound)


def exact_softplus(z: float) -> float:
    """log(1 + e^z) from the math library in float64: an independent reference."""
    return math.log1p(math.exp(z)) if z <= 0 else z + math.log1p(math.exp(-z))


def test_float32_loss_has_full_relative_precision_even_when_tiny():
    # PyTorch's fused form, (1 - y) x - log sigmoid(x), cancels for well-classified examples
    # (x = -12 with y = 0 loses ~10% in float32, and float64 returns 0 far out in the tails);
    # softplus keeps every digit the dtype has, down to float32's smallest normal number.
    generator = torch.Generator().manual_seed(11)
    logits = (torch.rand(8, 6, generator=generator) - 0.5) * 200
    targets = (torch.rand(8, 6, generator=generator) > 0.5).float()
    pos_weight = torch.rand(6, generator=generator) * 50 + 1e-3
    ours = loss.bce_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    for (n, c), value in np.ndenumerate(ours.numpy()):
        x, y, p = float(logits[n, c]), float(targets[n, c]), float(pos_weight[c])
        exact = p * exact_softplus(-x) if y == 1 else exact_softplus(x)
        assert value == pytest.approx(exact, rel=1e-6, abs=torch.finfo(torch.float32).tiny)


def test_soft_targets_in_float32_are_more_accurate_than_the_fused_form():
    # PyTorch's kernel computes (1 - y) x - log sigmoid(x), which cancels for soft targets in
    # float32 (here by 0.25%); the two softplus terms never subtract.
    logits, targets = torch.tensor([[-17.0]]), torch.tensor([[2.2268e-05]])
    truth = reference(logits.double(), targets.double(), reduction="none").item()
    ours = loss.bce_with_logits(logits, targets, reduction="none").item()
    assert ours == pytest.approx(truth, rel=1e-6)


def test_gradient_at_zero_is_exact():
    # The hand-written max(0,z) + log1p(exp(-|z|)) gets 1 instead of 1/2 from autograd here.
    x = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    loss.bce_with_logits(x, torch.zeros(1, 1, dtype=torch.float64), reduction="sum").backward()
    assert x.grad.item() == 0.5


# --------------------------------------------------------------------------- naive vs stable


def test_naive_form_breaks_in_float32_where_the_stable_one_is_exact():
    x = torch.tensor([[100.0], [100.0], [-100.0], [-100.0]], dtype=torch.float32)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float32)
    naive = loss.naive_bce(x, y)[:, 0]
    assert torch.isinf(naive[0]) and torch.isnan(naive[1])   # log(1 - 1) = -inf; 0 * -inf = nan
    assert torch.isinf(naive[2]) and torch.isnan(naive[3])   # sigmoid(-100) underflows to 0
    stable = loss.bce_with_logits(x, y, reduction="none")[:, 0]
    assert torch.isfinite(stable).all()
    assert abs(stable[0].item() - 100) < 1e-4 and abs(stable[2].item() - 100) < 1e-4
    assert 0 <= stable[1].item() < 1e-30 and 0 <= stable[3].item() < 1e-30


def test_naive_form_is_the_same_loss_where_it_does_not_overflow():
    x = torch.linspace(-5, 5, 21, dtype=torch.float64)[:, None].expand(21, 2)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(21, 2)
    pos_weight = torch.tensor([3.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(loss.naive_bce(x, y, pos_weight=pos_weight),
                               loss.bce_with_logits(x, y, pos_weight=pos_weight, reduction="none"))


# --------------------------------------------------------------------------- loss_curves


def test_loss_curves_scale_positives_by_pos_weight_and_leave_negatives_alone():
    logits = torch.linspace(-6, 6, 25, dtype=torch.float64)
    table = loss.loss_curves(logits, [1.0, 4.0, 0.5])
    assert list(table.columns) == ["logit", "pos_weight", "target", "loss", "grad"]
    assert len(table) == 25 * 3 * 2 and set(table["target"]) == {0, 1}

    def curve(p, target, column):
        rows = table[(table["pos_weight"] == p) & (table["target"] == target)]
        return rows[column].to_numpy()

    for p in (4.0, 0.5):
        np.testing.assert_allclose(curve(p, 1, "grad"), p * curve(1.0, 1, "grad"), rtol=1e-12)
        np.testing.assert_allclose(curve(p, 1, "loss"), p * curve(1.0, 1, "loss"), rtol=1e-12)
        np.testing.assert_array_equal(curve(p, 0, "grad"), curve(1.0, 0, "grad"))
        np.testing.assert_array_equal(curve(p, 0, "loss"), curve(1.0, 0, "loss"))
    sigma = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(curve(4.0, 1, "grad"), 4.0 * (sigma - 1), rtol=1e-12)
    np.testing.assert_allclose(curve(4.0, 0, "grad"), sigma, rtol=1e-12)


@pytest.mark.parametrize("pos_weights", [[], [-1.0], [float("nan")], ["two"]])
def test_loss_curves_reject_bad_pos_weights(pos_weights):
    with pytest.raises(ParameterError, match="pos_weights"):
        loss.loss_curves(torch.zeros(3), pos_weights)


# --------------------------------------------------------------------------- training module


@pytest.mark.parametrize("with_weight", [False, True])
def test_module_matches_the_formula(with_weight):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, generator=generator) * 10
    targets = (torch.rand(5, 4, generator=generator) > 0.7).float()
    weight = torch.rand(5, 4, generator=generator) if with_weight else None
    pos_weight = torch.tensor([1.0, 2.5, 10.0, 40.0])
    module = loss.WeightedBCEWithLogits(pos_weight)
    torch.testing.assert_close(module(logits, targets, weight),
                               loss.bce_with_logits(logits, targets, weight=weight, pos_weight=pos_weight))
    plain = loss.WeightedBCEWithLogits()
    torch.testing.assert_close(plain(logits, targets), loss.bce_with_logits(logits, targets))


def test_module_keeps_pos_weight_as_a_buffer_that_follows_the_module():
    module = loss.WeightedBCEWithLogits([1.0, 2.0, 3.0])
    assert "pos_weight" in dict(module.named_buffers()) and "pos_weight" in module.state_dict()
    assert not list(module.parameters()) and module.num_labels == 3
    module = module.to(torch.float64)
    assert module.pos_weight.dtype == torch.float64
    out = module(torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.int64))
    assert out.dtype == torch.float64 and out.item() == pytest.approx(2 * math.log(2))
    assert "num_labels=3" in repr(module)


def test_module_rejects_bad_pos_weight_and_mismatched_batches():
    with pytest.raises(ParameterError, match="pos_weight"):
        loss.WeightedBCEWithLogits([1.0, -2.0])
    with pytest.raises(ParameterError, match="pos_weight"):
        loss.WeightedBCEWithLogits([[1.0, 2.0]])
    module = loss.WeightedBCEWithLogits([1.0, 2.0])
    with pytest.raises(ParameterError, match=r"pos_weight.*shape \(3,\)"):
        module(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ParameterError, match="targets"):
        module(torch.zeros(4, 2), torch.full((4, 2), 2.0))


# --------------------------------------------------------------------------- bad input


def _valid():
    return torch.zeros(2, 3), torch.ones(2, 3)


@pytest.mark.parametrize("change, name", [
    (dict(logits=torch.zeros(2, 3, dtype=torch.int64)), "logits"),
    (dict(logits=[[0.0, 0.0, 0.0]] * 2), "logits"),
    (dict(logits=torch.tensor(0.0), targets=torch.tensor(1.0)), "logits"),
    (dict(targets=torch.ones(3, 2)), "targets"),
    (dict(targets=torch.ones(3)), "targets"),
    (dict(targets=torch.full((2, 3), 1.5)), "targets"),
    (dict(targets=torch.full((2, 3), -0.1)), "targets"),
    (dict(targets=torch.full((2, 3), float("nan"))), "targets"),
    (dict(weight=torch.ones(4)), "weight"),
    (dict(weight=torch.ones(5, 2, 3)), "weight"),
    (dict(weight=-torch.ones(3)), "weight"),
    (dict(pos_weight=torch.ones(2)), "pos_weight"),
    (dict(pos_weight=torch.ones(1)), "pos_weight"),
    (dict(pos_weight=torch.tensor([1.0, -1.0, 1.0])), "pos_weight"),
    (dict(pos_weight=torch.tensor([1.0, float("inf"), 1.0])), "pos_weight"),
    (dict(reduction="avg"), "reduction"),
])
def test_bad_input_names_the_argument(change, name):
    logits, targets = _valid()
    kwargs = dict(logits=logits, targets=targets) | change
    with pytest.raises(ParameterError) as caught:
        loss.bce_with_logits(kwargs.pop("logits"), kwargs.pop("targets"), **kwargs)
    assert caught.value.name == name and f"parameter {name}=" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_naive_form_validates_the_same_way():
    with pytest.raises(ParameterError, match="targets"):
        loss.naive_bce(torch.zeros(2), torch.full((2,), 3.0))


def test_error_messages_describe_tensors_instead_of_printing_them():
    with pytest.raises(ParameterError) as caught:
        loss.bce_with_logits(torch.zeros(1000, 50), torch.ones(1000, 49))
    assert "shape (1000, 49)" in str(caught.value) and len(str(caught.value)) < 300


# --- Found by mutation testing (docs/mutation.md): changes no test above noticed.

def test_naive_bce_matches_the_exact_loss_where_it_is_still_finite_and_reduces_as_asked():
    logits = torch.tensor([[-2.0, 0.5, 3.0], [1.0, -0.25, 0.0]])
    targets = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    exact = loss.bce_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(loss.naive_bce(logits, targets), exact)  # no pos_weight = 1
    torch.testing.assert_close(loss.naive_bce(logits, targets, reduction="mean"), exact.mean())
    torch.testing.assert_close(loss.naive_bce(logits, targets, reduction="sum"), exact.sum())


# --- issue 18: tests for the survivors of the mutation run "after" -----------------------

LOGITS = torch.zeros(2, 3)
ONES = torch.ones(2, 3)


@pytest.mark.parametrize("kwargs, name, value", [
    (dict(logits=torch.zeros(2, 3, dtype=torch.int64)), "logits",
     "tensor of shape (2, 3), dtype int64"),
    (dict(logits=[[0.0, 1.0]]), "logits", "list"),
    (dict(logits=torch.tensor(0.0), targets=torch.tensor(1.0)), "logits",
     "tensor of shape (), dtype float32"),
    (dict(targets=np.ones((3, 2))), "targets", "tensor of shape (3, 2), dtype float32"),
    (dict(targets=ONES * 2), "targets", "min 2, max 2"),
    (dict(targets=torch.tensor([[0.0, 1.0, float("nan")]] * 2)), "targets",
     "min 0, max 1, has nan/inf"),
    (dict(targets=torch.full((2, 3), float("nan"))), "targets", "no finite values"),
    (dict(targets=torch.zeros(2, 3, dtype=torch.complex64)), "targets",
     "tensor of shape (2, 3), dtype complex64"),
    (dict(targets="ones"), "targets", "str"),
    (dict(weight=torch.ones(4)), "weight", "tensor of shape (4,), dtype float32"),
    (dict(weight=torch.tensor([1.0, -1.0, 2.0])), "weight", "min -1, max 2"),
    (dict(weight=torch.zeros(3, dtype=torch.complex64)), "weight",
     "tensor of shape (3,), dtype complex64"),
    (dict(pos_weight=torch.ones(2, 3)), "pos_weight", "tensor of shape (2, 3), dtype float32"),
    (dict(pos_weight=torch.tensor([1.0, float("inf"), 3.0])), "pos_weight",
     "min 1, max 3, has nan/inf"),
    (dict(pos_weight=torch.zeros(3, dtype=torch.complex64)), "pos_weight",
     "tensor of shape (3,), dtype complex64"),
    (dict(reduction="avg"), "reduction", "avg"),
])
def test_validation_errors_name_the_argument_and_describe_the_value(kwargs, name, value):
    kwargs = dict(kwargs)  # a copy: parametrize hands the same dict to every run
    logits = kwargs.pop("logits", LOGITS)
    targets = kwargs.pop("targets", ONES)
    with pytest.raises(ParameterError, match="must|needs|cannot") as exc:
        loss.bce_with_logits(logits, targets, **kwargs)
    assert (exc.value.name, exc.value.value) == (name, value)
    assert not str(exc.value).endswith("None")


def test_zero_weights_are_allowed():
    assert loss.bce_with_logits(LOGITS, ONES, weight=torch.zeros(3)).item() == 0.0
    value = loss.bce_with_logits(LOGITS, ONES, pos_weight=torch.zeros(3))
    assert value.item() == 0.0
    assert loss.WeightedBCEWithLogits(torch.zeros(3))(LOGITS, ONES).item() == 0.0


def test_module_pos_weight_dtype_one_label_and_errors():
    assert loss.WeightedBCEWithLogits([1, 2]).pos_weight.dtype == torch.float32  # ints -> float
    as_given = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert loss.WeightedBCEWithLogits(as_given).pos_weight.dtype == torch.float64
    one = loss.WeightedBCEWithLogits([4.0])  # a single label is a valid model
    assert one.num_labels == 1 and one(torch.zeros(2, 1), torch.ones(2, 1)).item() > 0
    for bad, value in ((torch.ones(2, 2), "tensor of shape (2, 2), dtype float32"),
                       (torch.ones(0), "tensor of shape (0,), dtype float32"),
                       (torch.tensor([1.0, -2.0]), "min -2, max 1")):
        with pytest.raises(ParameterError, match="must") as exc:
            loss.WeightedBCEWithLogits(bad)
        assert (exc.value.name, exc.value.value) == ("pos_weight", value)
        assert not str(exc.value).endswith("None")


def test_module_repr_says_whether_it_weights():
    assert "pos_weight=None" in repr(loss.WeightedBCEWithLogits())
    assert "num_labels=3" in repr(loss.WeightedBCEWithLogits(torch.ones(3)))
