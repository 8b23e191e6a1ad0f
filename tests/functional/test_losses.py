"""Reference tests for iwlab.functional.losses.

Every expected value comes from an independent computation: explicit Python loops with
math.log/exp, or PyTorch's own losses where the definitions coincide.
"""

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

import iwlab.functional.losses as losses_module
import iwlab.losses
from iwlab.functional import (
    check_weights,
    class_to_sample_weight,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)
from iwlab.losses import WeightedBCEWithLogitsLoss, WeightedCrossEntropyLoss

B, C, M = 7, 4, 3


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _ce_inputs(seed=0, dtype=torch.float64, lead=()):
    g = _gen(seed)
    logits = torch.randn(*lead, B, C, generator=g, dtype=dtype) * 2
    target = torch.randint(0, C, (*lead, B), generator=g)
    class_weight = torch.rand(*lead, C, generator=g, dtype=dtype) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=dtype) + 0.1
    return logits, target, class_weight, sample_weight


def _bce_inputs(seed=0, dtype=torch.float64, lead=()):
    g = _gen(seed)
    logits = torch.randn(*lead, B, generator=g, dtype=dtype) * 2
    target = torch.randint(0, 2, (*lead, B), generator=g)
    class_weight = torch.rand(*lead, 2, generator=g, dtype=dtype) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=dtype) + 0.1
    return logits, target, class_weight, sample_weight


# ---- hand-written references (plain Python over lists) ----------------------------------------


def _ref_weights(target, class_weight, sample_weight):
    w = []
    for i, y in enumerate(target):
        wi = 1.0
        if class_weight is not None:
            wi *= class_weight[y]
        if sample_weight is not None:
            wi *= sample_weight[i]
        w.append(wi)
    return w


def _ref_reduce(per_example, w, normalization, reduction):
    terms = [wi * li for wi, li in zip(w, per_example, strict=True)]
    if reduction == "none":
        return terms
    if reduction == "sum":
        return sum(terms)
    if normalization == "batch_size":
        return sum(terms) / len(terms)
    return sum(terms) / sum(w)


def ref_ce(logits, target, class_weight, sample_weight, normalization, reduction):
    per_example = []
    for row, y in zip(logits, target, strict=True):
        m = max(row)
        log_sum_exp = m + math.log(sum(math.exp(z - m) for z in row))
        per_example.append(log_sum_exp - row[y])
    w = _ref_weights(target, class_weight, sample_weight)
    return _ref_reduce(per_example, w, normalization, reduction)


def ref_bce(logits, target, class_weight, sample_weight, normalization, reduction):
    per_example = []
    for z, y in zip(logits, target, strict=True):
        p = 1.0 / (1.0 + math.exp(-z))
        per_example.append(-math.log(p) if y == 1 else -math.log(1.0 - p))
    w = _ref_weights(target, class_weight, sample_weight)
    return _ref_reduce(per_example, w, normalization, reduction)


def _aslist(t):
    return None if t is None else t.tolist()


WEIGHT_KINDS = ["none", "class", "sample", "both"]


def _pick(kind, class_weight, sample_weight):
    cw = class_weight if kind in ("class", "both") else None
    sw = sample_weight if kind in ("sample", "both") else None
    return cw, sw


# ---- against hand-written formulas ------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_cross_entropy_matches_hand_formula(kind, normalization, reduction):
    logits, target, class_weight, sample_weight = _ce_inputs(seed=1)
    cw, sw = _pick(kind, class_weight, sample_weight)
    got = weighted_cross_entropy(
        logits,
        target,
        class_weight=cw,
        sample_weight=sw,
        normalization=normalization,
        reduction=reduction,
    )
    expected = ref_ce(logits.tolist(), target.tolist(), _aslist(cw), _aslist(sw), normalization, reduction)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_binary_cross_entropy_matches_hand_formula(kind, normalization, reduction):
    logits, target, class_weight, sample_weight = _bce_inputs(seed=2)
    cw, sw = _pick(kind, class_weight, sample_weight)
    got = weighted_binary_cross_entropy(
        logits,
        target,
        class_weight=cw,
        sample_weight=sw,
        normalization=normalization,
        reduction=reduction,
    )
    expected = ref_bce(logits.tolist(), target.tolist(), _aslist(cw), _aslist(sw), normalization, reduction)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_hand_formula_example_by_hand():
    # Two examples, uniform logits over 2 classes: every l_i = log 2.
    logits = torch.zeros(2, 2, dtype=torch.float64)
    target = torch.tensor([0, 1])
    cw = torch.tensor([3.0, 1.0], dtype=torch.float64)
    got_b = weighted_cross_entropy(logits, target, class_weight=cw)
    got_w = weighted_cross_entropy(logits, target, class_weight=cw, normalization="weight_sum")
    assert got_b.item() == pytest.approx((3 + 1) * math.log(2) / 2)
    assert got_w.item() == pytest.approx(math.log(2))


def test_large_logits_are_stable():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([2, 1])
    got = weighted_cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(got, torch.tensor([2000.0, 0.0], dtype=torch.float64))
    z = torch.tensor([800.0, -800.0, 800.0, -800.0])
    y = torch.tensor([1, 0, 0, 1])
    got = weighted_binary_cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 800.0, 800.0]))


# ---- against PyTorch where the definitions coincide -------------------------------------------


def test_weight_sum_matches_torch_weighted_mean():
    logits, target, class_weight, _ = _ce_inputs(seed=3)
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, normalization="weight_sum")
    expected = F.cross_entropy(logits, target, weight=class_weight, reduction="mean")
    torch.testing.assert_close(got, expected)


def test_batch_size_matches_torch_none_times_weight_over_batch():
    logits, target, class_weight, sample_weight = _ce_inputs(seed=4)
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, sample_weight=sample_weight)
    per_example = F.cross_entropy(logits, target, reduction="none")
    expected = (per_example * class_weight[target] * sample_weight).sum() / B
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_none_and_sum_match_torch(reduction):
    logits, target, class_weight, _ = _ce_inputs(seed=5)
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, reduction=reduction)
    expected = F.cross_entropy(logits, target, weight=class_weight, reduction=reduction)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_binary_matches_torch(reduction):
    logits, target, class_weight, sample_weight = _bce_inputs(seed=6)
    w = class_weight[target] * sample_weight
    got = weighted_binary_cross_entropy(
        logits, target, class_weight=class_weight, sample_weight=sample_weight, reduction=reduction
    )
    # torch's BCE `weight` is per element and its mean divides by the number of elements:
    # that is the batch_size normalization.
    expected = F.binary_cross_entropy_with_logits(logits, target.double(), weight=w, reduction=reduction)
    torch.testing.assert_close(got, expected)
    got_ws = weighted_binary_cross_entropy(
        logits,
        target.double(),
        class_weight=class_weight,
        sample_weight=sample_weight,
        normalization="weight_sum",
    )
    per_example = F.binary_cross_entropy_with_logits(logits, target.double(), reduction="none")
    torch.testing.assert_close(got_ws, (per_example * w).sum() / w.sum())


def test_single_class_batch_pitfall():
    # Every label is class 1, weighted 0.25 relative to class 0.
    logits = torch.randn(6, 2, generator=_gen(7), dtype=torch.float64)
    target = torch.ones(6, dtype=torch.long)
    cw = torch.tensor([1.0, 0.25], dtype=torch.float64)
    unweighted = F.cross_entropy(logits, target)

    torch_mean = F.cross_entropy(logits, target, weight=cw, reduction="mean")
    torch.testing.assert_close(torch_mean, unweighted)  # the class weight cancels
    ours_ws = weighted_cross_entropy(logits, target, class_weight=cw, normalization="weight_sum")
    torch.testing.assert_close(ours_ws, unweighted)

    ours_bs = weighted_cross_entropy(logits, target, class_weight=cw)  # default: batch_size
    torch.testing.assert_close(ours_bs, 0.25 * unweighted)


# ---- leading model axes -----------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_model_axis_equals_stacked_calls_ce(normalization, reduction):
    logits, target, class_weight, sample_weight = _ce_inputs(seed=8, lead=(M,))
    kw = dict(normalization=normalization, reduction=reduction)
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, sample_weight=sample_weight, **kw)
    expected = torch.stack(
        [
            weighted_cross_entropy(
                logits[m],
                target[m],
                class_weight=class_weight[m],
                sample_weight=sample_weight[m],
                **kw,
            )
            for m in range(M)
        ]
    )
    assert got.shape == ((M, B) if reduction == "none" else (M,))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_model_axis_equals_stacked_calls_bce(normalization, reduction):
    logits, target, class_weight, sample_weight = _bce_inputs(seed=9, lead=(M,))
    kw = dict(normalization=normalization, reduction=reduction)
    got = weighted_binary_cross_entropy(logits, target, class_weight=class_weight, sample_weight=sample_weight, **kw)
    expected = torch.stack(
        [
            weighted_binary_cross_entropy(
                logits[m],
                target[m],
                class_weight=class_weight[m],
                sample_weight=sample_weight[m],
                **kw,
            )
            for m in range(M)
        ]
    )
    torch.testing.assert_close(got, expected)


def test_model_axis_with_shared_batch_and_class_weight():
    # M models, one batch: target, sample_weight and class_weight without the model axis.
    logits, _, _, _ = _ce_inputs(seed=10, lead=(M,))
    _, target, class_weight, sample_weight = _ce_inputs(seed=11)
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, sample_weight=sample_weight)
    expected = torch.stack(
        [
            weighted_cross_entropy(logits[m], target, class_weight=class_weight, sample_weight=sample_weight)
            for m in range(M)
        ]
    )
    torch.testing.assert_close(got, expected)


def test_two_leading_axes():
    logits, target, class_weight, sample_weight = _ce_inputs(seed=12, lead=(2, M))
    got = weighted_cross_entropy(logits, target, class_weight=class_weight, sample_weight=sample_weight)
    assert got.shape == (2, M)
    torch.testing.assert_close(
        got[1, 2],
        weighted_cross_entropy(
            logits[1, 2],
            target[1, 2],
            class_weight=class_weight[1, 2],
            sample_weight=sample_weight[1, 2],
        ),
    )


# ---- class_to_sample_weight -------------------------------------------------------------------


def test_class_to_sample_weight_loop():
    target = torch.tensor([2, 0, 1, 2])
    cw = torch.tensor([0.5, 1.5, 3.0])
    got = class_to_sample_weight(target, cw)
    torch.testing.assert_close(got, torch.tensor([[0.5, 1.5, 3.0][y] for y in target.tolist()]))


def test_class_to_sample_weight_broadcasts_leading_dims():
    target = torch.tensor([2, 0, 1])
    cw = torch.tensor([[0.5, 1.5, 3.0], [1.0, 2.0, 4.0]])
    got = class_to_sample_weight(target, cw)
    expected = torch.tensor([[3.0, 0.5, 1.5], [4.0, 1.0, 2.0]])
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("bad", [-1, 3])
def test_class_to_sample_weight_bad_label(bad):
    target = torch.tensor([0, bad, 1])
    with pytest.raises(ValueError, match=rf"label {bad} at index 1 .*C=3"):
        class_to_sample_weight(target, torch.ones(3))


# ---- errors -----------------------------------------------------------------------------------


def test_check_weights_message_example():
    with pytest.raises(ValueError) as info:
        check_weights(torch.tensor([1.0, -0.5]), name="class_weight")
    assert str(info.value) == ("class_weight has a negative entry (-0.5 at index 1); importance weights must be >= 0")


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (torch.tensor([1.0, -0.5, 2.0]), r"negative entry \(-0.5 at index 1\)"),
        (torch.tensor([1.0, float("nan")]), r"NaN entry at index 1"),
        (torch.tensor([1.0, float("inf")]), r"infinite entry \(inf at index 1\)"),
        (torch.tensor([float("-inf"), 1.0]), r"infinite entry \(-inf at index 0\)"),
        (torch.zeros(3), r"all zeros"),
        (torch.tensor([[1.0, 2.0], [3.0, -1.0]]), r"negative entry \(-1 at index \(1, 1\)\)"),
    ],
)
def test_check_weights_errors(weight, match):
    with pytest.raises(ValueError, match=match):
        check_weights(weight, name="w")


def test_check_weights_accepts_valid():
    check_weights(torch.tensor([0.0, 0.5, 2.0]))
    check_weights(torch.tensor([1, 0, 3]))


@pytest.mark.parametrize("which", ["class_weight", "sample_weight"])
@pytest.mark.parametrize(
    ("value", "match"),
    [(-0.5, "negative entry"), (float("nan"), "NaN entry"), (float("inf"), "infinite entry")],
)
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_losses_reject_bad_weights(loss, which, value, match):
    ce = loss is weighted_cross_entropy
    logits, target, class_weight, sample_weight = (_ce_inputs if ce else _bce_inputs)()
    weights = {"class_weight": class_weight.clone(), "sample_weight": sample_weight.clone()}
    weights[which][1] = value
    with pytest.raises(ValueError, match=rf"^{which} has an? {match}"):
        loss(logits, target, **weights)


@pytest.mark.parametrize("which", ["class_weight", "sample_weight"])
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_losses_reject_all_zero_weights(loss, which):
    ce = loss is weighted_cross_entropy
    logits, target, class_weight, sample_weight = (_ce_inputs if ce else _bce_inputs)()
    weights = {"class_weight": class_weight, "sample_weight": sample_weight}
    weights[which] = torch.zeros_like(weights[which])
    with pytest.raises(ValueError, match=rf"^{which} is all zeros"):
        loss(logits, target, **weights)


def test_shape_mismatch_logits_vs_target():
    logits, target, _, _ = _ce_inputs()
    with pytest.raises(ValueError, match=r"target has shape \(6,\) but logits has shape \(7, 4\)"):
        weighted_cross_entropy(logits, target[:6])
    with pytest.raises(ValueError, match=r"target has shape \(7, 1\)"):
        weighted_cross_entropy(logits, target[:, None])
    z, y, _, _ = _bce_inputs()
    with pytest.raises(ValueError, match=r"target has shape \(8,\) but logits has shape \(7,\)"):
        weighted_binary_cross_entropy(z, torch.cat([y, y[:1]]))
    with pytest.raises(ValueError, match=r"target has shape \(2, 7\)"):
        weighted_binary_cross_entropy(z, y.expand(2, B))


def test_shape_mismatch_sample_weight_vs_target():
    logits, target, _, sample_weight = _ce_inputs()
    with pytest.raises(ValueError, match=r"sample_weight has shape \(6,\) .*B=7"):
        weighted_cross_entropy(logits, target, sample_weight=sample_weight[:6])
    z, y, _, sw = _bce_inputs()
    with pytest.raises(ValueError, match=r"sample_weight has shape \(8,\) .*B=7"):
        weighted_binary_cross_entropy(z, y, sample_weight=torch.cat([sw, sw[:1]]))


def test_shape_mismatch_class_weight_vs_classes():
    logits, target, class_weight, _ = _ce_inputs()
    with pytest.raises(ValueError, match=r"class_weight has shape \(3,\) .*C=4 classes"):
        weighted_cross_entropy(logits, target, class_weight=class_weight[:3])
    z, y, _, _ = _bce_inputs()
    with pytest.raises(ValueError, match=r"class_weight has shape \(3,\) .*2 classes"):
        weighted_binary_cross_entropy(z, y, class_weight=torch.ones(3))


def test_shape_mismatch_leading_axes():
    logits, target, class_weight, _ = _ce_inputs(lead=(M,))
    with pytest.raises(ValueError, match=r"class_weight has shape \(2, 4\)"):
        weighted_cross_entropy(logits, target, class_weight=torch.ones(2, C))


@pytest.mark.parametrize("bad", [-1, C, C + 5])
def test_label_out_of_range(bad):
    logits, target, _, _ = _ce_inputs()
    target = target.clone()
    target[3] = bad
    with pytest.raises(ValueError, match=rf"label {bad} at index 3 but logits has C={C} classes"):
        weighted_cross_entropy(logits, target)


@pytest.mark.parametrize("bad", [2, -1])
def test_binary_label_not_0_or_1(bad):
    z, y, _, _ = _bce_inputs()
    y = y.clone()
    y[2] = bad
    with pytest.raises(ValueError, match=rf"label {bad} at index 2; binary labels must be 0 or 1"):
        weighted_binary_cross_entropy(z, y)
    with pytest.raises(ValueError, match=r"label 0.5 at index 2"):
        weighted_binary_cross_entropy(z, torch.where(y == bad, 0.5, y.double()))


def test_float_target_rejected_for_multiclass():
    logits, target, _, _ = _ce_inputs()
    with pytest.raises(ValueError, match="integer tensor"):
        weighted_cross_entropy(logits, target.double())


@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_bad_reduction_and_normalization_strings(loss):
    ce = loss is weighted_cross_entropy
    logits, target, _, _ = (_ce_inputs if ce else _bce_inputs)()
    with pytest.raises(ValueError, match=r"reduction must be one of 'none', 'sum', 'mean'; got 'avg'"):
        loss(logits, target, reduction="avg")
    with pytest.raises(ValueError, match=r"normalization must be one of 'batch_size', 'weight_sum'"):
        loss(logits, target, normalization="batch")


def test_weight_sum_zero_total_weight():
    # All labels are class 1, whose weight is 0: weight_sum is 0/0.
    logits = torch.randn(4, 2, generator=_gen(13), dtype=torch.float64)
    target = torch.ones(4, dtype=torch.long)
    cw = torch.tensor([1.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="zero total weight"):
        weighted_cross_entropy(logits, target, class_weight=cw, normalization="weight_sum")
    # batch_size is well defined (and zero); validate=False skips the check.
    assert weighted_cross_entropy(logits, target, class_weight=cw).item() == 0.0
    skipped = weighted_cross_entropy(logits, target, class_weight=cw, normalization="weight_sum", validate=False)
    assert torch.isnan(skipped)
    # With a model axis, the message names the offending model.
    sw = torch.ones(M, 4, dtype=torch.float64)
    sw[1] = 0
    with pytest.raises(ValueError, match=r"zero total weight .*at index 1\b"):
        weighted_binary_cross_entropy(torch.zeros(M, 4), torch.ones(4), sample_weight=sw, normalization="weight_sum")


def test_validate_false_skips_data_checks():
    logits, target, class_weight, _ = _ce_inputs()
    neg = class_weight.clone()
    neg[0] = -1.0
    out = weighted_cross_entropy(logits, target, class_weight=neg, validate=False)
    expected = ref_ce(logits.tolist(), target.tolist(), neg.tolist(), None, "batch_size", "mean")
    assert out.item() == pytest.approx(expected)


# ---- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_gradcheck_cross_entropy(normalization):
    logits, target, class_weight, sample_weight = _ce_inputs(seed=14, lead=(2,))
    logits.requires_grad_(True)
    sample_weight.requires_grad_(True)

    def fn(z, sw):
        return weighted_cross_entropy(
            z, target, class_weight=class_weight, sample_weight=sw, normalization=normalization
        )

    assert torch.autograd.gradcheck(fn, (logits, sample_weight))


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_gradcheck_binary_cross_entropy(normalization):
    logits, target, class_weight, sample_weight = _bce_inputs(seed=15, lead=(2,))
    logits = torch.cat([logits, torch.zeros(2, 1, dtype=torch.float64)], dim=-1)  # z = 0 too
    target = torch.cat([target, torch.ones(2, 1, dtype=torch.long)], dim=-1)
    sample_weight = torch.cat([sample_weight, torch.ones(2, 1, dtype=torch.float64)], dim=-1)
    logits.requires_grad_(True)
    sample_weight.requires_grad_(True)

    def fn(z, sw):
        return weighted_binary_cross_entropy(
            z, target, class_weight=class_weight, sample_weight=sw, normalization=normalization
        )

    assert torch.autograd.gradcheck(fn, (logits, sample_weight))


def test_cross_entropy_gradient_formula():
    # d/dz_i of (1/B) sum_j w_j l_j = w_i (softmax(z_i) - onehot(y_i)) / B
    logits, target, class_weight, _ = _ce_inputs(seed=16)
    logits.requires_grad_(True)
    weighted_cross_entropy(logits, target, class_weight=class_weight).backward()
    expected = class_weight[target][:, None] * (torch.softmax(logits.detach(), -1) - F.one_hot(target, C).double()) / B
    torch.testing.assert_close(logits.grad, expected)


# ---- docstring examples -----------------------------------------------------------------------


def test_docstring_examples():
    for module in (losses_module, iwlab.losses):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0
        assert result.failed == 0


# ---- nn.Module wrappers (iwlab.losses) --------------------------------------------------------


@pytest.mark.parametrize("cls", [WeightedCrossEntropyLoss, WeightedBCEWithLogitsLoss])
def test_module_rejects_bad_arguments(cls):
    with pytest.raises(ValueError, match=r"normalization must be one of 'batch_size', 'weight_sum'"):
        cls(normalization="mean")
    with pytest.raises(ValueError, match=r"reduction must be one of 'none', 'sum', 'mean'"):
        cls(reduction="batch_size")
    with pytest.raises(ValueError, match=r"class_weight has a negative entry \(-1 at index 0\)"):
        cls(class_weight=[-1.0, 1.0])
    with pytest.raises(ValueError, match=r"class_weight is all zeros"):
        cls(class_weight=torch.zeros(2))


def test_binary_module_needs_two_class_weights():
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(\.\.\., 2\); got shape \(3,\)"):
        WeightedBCEWithLogitsLoss(class_weight=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("cls", [WeightedCrossEntropyLoss, WeightedBCEWithLogitsLoss])
def test_module_class_weight_is_a_buffer(cls):
    module = cls(class_weight=[1.0, 0.25])
    assert torch.equal(module.state_dict()["class_weight"], torch.tensor([1.0, 0.25]))
    assert module.to(torch.float64).class_weight.dtype == torch.float64
    assert cls().class_weight is None
    assert list(cls().state_dict()) == []


def test_modules_match_functional():
    logits, target, class_weight, sample_weight = _ce_inputs(seed=17, lead=(M,))
    module = WeightedCrossEntropyLoss(class_weight, normalization="weight_sum", reduction="sum")
    expected = weighted_cross_entropy(
        logits,
        target,
        class_weight=class_weight,
        sample_weight=sample_weight,
        normalization="weight_sum",
        reduction="sum",
    )
    torch.testing.assert_close(module(logits, target, sample_weight), expected)
    z, y, cw, sw = _bce_inputs(seed=18)
    module = WeightedBCEWithLogitsLoss(cw, normalization="weight_sum")
    expected = weighted_binary_cross_entropy(z, y, class_weight=cw, sample_weight=sw, normalization="weight_sum")
    torch.testing.assert_close(module(z, y, sample_weight=sw), expected)
    with pytest.raises(ValueError, match=rf"label {C + 1} at index \(0, 0\)"):
        WeightedCrossEntropyLoss()(logits, torch.full_like(target, C + 1))
