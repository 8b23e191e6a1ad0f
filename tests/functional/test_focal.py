"""Reference tests for iwlab.functional.losses_focal (focal loss) and class_balanced_weights.

Expected values come from independent computations: the focal formula of Lin et al. (2017, eq. 4) written
with Python's math on probabilities in float64, closed-form derivatives, torch.autograd.gradcheck, the
cross-entropy of iwlab.functional.losses (which gamma = 0 must reproduce exactly), and Cui et al.'s
(2019) weights written out by hand.
"""

import math

import pytest
import torch

import iwlab.losses
from iwlab.functional import (
    binary_focal_loss,
    class_balanced_weights,
    focal_loss,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)
from iwlab.losses import BinaryFocalLoss, FocalLoss

B, C, M = 7, 4, 3
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
NORMALIZATIONS = ["batch_size", "weight_sum"]
REDUCTIONS = ["none", "sum", "mean"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _multiclass(seed, dtype=torch.float64, lead=(M,)):
    g = _gen(seed)
    logits = torch.randn(*lead, B, C, generator=g, dtype=torch.float64).mul(3).to(dtype)
    target = torch.randint(0, C, (*lead, B), generator=g)
    class_weight = (torch.rand(*lead, C, generator=g, dtype=torch.float64) + 0.1).to(dtype)  # one per model
    sample_weight = (torch.rand(*lead, B, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    return logits, target, class_weight, sample_weight


def _binary(seed, dtype=torch.float64, lead=(M,)):
    g = _gen(seed)
    logits = torch.randn(*lead, B, generator=g, dtype=torch.float64).mul(3).to(dtype)
    target = torch.randint(0, 2, (*lead, B), generator=g)
    class_weight = (torch.rand(2, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    sample_weight = (torch.rand(*lead, B, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    return logits, target, class_weight, sample_weight


def _reference(pt, w, gamma, normalization, reduction):
    """Lin et al.'s eq. 4 on probabilities, weighted and reduced, in Python floats: pt, w are (M, B) lists."""
    rows = []
    for pt_row, w_row in zip(pt, w, strict=True):
        terms = [wi * -((1.0 - p) ** gamma) * math.log(p) for p, wi in zip(pt_row, w_row, strict=True)]
        if reduction == "none":
            rows.append(terms)
        elif reduction == "sum":
            rows.append(math.fsum(terms))
        elif normalization == "batch_size":
            rows.append(math.fsum(terms) / len(terms))
        else:
            rows.append(math.fsum(terms) / math.fsum(w_row))
    return torch.tensor(rows, dtype=torch.float64)


def _multiclass_pt_w(logits, target, cw, sw):
    pt, w = [], []
    for m in range(logits.shape[0]):
        pt.append([])
        w.append([])
        for i in range(logits.shape[1]):
            z = logits[m, i].double().tolist()
            y = int(target[m, i])
            pt[-1].append(math.exp(z[y]) / math.fsum(math.exp(v) for v in z))
            w[-1].append(float(cw[m, y]) * float(sw[m, i]))
    return pt, w


def _binary_pt_w(logits, target, cw, sw):
    pt, w = [], []
    for m in range(logits.shape[0]):
        pt.append([])
        w.append([])
        for i in range(logits.shape[1]):
            z, y = float(logits[m, i]), int(target[m, i])
            p1 = 1.0 / (1.0 + math.exp(-z))  # sigmoid(z) = P(y = 1)
            pt[-1].append(p1 if y == 1 else 1.0 - p1)
            w[-1].append(float(cw[y]) * float(sw[m, i]))
    return pt, w


# ---- values against the formula -------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_multiclass_matches_the_formula(gamma, normalization, reduction, dtype):
    logits, target, cw, sw = _multiclass(0, dtype)
    out = focal_loss(
        logits, target, gamma=gamma, class_weight=cw, sample_weight=sw, normalization=normalization, reduction=reduction
    )
    expected = _reference(*_multiclass_pt_w(logits, target, cw, sw), gamma, normalization, reduction)
    assert out.dtype == dtype
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(out.double(), expected, **tol)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_binary_matches_the_formula(gamma, normalization, reduction, dtype):
    logits, target, cw, sw = _binary(1, dtype)
    out = binary_focal_loss(
        logits, target, gamma=gamma, class_weight=cw, sample_weight=sw, normalization=normalization, reduction=reduction
    )
    expected = _reference(*_binary_pt_w(logits, target, cw, sw), gamma, normalization, reduction)
    assert out.dtype == dtype
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(out.double(), expected, **tol)


def test_the_factor_keeps_its_relative_precision_as_p_t_goes_to_1():
    # z = 20: 1 - p_t = sigmoid(-20) = 2e-9; 1 - sigmoid(20) in floating point keeps only ~7 digits of it.
    z = torch.tensor([20.0, 30.0], dtype=torch.float64)
    out = binary_focal_loss(z, torch.tensor([1, 1]), gamma=2.0, reduction="none")
    expected = [(1 / (1 + math.exp(v))) ** 2 * math.log1p(math.exp(-v)) for v in (20.0, 30.0)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-13, atol=0)
    # multiclass: p_t = 1 / (1 + e^-25), 1 - p_t = e^-25 / (1 + e^-25)
    out = focal_loss(torch.tensor([[25.0, 0.0]], dtype=torch.float64), torch.tensor([0]), gamma=0.5)
    q = math.exp(-25) / (1 + math.exp(-25))
    torch.testing.assert_close(out, torch.tensor(q**0.5 * math.log1p(math.exp(-25)), dtype=torch.float64))


def test_gamma_down_weights_easy_examples_more_than_hard_ones():
    # Lin et al. Sec. 3.2: with gamma = 2 an example at p_t = 0.9 has 100x lower loss than CE, at p_t ~ 0.97 ~1000x
    z = torch.tensor([[math.log(9.0), 0.0], [0.0, 0.0]], dtype=torch.float64)  # p_t = 0.9 and 0.5
    ratio = focal_loss(z, torch.tensor([0, 0]), gamma=2.0, reduction="none") / weighted_cross_entropy(
        z, torch.tensor([0, 0]), reduction="none"
    )
    torch.testing.assert_close(ratio, torch.tensor([0.01, 0.25], dtype=torch.float64))


# ---- gamma = 0 is the cross-entropy, exactly --------------------------------------------------------


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_gamma_zero_is_exactly_the_weighted_cross_entropy(normalization, reduction, dtype):
    for focal, ce, inputs in (
        (focal_loss, weighted_cross_entropy, _multiclass(2, dtype)),
        (binary_focal_loss, weighted_binary_cross_entropy, _binary(3, dtype)),
    ):
        logits, target, cw, sw = inputs
        kw = {"class_weight": cw, "sample_weight": sw, "normalization": normalization, "reduction": reduction}
        a = logits.clone().requires_grad_(True)
        b = logits.clone().requires_grad_(True)
        out, ref = focal(a, target, gamma=0.0, **kw), ce(b, target, **kw)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        out.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


# ---- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
def test_multiclass_gradcheck_also_where_p_t_is_1(gamma):
    # rows: moderate logits; p_t = 1 - 1e-13 (margin 30); p_t rounding to exactly 1 (margin 60: 1 - p_t == 0)
    logits = torch.tensor(
        [[0.3, -1.2, 2.0], [30.0, 0.0, -1.0], [0.0, 60.0, 1.0], [-2.0, 0.5, 0.1]], dtype=torch.float64
    ).requires_grad_(True)
    target = torch.tensor([2, 0, 1, 0])
    sw = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    for normalization in NORMALIZATIONS:

        def fn(z, normalization=normalization):
            return focal_loss(z, target, gamma=gamma, sample_weight=sw, normalization=normalization)

        assert torch.autograd.gradcheck(fn, (logits,))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_binary_gradcheck_also_where_p_t_is_1(gamma):
    # 1 - p_t: ~0.3, 1e-13 (z = 30), 2e-22 (z = 50, logsigmoid keeps it), exactly 0 (z = 800)
    logits = torch.tensor([0.8, 30.0, 50.0, 800.0, -800.0, -3.0], dtype=torch.float64).requires_grad_(True)
    target = torch.tensor([1, 1, 1, 1, 0, 1])
    assert torch.autograd.gradcheck(lambda z: binary_focal_loss(z, target, gamma=gamma, reduction="sum"), (logits,))


def _binary_focal_grad(z, gamma):
    """dL/dz of L = -(1 - s(z))^gamma log s(z) (label 1) in closed form: q^gamma (gamma p log p - q), float64."""
    p = 1.0 / (1.0 + math.exp(-z))
    q = 1.0 / (1.0 + math.exp(z))  # 1 - p without cancellation
    log_p = -math.log1p(math.exp(-z))
    return q**gamma * (gamma * p * log_p - q)


@pytest.mark.parametrize("gamma", [0.01, 0.5, 1.0, 2.0])
def test_binary_gradient_matches_the_closed_form_up_to_large_margins_in_float32(gamma):
    # float32, label 1, z up to 100: 1 - p_t = e^-z is subnormal there, and gamma < 1 makes q^(gamma - 1)
    # overflow float32 (a pow-based factor would give inf or NaN gradients)
    zs = [-20.0, -3.0, 0.0, 2.0, 10.0, 30.0, 60.0, 87.0, 100.0]
    z = torch.tensor(zs, requires_grad=True)
    binary_focal_loss(z, torch.ones(len(zs), dtype=torch.long), gamma=gamma, reduction="sum").backward()
    assert torch.isfinite(z.grad).all()
    expected = torch.tensor([_binary_focal_grad(v, gamma) for v in zs], dtype=torch.float64)
    torch.testing.assert_close(z.grad.double(), expected, rtol=1e-4, atol=1e-30)


def test_multiclass_gradient_matches_the_closed_form():
    # dL/dz_k = dL/ds (1[k = y] - p_k) with s = log p_t and dL/ds = -q^gamma (1 + gamma p_t (-s) / q), q = 1 - p_t
    logits = torch.tensor([[1.0, -0.5, 0.2], [12.0, 0.0, -3.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 0])
    gamma = 1.5
    focal_loss(logits, target, gamma=gamma, reduction="sum").backward()
    for i, y in enumerate(target.tolist()):
        z = logits[i].tolist()
        total = math.fsum(math.exp(v) for v in z)
        p = [math.exp(v) / total for v in z]
        q = math.fsum(p[k] for k in range(3) if k != y)
        s = math.log(p[y])
        dl_ds = -(q**gamma) * (1 + gamma * p[y] * -s / q)
        expected = [dl_ds * ((k == y) - p[k]) for k in range(3)]
        torch.testing.assert_close(logits.grad[i], torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_logits_of_1e4_give_finite_losses_and_gradients_in_float32(gamma):
    big = 1e4
    logits = torch.tensor([[big, -big, 0.0], [big, -big, 0.0], [-big, big, big]], requires_grad=True)
    target = torch.tensor([0, 1, 2])  # right with margin 1e4 (p_t == 1), wrong by 2e4, a tie at the top
    out = focal_loss(logits, target, gamma=gamma, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(logits.grad).all()
    # p_t = 1: 0; p_t = e^-2e4: factor 1, -log p_t = 2e4; tie: p_t = 1/2
    expected = torch.tensor([0.0, 2 * big, 0.5**gamma * math.log(2)])
    torch.testing.assert_close(out, expected)

    z = torch.tensor([big, -big, big, -big], requires_grad=True)
    out = binary_focal_loss(z, torch.tensor([1, 1, 0, 0]), gamma=gamma, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    torch.testing.assert_close(out, torch.tensor([0.0, big, big, 0.0]))


# ---- arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gamma", "error"),
    [(True, TypeError), ("2", TypeError), (float("nan"), ValueError), (math.inf, ValueError), (-0.5, ValueError)],
    ids=["bool", "str", "nan", "inf", "negative"],
)
def test_bad_gamma_is_refused_naming_it(gamma, error):
    logits, target, _, _ = _multiclass(4, lead=())
    calls = [
        lambda: focal_loss(logits, target, gamma=gamma),
        lambda: binary_focal_loss(logits[:, 0], target.clamp(max=1), gamma=gamma),
        lambda: FocalLoss(gamma),
        lambda: BinaryFocalLoss(gamma=gamma),
    ]
    for call in calls:
        with pytest.raises(error, match=r"^gamma must be") as info:
            call()
        assert "\n" not in str(info.value)


def test_layout_mistakes_point_at_the_other_loss():
    logits = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"^target must be an integer tensor of class indices; got torch.float32"):
        focal_loss(logits, torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"target must be an integer tensor of class indices; got torch.bool"):
        focal_loss(logits, torch.zeros(5, dtype=torch.bool))
    for z in (torch.zeros(5), torch.zeros(5, 1)):
        with pytest.raises(ValueError, match=r"C >= 2; .*use binary_focal_loss"):
            focal_loss(z, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"for one model pass logits.squeeze\(-1\)"):
        binary_focal_loss(torch.zeros(5, 1), torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^target contains label 3 at index 1 but logits has C=3"):
        focal_loss(logits, torch.tensor([0, 3, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"^target contains label 0.5 at index 0; binary labels must be 0 or 1"):
        binary_focal_loss(torch.zeros(2), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"class_weight of a binary loss must have shape \(2,\)"):
        BinaryFocalLoss(class_weight=[1.0, 2.0, 3.0])


def test_modules_hold_their_arguments_and_match_the_functions():
    logits, target, cw, sw = _multiclass(5, lead=())
    module = FocalLoss(0.5, cw, "weight_sum", "mean")
    assert torch.equal(module.state_dict()["class_weight"], cw)
    assert "gamma=0.5" in repr(module)
    ref = focal_loss(logits, target, gamma=0.5, class_weight=cw, sample_weight=sw, normalization="weight_sum")
    torch.testing.assert_close(module(logits, target, sample_weight=sw), ref, rtol=0, atol=0)
    z, y, bcw, bsw = _binary(6, lead=())
    module = BinaryFocalLoss(gamma=1.0, class_weight=bcw, reduction="none")
    ref = binary_focal_loss(z, y, gamma=1.0, class_weight=bcw, sample_weight=bsw, reduction="none")
    torch.testing.assert_close(module(z, y, bsw), ref, rtol=0, atol=0)
    assert {"FocalLoss", "BinaryFocalLoss"} <= set(iwlab.losses.__all__)
    assert all(hasattr(iwlab.losses, name) for name in iwlab.losses.__all__)


# ---- class_balanced_weights (Cui et al. 2019) --------------------------------------------------------


def test_class_balanced_weights_by_hand():
    beta, counts = 0.999, (5000, 500, 50)
    raw = [(1 - beta) / (1 - beta**n) for n in counts]  # Cui et al.: 1 / E_n, E_n = (1 - beta^n) / (1 - beta)
    expected = torch.tensor([3 * r / sum(raw) for r in raw], dtype=torch.float64)
    for given in (counts, list(counts), torch.tensor(counts), torch.tensor(counts, dtype=torch.float32)):
        w = class_balanced_weights(given, beta=0.999)
        assert w.dtype == torch.float64 and w.shape == (3,)
        torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(w.sum(), torch.tensor(3.0, dtype=torch.float64), rtol=1e-15, atol=0)
    assert class_balanced_weights(counts, 0.999, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("counts", [(5000, 500, 50), (1, 2, 3, 10**6), (7,)])
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9, 0.9999, 1 - 2**-52])
def test_class_balanced_weights_sum_to_the_number_of_classes(counts, beta):
    w = class_balanced_weights(counts, beta)
    assert torch.isfinite(w).all() and (w > 0).all()
    torch.testing.assert_close(w.sum(), torch.tensor(float(len(counts)), dtype=torch.float64), rtol=1e-14, atol=0)
    # the rarer the class, the larger (or, for beta = 0, equal) its weight
    order = sorted(range(len(counts)), key=lambda c: counts[c])
    assert all(w[a] >= w[b] for a, b in zip(order, order[1:], strict=False))


def test_class_balanced_weights_limits():
    assert torch.equal(class_balanced_weights([5000, 500, 50], beta=0.0), torch.ones(3, dtype=torch.float64))
    # beta -> 1: 1 - beta^n = n (1 - beta) (1 - (n - 1)(1 - beta) / 2 + ...), so the weights approach the
    # normalized inverse frequencies; with n (1 - beta) <= 5e-3 here the relative gap is below 2.5e-3
    inverse = torch.tensor([1 / 5000, 1 / 500, 1 / 50], dtype=torch.float64)
    torch.testing.assert_close(
        class_balanced_weights([5000, 500, 50], beta=0.999999), 3 * inverse / inverse.sum(), rtol=3e-3, atol=0
    )


@pytest.mark.parametrize(
    ("counts", "beta", "error", "message"),
    [
        ([5000, 0, 50], 0.9, ValueError, r"^class_counts\[1\] is 0: class 1 has no examples"),
        ([5, -2], 0.9, ValueError, r"^class_counts\[1\] is -2; counts must be >= 0"),
        (torch.tensor([5, -2]), 0.9, ValueError, r"^class_counts\[1\] is -2; counts must be >= 0"),
        ([3.0, 2.5], 0.9, ValueError, r"^class_counts\[1\] is 2.5; counts must be finite integers"),
        (torch.tensor([3.0, math.nan]), 0.9, ValueError, r"^class_counts\[1\] is nan; counts must be finite"),
        ([], 0.9, ValueError, r"^class_counts must be a non-empty 1-d sequence"),
        ([True, 3], 0.9, TypeError, r"^class_counts\[0\] must be an integer count; got bool"),
        (torch.tensor([True, False]), 0.9, TypeError, r"^class_counts must be a real tensor of counts"),
        ([3, 4], 1.0, ValueError, r"^beta must be in \[0, 1\); got 1.0"),
        ([3, 4], -0.1, ValueError, r"^beta must be in \[0, 1\); got -0.1"),
        ([3, 4], math.nan, ValueError, r"^beta must be in \[0, 1\); got nan"),
        ([3, 4], True, TypeError, r"^beta must be a real number, got bool"),
    ],
)
def test_class_balanced_weights_refusals(counts, beta, error, message):
    with pytest.raises(error, match=message) as info:
        class_balanced_weights(counts, beta)
    assert "\n" not in str(info.value)
