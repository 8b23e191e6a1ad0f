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
import iwlab.losses.focal
import iwlab.losses.weighted
from iwlab.functional import (
    check_weights,
    class_to_sample_weight,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)
from iwlab.functional._scaling import mul_pow2, pow2
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
def test_all_zero_weights_give_zero_batch_size_loss_and_weight_sum_error(loss, which):
    # A fully masked batch is normal: the IW-ERM mean (1/B) sum_i 0 * l_i is exactly 0, with zero
    # gradients; the self-normalized mean 0/0 stays an error.
    ce = loss is weighted_cross_entropy
    logits, target, class_weight, sample_weight = (_ce_inputs if ce else _bce_inputs)()
    weights = {"class_weight": class_weight, "sample_weight": sample_weight}
    weights[which] = torch.zeros_like(weights[which])
    logits.requires_grad_(True)
    out = loss(logits, target, **weights)
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert loss(logits, target, reduction="sum", **weights).item() == 0.0
    with pytest.raises(ValueError, match="zero total weight"):
        loss(logits, target, normalization="weight_sum", **weights)


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
    for module in (losses_module, iwlab.losses.weighted, iwlab.losses.focal):
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


@pytest.mark.parametrize("cls", [WeightedCrossEntropyLoss, WeightedBCEWithLogitsLoss])
def test_module_accepts_all_zero_class_weight_like_functional(cls):
    module = cls(class_weight=torch.zeros(2))
    logits = torch.zeros(3, 2) if cls is WeightedCrossEntropyLoss else torch.zeros(3)
    assert module(logits, torch.tensor([0, 1, 1])).item() == 0.0


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


# ---- issue 10, item 1: half precision and unrepresentable weights ---------------------------


HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("half", HALF)
def test_half_logits_large_weight_accumulates_in_float32(half):
    logits = torch.zeros(4, 2, dtype=half)
    target = torch.tensor([0, 1, 1, 1])
    sw = torch.tensor([1e5, 1.0, 1.0, 1.0])
    got = weighted_cross_entropy(logits, target, sample_weight=sw)
    assert got.dtype == torch.float32
    # every l_i = ln 2, so (1/B) sum_i w_i l_i = (1e5 + 3) ln 2 / 4 = 17329.2
    assert got.item() == pytest.approx((1e5 + 3) * math.log(2) / 4, rel=1e-6)
    got_ws = weighted_cross_entropy(logits, target, sample_weight=sw, normalization="weight_sum")
    assert got_ws.item() == pytest.approx(math.log(2), rel=1e-6)


def test_float16_logits_40000_examples_weight_sum_is_ln10():
    logits = torch.zeros(40000, 10, dtype=torch.float16)
    target = torch.arange(40000) % 10
    got = weighted_cross_entropy(logits, target, sample_weight=torch.ones(40000), normalization="weight_sum")
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_tiny_weights_with_half_logits_weight_sum_is_ln2(loss, half):
    ce = loss is weighted_cross_entropy
    logits = torch.zeros(4, 2, dtype=half) if ce else torch.zeros(4, dtype=half)
    target = torch.tensor([0, 1, 1, 0])
    got = loss(logits, target, sample_weight=torch.full((4,), 1e-8), normalization="weight_sum")
    assert got.item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_half_logits_equal_float32_upcast_and_grad_reaches_half_logits(loss, reduction, half):
    ce = loss is weighted_cross_entropy
    logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=20, dtype=torch.float32, lead=(2,))
    logits = logits.to(half).requires_grad_(True)
    up = logits.detach().float().requires_grad_(True)
    got = loss(logits, target, class_weight=cw, sample_weight=sw, reduction=reduction)
    expected = loss(up, target, class_weight=cw, sample_weight=sw, reduction=reduction)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    got.sum().backward()
    expected.sum().backward()
    assert logits.grad.dtype == half
    assert torch.equal(logits.grad, up.grad.to(half))


def test_float64_weights_of_1e300_are_exact():
    logits = torch.zeros(4, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 1, 1])
    cw = torch.tensor([1e300, 1e300], dtype=torch.float64)
    sw = torch.full((4,), 1e300, dtype=torch.float64)
    # w_i = 1e600 overflows, but the self-normalized mean does not depend on the scale.
    got = weighted_cross_entropy(logits, target, class_weight=cw, sample_weight=sw, normalization="weight_sum")
    assert got.item() == pytest.approx(math.log(2), rel=1e-15)
    # The batch-size mean 1e600 ln 2 is not a float64: an error, not inf.
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float64: .*rescale the weights$"):
        weighted_cross_entropy(logits, target, class_weight=cw, sample_weight=sw)
    # 4 * 1e308 * ln 2 overflows in the sum, but the mean 1e308 ln 2 = 6.93e307 is representable.
    big = torch.full((4,), 1e308, dtype=torch.float64)
    got = weighted_cross_entropy(logits, target, sample_weight=big)
    assert got.item() == pytest.approx(1e308 * math.log(2), rel=1e-15)
    got = weighted_binary_cross_entropy(torch.zeros(4, dtype=torch.float64), target, sample_weight=big)
    assert got.item() == pytest.approx(1e308 * math.log(2), rel=1e-15)


@pytest.mark.parametrize(
    ("logit_dtype", "value", "why"),
    [
        (torch.float32, 1e300, "it overflows to inf"),
        (torch.float16, 1e300, "it overflows to inf"),
        (torch.float32, 1e-300, "it underflows below the smallest normal 1.17549e-38"),
        (torch.float32, 1e-40, "it underflows below the smallest normal 1.17549e-38"),
    ],
)
@pytest.mark.parametrize("which", ["class_weight", "sample_weight"])
def test_weight_not_representable_in_compute_dtype_raises(which, logit_dtype, value, why):
    weights = {
        "class_weight": torch.ones(2, dtype=torch.float64),
        "sample_weight": torch.ones(4, dtype=torch.float64),
    }
    weights[which][1] = value
    with pytest.raises(ValueError) as info:
        weighted_cross_entropy(torch.zeros(4, 2, dtype=logit_dtype), torch.tensor([0, 1, 1, 0]), **weights)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{which} has an entry ({value:g} at index 1) that torch.float32 cannot represent ({why})")
    assert msg.endswith("use float64 logits or rescale the weights")
    # validate=False skips the check, as documented: the weight becomes inf or 0.
    out = weighted_cross_entropy(
        torch.zeros(4, 2, dtype=logit_dtype), torch.tensor([0, 1, 1, 0]), validate=False, reduction="none", **weights
    )
    assert out.dtype == torch.float32


def test_bfloat16_subnormal_weight_casts_exactly_to_float32():
    # bfloat16 has float32's exponent range: its subnormals are float32 subnormals, exactly.
    sw = torch.tensor([1e-39, 1e-39], dtype=torch.bfloat16)
    got = weighted_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), sample_weight=sw, normalization="weight_sum")
    assert got.item() == pytest.approx(math.log(2), rel=1e-6)


def _old_losses(loss, logits, target, class_weight, sample_weight, normalization, reduction):
    """The formula before issue 10 (naive products and sums), kept to pin bitwise equality."""
    if loss is weighted_cross_entropy:
        per = -F.log_softmax(logits, dim=-1).gather(-1, target.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        y = target.expand(logits.shape[:-1])
    else:
        y = (target == 1).expand(logits.shape)
        per = -F.logsigmoid(torch.where(y, logits, -logits))
        y = y.long()
    w = None
    if class_weight is not None:
        lead = torch.broadcast_shapes(y.shape[:-1], class_weight.shape[:-1])
        w = torch.gather(class_weight.expand(*lead, class_weight.shape[-1]), -1, y.expand(*lead, y.shape[-1]))
    if sample_weight is not None:
        w = sample_weight if w is None else w * sample_weight
    wl = per if w is None else w.expand_as(per) * per
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum(-1)
    if normalization == "batch_size" or w is None:
        return wl.mean(-1)
    return wl.sum(-1) / w.expand_as(per).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_normal_range_results_and_gradients_are_bitwise_unchanged(loss, kind, dtype):
    ce = loss is weighted_cross_entropy
    for seed, scale in [(30, 1e-6), (31, 1.0), (32, 1e6)]:
        logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=seed, dtype=dtype, lead=(3,))
        cw, sw = _pick(kind, cw * scale, sw)
        for normalization in ["batch_size", "weight_sum"]:
            for reduction in ["none", "sum", "mean"]:
                a = logits.clone().requires_grad_(True)
                b = logits.clone().requires_grad_(True)
                kw = dict(normalization=normalization, reduction=reduction)
                got = loss(a, target, class_weight=cw, sample_weight=sw, **kw)
                expected = _old_losses(loss, b, target, cw, sw, **kw)
                assert got.dtype == dtype
                assert torch.equal(got, expected), (seed, normalization, reduction)
                seed_grad = torch.randn(got.shape, generator=_gen(seed), dtype=dtype)
                got.backward(seed_grad)
                expected.backward(seed_grad)
                assert torch.equal(a.grad, b.grad)


def test_pow2_helper_is_exact_beyond_the_representable_power():

    for dtype, k in [(torch.float32, 200), (torch.float32, -200), (torch.float64, 1500), (torch.float64, -1500)]:
        x = torch.tensor(
            [1e-30, -3.0, 0.0, 1e30] if dtype == torch.float32 else [1e-300, -3.0, 0.0, 1e300], dtype=dtype
        )
        got = mul_pow2(x, torch.full((4,), k, dtype=torch.int32))
        expected = []
        for v in x.tolist():
            try:
                expected.append(math.ldexp(v, k))
            except OverflowError:
                expected.append(math.copysign(math.inf, v))
        assert torch.equal(got, torch.tensor(expected, dtype=torch.float64).to(dtype))


# ---- issue 10, item 7: weights from 1e-30 to 1e30 -------------------------------------------


@pytest.mark.parametrize("cscale", [1e-30, 1.0, 1e30])
@pytest.mark.parametrize("sscale", [1e-30, 1.0, 1e30])
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_float32_weights_1e_30_to_1e30_are_exact(loss, cscale, sscale):
    ce = loss is weighted_cross_entropy
    logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=40, dtype=torch.float32)
    cw32, sw32 = cw * cscale, sw * sscale  # float32 tensors: every entry is a normal float32
    # References in float64 from the float32 values, with the scales divided out exactly in
    # Python floats (1e-60 and 1e60 are fine doubles).
    ref = ref_ce if ce else ref_bce
    args = (logits.double().tolist(), target.tolist(), cw32.double().tolist(), sw32.double().tolist())
    ws = ref(*args, "weight_sum", "mean")
    got = loss(logits, target, class_weight=cw32, sample_weight=sw32, normalization="weight_sum")
    assert got.item() == pytest.approx(ws, rel=1e-5)
    bs = ref(*args, "batch_size", "mean")
    if bs > torch.finfo(torch.float32).max:
        with pytest.raises(ValueError, match="the loss overflows torch.float32"):
            loss(logits, target, class_weight=cw32, sample_weight=sw32)
    elif bs >= torch.finfo(torch.float32).tiny:
        got = loss(logits, target, class_weight=cw32, sample_weight=sw32)
        assert got.item() == pytest.approx(bs, rel=1e-5)
    else:  # documented: a result below the smallest normal float32 underflows (absolute error < tiny)
        got = loss(logits, target, class_weight=cw32, sample_weight=sw32)
        assert abs(got.item() - bs) < torch.finfo(torch.float32).tiny


# ---- issue 10, item 6: (B, 1) logits ----------------------------------------------------------


def test_binary_rejects_trailing_axis_of_size_one():
    with pytest.raises(ValueError) as info:
        weighted_binary_cross_entropy(torch.zeros(4, 1), torch.zeros(4, 1))
    assert str(info.value) == (
        "logits has shape (4, 1), but the binary loss reads (..., B) as M stacked models of B examples each, "
        "so shape (4, 1) would be 4 models of one example; for one model pass logits.squeeze(-1) "
        "(and target.squeeze(-1))"
    )
    with pytest.raises(ValueError, match=r"shape \(2, 3, 1\) would be \(2, 3\) models of one example"):
        weighted_binary_cross_entropy(torch.zeros(2, 3, 1), torch.zeros(3, 1), validate=False)
    with pytest.raises(ValueError, match="would be 4 models of one example"):
        WeightedBCEWithLogitsLoss(class_weight=[1.0, 0.5], normalization="weight_sum")(
            torch.zeros(4, 1), torch.ones(4, 1)
        )
    # One model with one example per batch is (1,), and still fine.
    got = weighted_binary_cross_entropy(torch.zeros(1, dtype=torch.float64), torch.ones(1))
    assert got.item() == pytest.approx(math.log(2))


def test_multiclass_rejects_single_class_and_hints_at_trailing_target_axis():
    with pytest.raises(
        ValueError, match=r"C=1 classes, but cross-entropy needs C >= 2 .*weighted_binary_cross_entropy"
    ):
        weighted_cross_entropy(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"C=0 classes"):
        weighted_cross_entropy(torch.zeros(4, 0), torch.zeros(4, dtype=torch.long), validate=False)
    with pytest.raises(
        ValueError, match=r"target has shape \(4, 1\) .*drop the trailing axis of size 1 with \.squeeze\(-1\)"
    ):
        weighted_cross_entropy(torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target has shape \(4, 1\) .*\.squeeze\(-1\)"):
        weighted_binary_cross_entropy(torch.zeros(4), torch.zeros(4, 1))


# ---- issue 10, item 13: masked and empty batches, label dtypes, soft labels, devices -----------


@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_empty_batch(loss):
    ce = loss is weighted_cross_entropy
    logits = torch.zeros(M, 0, C) if ce else torch.zeros(M, 0)
    target = torch.zeros(0, dtype=torch.long)
    sw = torch.ones(0)
    for normalization in ["batch_size", "weight_sum"]:
        with pytest.raises(ValueError, match=r"^the batch is empty \(B=0\): the mean is undefined"):
            loss(logits, target, sample_weight=sw, normalization=normalization)
    assert torch.equal(loss(logits, target, sample_weight=sw, reduction="sum"), torch.zeros(M))
    assert torch.equal(loss(logits, target, reduction="sum"), torch.zeros(M))
    assert loss(logits, target, sample_weight=sw, reduction="none").shape == (M, 0)


INT_DTYPES = [
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_every_integer_label_dtype_works(loss, dtype):
    ce = loss is weighted_cross_entropy
    logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=50, lead=(2,))
    for kw in [dict(), dict(class_weight=cw, sample_weight=sw, reduction="none")]:
        expected = loss(logits, target, **kw)
        assert torch.equal(loss(logits, target.to(dtype), **kw), expected)
    assert torch.equal(class_to_sample_weight(target.to(dtype), cw), class_to_sample_weight(target, cw))


def test_labels_beyond_the_dtype_range_of_the_class_count():
    # int8 label 100 with C=300 is valid: comparing in int8 would wrap 300 to 44 and reject it.
    logits = torch.zeros(2, 300, dtype=torch.float64)
    got = weighted_cross_entropy(logits, torch.tensor([100, 3], dtype=torch.int8))
    assert got.item() == pytest.approx(math.log(300))
    with pytest.raises(ValueError, match=r"label 18446744073709551615 at index 1 but logits has C=4 classes"):
        weighted_cross_entropy(torch.zeros(2, 4), torch.tensor([0, 2**64 - 1], dtype=torch.uint64))
    with pytest.raises(ValueError, match=r"label 255 at index 0 but logits has C=4"):
        weighted_cross_entropy(torch.zeros(1, 4), torch.tensor([255], dtype=torch.uint8))


def test_bool_labels_binary_only():
    z = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    y = torch.tensor([True, False, True])
    assert torch.equal(weighted_binary_cross_entropy(z, y), weighted_binary_cross_entropy(z, y.long()))
    with pytest.raises(ValueError, match=r"integer tensor of class indices; got torch.bool; convert bool labels"):
        weighted_cross_entropy(torch.zeros(3, 2), y)


@pytest.mark.parametrize("make", ["functional", "module"])
def test_binary_soft_labels_are_rejected(make):
    z = torch.zeros(3)
    y = torch.tensor([1.0, 0.5, 0.0])
    fn = weighted_binary_cross_entropy if make == "functional" else WeightedBCEWithLogitsLoss()
    with pytest.raises(ValueError) as info:
        fn(z, y)
    assert str(info.value) == (
        "target contains label 0.5 at index 1; binary labels must be 0 or 1 (soft labels are not supported)"
    )
    # Documented: validate=False reads any label other than 1 as 0.
    off = weighted_binary_cross_entropy(z, y, validate=False, reduction="none")
    assert torch.equal(off, weighted_binary_cross_entropy(z, torch.tensor([1, 0, 0]), reduction="none"))


@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_other_device_is_named_before_the_gather(loss):
    ce = loss is weighted_cross_entropy
    logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=60)
    meta = logits.to("meta")
    with pytest.raises(ValueError) as info:
        loss(meta, target, validate=False)
    assert str(info.value) == "target is on cpu but logits are on meta; move it with .to(logits.device)"
    for name, value in [("class_weight", cw), ("sample_weight", sw)]:
        kw = {"class_weight": cw.to("meta"), "sample_weight": sw.to("meta"), name: value}
        with pytest.raises(ValueError, match=rf"^{name} is on cpu but logits are on meta; move it"):
            loss(meta, target.to("meta"), validate=False, **kw)
    # All on one device is fine (meta: shapes only).
    out = loss(meta, target.to("meta"), class_weight=cw.to("meta"), sample_weight=sw.to("meta"), validate=False)
    assert out.device.type == "meta" and out.shape == ()


def test_module_class_weight_on_other_device_names_the_module():
    module = WeightedCrossEntropyLoss(class_weight=[1.0, 2.0], validate=False)
    with pytest.raises(ValueError) as info:
        module(torch.zeros(3, 2, device="meta"), torch.zeros(3, dtype=torch.long, device="meta"))
    assert str(info.value) == (
        "WeightedCrossEntropyLoss.class_weight is on cpu but logits are on meta; "
        "move the loss module with .to(logits.device)"
    )


def test_class_to_sample_weight_devices_and_types():
    with pytest.raises(ValueError, match=r"^class_weight is on meta but target is on cpu"):
        class_to_sample_weight(torch.tensor([0, 1]), torch.ones(2, device="meta"))
    with pytest.raises(TypeError, match=r"^class_weight must be a torch.Tensor; got list"):
        class_to_sample_weight(torch.tensor([0, 1]), [1.0, 2.0])


def test_non_tensor_arguments_get_a_type_error_naming_them():
    with pytest.raises(TypeError, match=r"^sample_weight must be a torch.Tensor; got list$"):
        weighted_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), sample_weight=[1.0, 1.0], validate=False)
    with pytest.raises(TypeError, match=r"^target must be a torch.Tensor; got list$"):
        weighted_binary_cross_entropy(torch.zeros(2), [0, 1])
    with pytest.raises(TypeError, match=r"^class_weight must be a real-valued tensor; got dtype torch.bool$"):
        weighted_binary_cross_entropy(torch.zeros(2), torch.tensor([0, 1]), class_weight=torch.ones(2).bool())
    with pytest.raises(ValueError, match=r"^logits must be float16, bfloat16, float32 or float64; got torch.float8"):
        weighted_binary_cross_entropy(torch.zeros(2).to(torch.float8_e4m3fn), torch.tensor([0, 1]))


def test_check_weights_allow_zero_sum_and_unsigned_dtypes():
    check_weights(torch.zeros(3), allow_zero_sum=True)
    with pytest.raises(ValueError, match="all zeros"):
        check_weights(torch.zeros(3))
    for dtype in [torch.uint16, torch.uint32, torch.uint64]:
        check_weights(torch.tensor([0, 3], dtype=dtype))
        with pytest.raises(ValueError, match=r"^w is all zeros"):
            check_weights(torch.zeros(2, dtype=dtype), name="w")


def test_module_sequence_class_weight_too_large_for_default_dtype():
    # 1e300 is a finite number: the error must say it does not fit float32, not that it is infinite.
    with pytest.raises(ValueError) as info:
        WeightedCrossEntropyLoss(class_weight=[1.0, 1e300])
    assert str(info.value) == (
        "class_weight has an entry (1e+300 at index 1) that the default dtype torch.float32 cannot represent; "
        "pass class_weight as a float64 tensor (and use float64 logits) or rescale the weights"
    )
    module = WeightedCrossEntropyLoss(class_weight=torch.tensor([1.0, 1e300], dtype=torch.float64))
    got = module(torch.zeros(2, 2, dtype=torch.float64), torch.tensor([1, 1]), torch.ones(2, dtype=torch.float64))
    assert got.item() == pytest.approx(1e300 * math.log(2), rel=1e-15)


# ---- on a real second device (skipped without CUDA) ---------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("loss", [weighted_cross_entropy, weighted_binary_cross_entropy])
def test_cuda_logits_with_cpu_tensors_name_the_argument(loss):
    ce = loss is weighted_cross_entropy
    logits, target, cw, sw = (_ce_inputs if ce else _bce_inputs)(seed=70)
    gpu = logits.cuda()
    dev = str(gpu.device)
    with pytest.raises(ValueError, match=rf"^target is on cpu but logits are on {dev}; move it with"):
        loss(gpu, target, validate=False)
    with pytest.raises(ValueError, match=rf"^sample_weight is on cpu but logits are on {dev}; move it with"):
        loss(gpu, target.cuda(), sample_weight=sw, validate=False)
    with pytest.raises(ValueError, match=rf"^class_weight is on cpu but logits are on {dev}; move it with"):
        loss(gpu, target.cuda(), class_weight=cw)
    # the same numbers as on the CPU, in float64 and for half logits (float32 loss)
    got = loss(gpu, target.cuda(), class_weight=cw.cuda(), sample_weight=sw.cuda(), normalization="weight_sum")
    expected = loss(logits, target, class_weight=cw, sample_weight=sw, normalization="weight_sum")
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=0)
    half = loss(gpu.half(), target.cuda(), sample_weight=torch.full_like(sw, 1e-8).cuda(), normalization="weight_sum")
    assert half.dtype == torch.float32
    ref = loss(
        logits.half().float(), target, sample_weight=torch.full_like(sw, 1e-8).float(), normalization="weight_sum"
    )
    torch.testing.assert_close(half.cpu(), ref, rtol=1e-5, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_pow2_is_exact():

    for dtype, (lo, hi) in [(torch.float32, (-126, 127)), (torch.float64, (-1022, 1023))]:
        k = torch.arange(lo, hi + 1, device="cuda")
        expected = torch.tensor([math.ldexp(1.0, i) for i in range(lo, hi + 1)], dtype=dtype)
        assert torch.equal(pow2(k, dtype).cpu(), expected)


def test_class_to_sample_weight_checks_the_weights():
    """Found by the bad-input hunt: NaN and negative class weights came back as sample weights."""
    with pytest.raises(ValueError, match="class_weight has a NaN entry at index 0"):
        class_to_sample_weight(torch.tensor([0, 1]), torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="class_weight has a negative entry"):
        class_to_sample_weight(torch.tensor([0, 1]), torch.tensor([1.0, -1.0]))
    assert class_to_sample_weight(torch.tensor([1, 0]), torch.tensor([0.0, 0.0])).tolist() == [0.0, 0.0]


def test_module_class_weight_too_large_for_any_float_is_a_value_error():
    with pytest.raises(ValueError, match="class_weight must be a sequence of numbers"):
        WeightedCrossEntropyLoss(class_weight=[1, 10**400])
