"""Reference tests for the imbalance remedies: polynomially-tailed, LDAM, logit-adjusted and VS losses (issue 15).

Expected values come from independent computations: each paper's formula written with Python's math in
float64, example by example (margins, log-sum-exp, the weighted reductions); Cao et al.'s LDAM code
transcribed line by line; torch's own cross-entropy where a loss must reduce to it; closed-form margins;
and torch.autograd.gradcheck.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from iwlab.functional import (
    binary_poly_tailed_loss,
    check_class_counts,
    ldam_loss,
    ldam_margins,
    logit_adjust,
    logit_adjusted_loss,
    poly_tailed_loss,
    vs_loss,
    weighted_cross_entropy,
)
from iwlab.losses import BinaryPolyTailedLoss, LDAMLoss, LogitAdjustedLoss, PolyTailedLoss, VSLoss

B, C, M = 7, 4, 3
COUNTS = [500, 120, 30, 8]
NORMALIZATIONS = ["batch_size", "weight_sum"]
REDUCTIONS = ["none", "sum", "mean"]
KINDS = ["logit", "linear", "exp"]


def _multiclass(seed, lead=(M,)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*lead, B, C, generator=g, dtype=torch.float64).mul(2)
    target = torch.randint(0, C, (*lead, B), generator=g)
    # raise the true logit of about half the examples, so that margins fall on both sides of 1
    boost = 3.0 * (torch.rand(*lead, B, 1, generator=g, dtype=torch.float64) > 0.5)
    logits = logits + boost * F.one_hot(target, C)
    class_weight = torch.rand(C, generator=g, dtype=torch.float64) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=torch.float64) + 0.1
    return logits, target, class_weight, sample_weight


def _binary(seed, lead=(M,)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*lead, B, generator=g, dtype=torch.float64).mul(2)
    target = torch.randint(0, 2, (*lead, B), generator=g)
    class_weight = torch.rand(2, generator=g, dtype=torch.float64) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=torch.float64) + 0.1
    return logits, target, class_weight, sample_weight


# ---- float64 references, one example at a time ------------------------------------------------------


def _poly(z, alpha, kind):
    """Wang et al.'s loss with the branches of issue 15, in Python floats."""
    if z >= 1:
        return z**-alpha / (alpha - 1) if kind == "linear" else z**-alpha
    if kind == "logit":
        return math.log1p(math.exp(-z)) / math.log1p(math.exp(-1))
    if kind == "linear":
        return alpha / (alpha - 1) - z
    return math.exp(1 - z)


def _ce(a, y):
    """-log softmax(a)[y] for a list of floats a."""
    top = max(a)
    return -(a[y] - top - math.log(math.fsum(math.exp(v - top) for v in a)))


def _margin(row, y):
    return row[y] - max(v for j, v in enumerate(row) if j != y)


def _reduce(losses, weights, normalization, reduction):
    """(M, B) nested lists of l_i and w_i, reduced as the IW-ERM losses document."""
    out = []
    for l_row, w_row in zip(losses, weights, strict=True):
        terms = [w * v for w, v in zip(w_row, l_row, strict=True)]
        if reduction == "none":
            out.append(terms)
        elif reduction == "sum":
            out.append(math.fsum(terms))
        elif normalization == "batch_size":
            out.append(math.fsum(terms) / len(terms))
        else:
            out.append(math.fsum(terms) / math.fsum(w_row))
    return torch.tensor(out, dtype=torch.float64)


def _reference(per_example, logits, target, cw, sw, normalization, reduction):
    """Apply ``per_example(row, y) -> l`` to every (model, example) and reduce with w = cw[y] * sw."""
    losses, weights = [], []
    for m in range(logits.shape[0]):
        losses.append([per_example(logits[m, i].tolist(), int(target[m, i])) for i in range(logits.shape[1])])
        weights.append([float(cw[int(target[m, i])]) * float(sw[m, i]) for i in range(logits.shape[1])])
    return _reduce(losses, weights, normalization, reduction)


def _log_prior(counts):
    total = math.fsum(counts)
    return [math.log(n / total) for n in counts]


def _la_example(tau, counts=COUNTS):
    lp = _log_prior(counts)
    return lambda row, y: _ce([v + tau * p for v, p in zip(row, lp, strict=True)], y)


def _vs_example(tau, gamma, counts=COUNTS):
    lp, top = _log_prior(counts), max(counts)
    return lambda row, y: _ce([(n / top) ** gamma * v + tau * p for v, n, p in zip(row, counts, lp, strict=True)], y)


def _ldam_example(max_margin, scale, counts=COUNTS):
    margins = [max_margin * (min(counts) / n) ** 0.25 for n in counts]
    return lambda row, y: _ce([scale * (v - (margins[c] if c == y else 0.0)) for c, v in enumerate(row)], y)


# ---- values against the references ------------------------------------------------------------------

CASES = {
    "la": (lambda: _la_example(1.0), lambda z, t, **kw: logit_adjusted_loss(z, t, COUNTS, **kw)),
    "la[tau=1.5]": (lambda: _la_example(1.5), lambda z, t, **kw: logit_adjusted_loss(z, t, COUNTS, tau=1.5, **kw)),
    "vs": (lambda: _vs_example(1.0, 0.2), lambda z, t, **kw: vs_loss(z, t, COUNTS, **kw)),
    "vs[tau=0.5,gamma=0.3]": (
        lambda: _vs_example(0.5, 0.3),
        lambda z, t, **kw: vs_loss(z, t, COUNTS, tau=0.5, gamma=0.3, **kw),
    ),
    "ldam": (lambda: _ldam_example(0.5, 30.0), lambda z, t, **kw: ldam_loss(z, t, COUNTS, **kw)),
    "ldam[1,2]": (
        lambda: _ldam_example(1.0, 2.0),
        lambda z, t, **kw: ldam_loss(z, t, COUNTS, max_margin=1.0, scale=2.0, **kw),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_prior_losses_match_the_float64_reference(case, normalization, reduction):
    make_example, loss = CASES[case]
    logits, target, cw, sw = _multiclass(0)
    out = loss(logits, target, class_weight=cw, sample_weight=sw, normalization=normalization, reduction=reduction)
    expected = _reference(make_example(), logits, target, cw, sw, normalization, reduction)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.5])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poly_tailed_losses_match_the_float64_reference(kind, alpha, normalization, reduction):
    if kind == "linear" and alpha <= 1:
        alpha += 1.0
    kw = dict(alpha=alpha, kind=kind, normalization=normalization, reduction=reduction)
    logits, target, cw, sw = _multiclass(1)
    out = poly_tailed_loss(logits, target, class_weight=cw, sample_weight=sw, **kw)
    expected = _reference(
        lambda r, y: _poly(_margin(r, y), alpha, kind), logits, target, cw, sw, normalization, reduction
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # the binary loss: the margin (2y - 1) f is the multiclass margin of the two logits [0, f]
    f, y, cw2, sw2 = _binary(2)
    out = binary_poly_tailed_loss(f, y, class_weight=cw2, sample_weight=sw2, **kw)
    rows = torch.stack([torch.zeros_like(f), f], -1)  # (M, B, 2): margin of class 1 is f, of class 0 is -f
    expected = _reference(lambda r, t: _poly(_margin(r, t), alpha, kind), rows, y, cw2, sw2, normalization, reduction)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_margins_on_both_sides_of_one_are_exercised():
    """The reference tests above mean something only if both branches occur."""
    logits, target, _, _ = _multiclass(1)
    z = torch.tensor(
        [
            [_margin(r.tolist(), int(y)) for r, y in zip(lr, ly, strict=True)]
            for lr, ly in zip(logits, target, strict=True)
        ]
    )
    assert (z >= 1).sum() >= 3 and (z < 0).sum() >= 3 and ((z >= 0) & (z < 1)).sum() >= 1
    f, y, _, _ = _binary(2)
    zb = torch.where(y == 1, f, -f)
    assert (zb >= 1).sum() >= 3 and (zb < 1).sum() >= 3


# ---- the coincidences ---------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_la_tau0_and_vs_gamma0_tau0_are_the_cross_entropy(normalization):
    logits, target, cw, sw = _multiclass(3)
    kw = dict(class_weight=cw, sample_weight=sw, normalization=normalization, reduction="none")
    ce = weighted_cross_entropy(logits, target, **kw)
    assert torch.equal(logit_adjusted_loss(logits, target, COUNTS, tau=0.0, **kw), ce)
    assert torch.equal(vs_loss(logits, target, COUNTS, tau=0.0, gamma=0.0, **kw), ce)
    # unweighted: torch's own
    plain = F.cross_entropy(logits.movedim(-1, 1), target, reduction="none")  # (M, C, B) layout
    torch.testing.assert_close(logit_adjusted_loss(logits, target, COUNTS, tau=0.0, reduction="none"), plain)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, reduction="none"), plain)


@pytest.mark.parametrize("tau", [0.0, 0.7, 1.0, -0.5])
def test_vs_gamma0_is_la(tau):
    logits, target, cw, sw = _multiclass(4)
    kw = dict(class_weight=cw, sample_weight=sw, reduction="none")
    assert torch.equal(
        vs_loss(logits, target, COUNTS, tau=tau, gamma=0.0, **kw),
        logit_adjusted_loss(logits, target, COUNTS, tau=tau, **kw),
    )


def test_vs_tau0_is_cdt():
    """Ye et al.'s CDT: the cross-entropy of logits scaled by (n_c / n_max)^gamma, via torch."""
    logits, target, _, _ = _multiclass(5, lead=())
    delta = (torch.tensor(COUNTS, dtype=torch.float64) / max(COUNTS)) ** 0.4
    torch.testing.assert_close(
        vs_loss(logits, target, COUNTS, tau=0.0, gamma=0.4), F.cross_entropy(logits * delta, target)
    )


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_ldam_with_equal_counts_and_no_margin_is_ce_of_scaled_logits(scale):
    logits, target, cw, sw = _multiclass(6)
    out = ldam_loss(logits, target, [7, 7, 7, 7], max_margin=0.0, scale=scale, class_weight=cw, sample_weight=sw)
    assert torch.equal(out, weighted_cross_entropy(scale * logits, target, class_weight=cw, sample_weight=sw))
    # equal counts: every class has the margin max_margin, and a common shift of the true logit is not CE(scale * l)
    shifted = ldam_loss(logits, target, [7, 7, 7, 7], max_margin=0.5, scale=scale, reduction="none")
    plain = ldam_loss(logits, target, [7, 7, 7, 7], max_margin=0.0, scale=scale, reduction="none")
    assert (shifted >= plain).all() and (shifted > plain).any()


def test_ldam_matches_cao_et_al_code():
    """Their LDAMLoss.forward (github.com/kaidic/LDAM-DRW, losses.py), transcribed; weight= is "weight_sum"."""
    logits, target, cw, _ = _multiclass(7, lead=())
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    m_list = 1.0 / torch.sqrt(torch.sqrt(counts))
    m_list = m_list * (0.5 / torch.max(m_list))
    index = torch.zeros_like(logits, dtype=torch.uint8)
    index.scatter_(1, target.view(-1, 1), 1)
    batch_m = torch.matmul(m_list[None, :], index.double().transpose(0, 1)).view((-1, 1))
    output = torch.where(index.bool(), logits - batch_m, logits)
    for weight, norm in ((None, "batch_size"), (cw, "weight_sum")):
        expected = F.cross_entropy(30.0 * output, target, weight=weight)
        torch.testing.assert_close(ldam_loss(logits, target, COUNTS, class_weight=weight, normalization=norm), expected)


def test_ldam_margins_by_hand():
    m = ldam_margins((5000, 500, 50))
    assert m.dtype == torch.float64
    expected = torch.tensor([0.5 * (n / 50) ** -0.25 for n in (5000, 500, 50)], dtype=torch.float64)
    torch.testing.assert_close(m, expected, rtol=1e-15, atol=0)
    assert m[2] == 0.5 and torch.equal(ldam_margins([3, 3]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.equal(ldam_margins([10, 1], max_margin=0.0), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_logit_adjust_argmax_matches_the_float64_reference(tau):
    logits, _, _, _ = _multiclass(8, lead=(5,))  # (5, B, C)
    adjusted = logit_adjust(logits, COUNTS, tau=tau)
    lp = _log_prior(COUNTS)
    rows = logits.reshape(-1, C).tolist()
    ref = [[v - tau * p for v, p in zip(r, lp, strict=True)] for r in rows]
    torch.testing.assert_close(adjusted.reshape(-1, C), torch.tensor(ref, dtype=torch.float64), rtol=1e-14, atol=1e-14)
    argmax = [max(range(C), key=lambda c, r=r: r[c]) for r in ref]
    assert adjusted.reshape(-1, C).argmax(-1).tolist() == argmax
    assert argmax != logits.reshape(-1, C).argmax(-1).tolist()  # the adjustment changes some predictions
    # float32 stays float32, half goes to float32 (the losses' compute dtype)
    assert logit_adjust(logits.float(), COUNTS).dtype == torch.float32
    assert logit_adjust(logits.half(), COUNTS).dtype == torch.float32


# ---- the polynomial tail: continuity, finite gradients, gradcheck --------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [1.5, 3.0])
def test_poly_is_continuous_at_one_from_both_sides(kind, alpha):
    at_one = 1.0 / (alpha - 1) if kind == "linear" else 1.0
    eps = torch.tensor([1e-12, 1e-9, 1e-6], dtype=torch.float64)
    f = torch.cat([1 - eps, torch.ones(1, dtype=torch.float64), 1 + eps])
    out = binary_poly_tailed_loss(f, torch.ones(7, dtype=torch.long), alpha=alpha, kind=kind, reduction="none")
    # |l(1 +- eps) - l(1)| <= |l'| eps with |l'| <= alpha / (alpha - 1) + 1 here
    torch.testing.assert_close(out, torch.full_like(out, at_one), rtol=0, atol=5 * 1e-6 + 1e-15)
    assert out[3] == at_one or abs(float(out[3]) - at_one) < 1e-15
    # the multiclass margin: logits [1, 0] for class 0
    z = torch.stack([f, torch.zeros_like(f)], -1)
    torch.testing.assert_close(
        poly_tailed_loss(z, torch.zeros(7, dtype=torch.long), alpha=alpha, kind=kind, reduction="none"), out
    )


@pytest.mark.parametrize("kind", KINDS)
def test_poly_values_and_gradients_are_finite_at_zero_and_far_out(kind):
    f = torch.tensor([0.0, 1e-300, -1e4, -50.0, 50.0, 1e4], dtype=torch.float64)
    if kind == "exp":
        f[2] = -700.0  # exp(701) is finite; exp(10001) is not representable (below)
    f.requires_grad_(True)
    out = binary_poly_tailed_loss(f, torch.ones(6, dtype=torch.long), alpha=2.0, kind=kind, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(f.grad).all()
    assert (f.grad[[0, 1, 2, 3]] < 0).all()  # decreasing in the margin below 1
    # multiclass: margins 0 and +-1e4, and their gradients
    z = torch.tensor([[0.0, 0.0], [1e4, 0.0], [-1e4 if kind != "exp" else -700.0, 0.0]], dtype=torch.float64)
    z.requires_grad_(True)
    loss = poly_tailed_loss(z, torch.zeros(3, dtype=torch.long), alpha=2.0, kind=kind, reduction="none")
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()


def test_poly_exp_overflow_is_an_error_not_inf():
    f = torch.tensor([-1e4, 2.0], dtype=torch.float64)
    for reduction in REDUCTIONS:
        with pytest.raises(ValueError, match=r"^the loss overflows torch.float64"):
            binary_poly_tailed_loss(f, torch.tensor([1, 1]), alpha=2.0, kind="exp", reduction=reduction)
        with pytest.raises(ValueError, match=r"^the loss overflows torch.float64"):
            poly_tailed_loss(
                torch.stack([f, torch.zeros(2, dtype=torch.float64)], -1),
                torch.tensor([0, 0]),
                alpha=2.0,
                kind="exp",
                reduction=reduction,
            )


@pytest.mark.parametrize("kind", KINDS)
def test_poly_gradcheck_away_from_the_kink(kind):
    f = torch.tensor([-3.0, -0.5, 0.0, 0.4, 0.9, 1.2, 2.5, 7.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 1, 1, 1, 1, 0, 1])
    sw = torch.rand(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    cw = torch.tensor([0.3, 1.7], dtype=torch.float64)
    torch.autograd.gradcheck(
        lambda x: binary_poly_tailed_loss(x, y, alpha=2.5, kind=kind, class_weight=cw, sample_weight=sw), (f,)
    )
    logits, target, cw4, sw4 = _multiclass(9)
    margins = torch.tensor(
        [
            [_margin(r.tolist(), int(t)) for r, t in zip(lr, lt, strict=True)]
            for lr, lt in zip(logits, target, strict=True)
        ]
    )
    assert (margins - 1).abs().min() > 1e-2  # away from the kink
    logits.requires_grad_(True)
    for norm in NORMALIZATIONS:

        def fn(x, n=norm):
            return poly_tailed_loss(
                x, target, alpha=2.5, kind=kind, class_weight=cw4, sample_weight=sw4, normalization=n
            )

        torch.autograd.gradcheck(fn, (logits,))


@pytest.mark.parametrize("loss", ["la", "vs", "ldam"])
def test_prior_losses_gradcheck(loss):
    logits, target, cw, sw = _multiclass(10)
    logits.requires_grad_(True)
    fn = {
        "la": lambda x: logit_adjusted_loss(x, target, COUNTS, tau=1.3, class_weight=cw, sample_weight=sw),
        "vs": lambda x: vs_loss(x, target, COUNTS, class_weight=cw, sample_weight=sw, normalization="weight_sum"),
        "ldam": lambda x: ldam_loss(x, target, COUNTS, scale=3.0, class_weight=cw, sample_weight=sw),
    }[loss]
    torch.autograd.gradcheck(fn, (logits,))


# ---- modules -------------------------------------------------------------------------------------------


def test_modules_equal_their_functional_forms_and_keep_counts_as_float64_buffers():
    logits, target, cw, sw = _multiclass(11)
    f, y, cw2, sw2 = _binary(12)
    kw = dict(class_weight=cw, sample_weight=sw, normalization="weight_sum")
    pairs = [
        (
            PolyTailedLoss(2.0, "exp", cw, "weight_sum")(logits, target, sw),
            poly_tailed_loss(logits, target, alpha=2.0, kind="exp", **kw),
        ),
        (
            LDAMLoss(COUNTS, 0.3, 5.0, cw, "weight_sum")(logits, target, sw),
            ldam_loss(logits, target, COUNTS, max_margin=0.3, scale=5.0, **kw),
        ),
        (
            LogitAdjustedLoss(COUNTS, 1.5, cw, "weight_sum")(logits, target, sw),
            logit_adjusted_loss(logits, target, COUNTS, tau=1.5, **kw),
        ),
        (
            VSLoss(COUNTS, 0.5, 0.1, cw, "weight_sum")(logits, target, sw),
            vs_loss(logits, target, COUNTS, tau=0.5, gamma=0.1, **kw),
        ),
        (
            BinaryPolyTailedLoss(3.0, "linear", cw2, reduction="none")(f, y, sw2),
            binary_poly_tailed_loss(
                f, y, alpha=3.0, kind="linear", class_weight=cw2, sample_weight=sw2, reduction="none"
            ),
        ),
    ]
    for module_out, functional_out in pairs:
        assert torch.equal(module_out, functional_out)
    module = VSLoss(torch.tensor(COUNTS), class_weight=cw)
    assert module.class_counts.dtype == torch.float64 and "class_counts" in module.state_dict()
    assert (
        repr(module)
        == "VSLoss(tau=1, gamma=0.2, classes=4, class_weight_shape=(4,), normalization='batch_size', reduction='mean')"
    )
    assert "class_counts" not in PolyTailedLoss(2.0).state_dict()


def test_module_counts_on_another_device_are_named():
    module = LogitAdjustedLoss(COUNTS)
    logits, target, _, _ = _multiclass(13, lead=())
    with pytest.raises(ValueError, match=r"^LogitAdjustedLoss.class_counts is on cpu but logits are on meta"):
        module(logits.to("meta"), target.to("meta"))
    with pytest.raises(ValueError, match=r"^class_counts is on meta but logits are on cpu; move it with"):
        logit_adjusted_loss(logits, target, torch.tensor(COUNTS, device="meta"))


# ---- refusals ------------------------------------------------------------------------------------------

Z, Y = torch.zeros(2, 3), torch.tensor([0, 2])

BAD = [
    # class counts, shared by every counts-taking function
    (
        lambda c: logit_adjusted_loss(Z, Y, c),
        [5, 0, 2],
        ValueError,
        r"^class_counts\[1\] is 0: class 1 has no examples",
    ),
    (lambda c: vs_loss(Z, Y, c), [5, -1, 2], ValueError, r"^class_counts\[1\] is -1; counts must be >= 0"),
    (
        lambda c: ldam_loss(Z, Y, c),
        torch.tensor([5.0, math.nan, 2.0]),
        ValueError,
        r"^class_counts\[1\] is nan; counts must be finite",
    ),
    (
        lambda c: ldam_loss(Z, Y, c),
        [5, 2],
        ValueError,
        r"^class_counts has 2 entries but logits has shape \(2, 3\) \(C=3 classes\)",
    ),
    (lambda c: logit_adjust(Z, c), torch.ones(1, 3), ValueError, r"^class_counts must be a non-empty 1-d sequence"),
    (lambda c: ldam_margins(c), [5, 2.5], ValueError, r"^class_counts\[1\] is 2.5; counts must be finite integers"),
    (lambda c: LDAMLoss(c), [5, 0], ValueError, r"^class_counts\[1\] is 0"),
    (
        lambda c: VSLoss(c, class_weight=[1.0, 2.0]),
        [5, 2, 1],
        ValueError,
        r"^class_weight has shape \(2,\) but class_counts has 3 entries",
    ),
    (
        lambda c: logit_adjusted_loss(Z, Y, c),
        [True, 2, 3],
        TypeError,
        r"^class_counts\[0\] must be an integer count; got bool",
    ),
    # hyperparameters
    (
        lambda a: poly_tailed_loss(Z, Y, alpha=a),
        0.0,
        ValueError,
        r"^alpha must be a finite number > 0 for kind='logit'; got 0.0",
    ),
    (
        lambda a: poly_tailed_loss(Z, Y, alpha=a, kind="exp"),
        -1.0,
        ValueError,
        r"^alpha must be a finite number > 0 for kind='exp'",
    ),
    (
        lambda a: binary_poly_tailed_loss(Z[0], Y[:2].clamp(max=1), alpha=a, kind="linear"),
        1.0,
        ValueError,
        r"^alpha must be a finite number > 1 for kind='linear'",
    ),
    (lambda a: poly_tailed_loss(Z, Y, alpha=a), math.nan, ValueError, r"^alpha must be a finite number > 0"),
    (lambda a: poly_tailed_loss(Z, Y, alpha=a), math.inf, ValueError, r"^alpha must be a finite number > 0"),
    (lambda a: PolyTailedLoss(a), True, TypeError, r"^alpha must be a real number, got bool"),
    (
        lambda k: poly_tailed_loss(Z, Y, alpha=2.0, kind=k),
        "poly",
        ValueError,
        r"^kind must be one of 'logit', 'linear', 'exp'; got 'poly'",
    ),
    (lambda k: BinaryPolyTailedLoss(2.0, k), "hinge", ValueError, r"^kind must be one of"),
    (
        lambda m: ldam_loss(Z, Y, [3, 2, 1], max_margin=m),
        -0.1,
        ValueError,
        r"^max_margin must be a finite number >= 0; got -0.1",
    ),
    (
        lambda m: ldam_margins([3, 2, 1], max_margin=m),
        math.nan,
        ValueError,
        r"^max_margin must be a finite number >= 0; got nan",
    ),
    (lambda s: ldam_loss(Z, Y, [3, 2, 1], scale=s), 0.0, ValueError, r"^scale must be a finite number > 0; got 0.0"),
    (lambda s: LDAMLoss([3, 2, 1], scale=s), -2.0, ValueError, r"^scale must be a finite number > 0; got -2.0"),
    (
        lambda t: logit_adjusted_loss(Z, Y, [3, 2, 1], tau=t),
        math.nan,
        ValueError,
        r"^tau must be a finite number; got nan",
    ),
    (lambda t: logit_adjust(Z, [3, 2, 1], tau=t), math.inf, ValueError, r"^tau must be a finite number; got inf"),
    (lambda g: vs_loss(Z, Y, [3, 2, 1], gamma=g), math.nan, ValueError, r"^gamma must be a finite number; got nan"),
    (lambda g: VSLoss([3, 2, 1], gamma=g), "0.2", TypeError, r"^gamma must be a real number, got str"),
    # targets
    (
        lambda t: vs_loss(Z, t, [3, 2, 1]),
        torch.tensor([0.0, 1.0]),
        ValueError,
        r"^target must be an integer tensor of class indices; got torch.float32 \(vs_loss",
    ),
    (lambda t: poly_tailed_loss(Z, t, alpha=1.0), torch.tensor([0, 3]), ValueError, r"^target contains label 3"),
]


@pytest.mark.parametrize(("call", "value", "error", "message"), BAD, ids=[b[3][:40] for b in BAD])
def test_bad_inputs_are_refused_with_one_line_naming_the_argument(call, value, error, message):
    with pytest.raises(error, match=message) as info:
        call(value)
    assert "\n" not in str(info.value)


def test_check_class_counts():
    assert torch.equal(check_class_counts([3, 1]), torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert check_class_counts(torch.tensor([3, 1], dtype=torch.int32)).dtype == torch.float64
    # values=False checks the shape only (what a loss's validate=False does; no device sync)
    assert torch.equal(
        check_class_counts(torch.tensor([3.0, 0.0]), values=False), torch.tensor([3.0, 0.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match=r"^class_counts must be a non-empty 1-d"):
        check_class_counts(torch.ones(2, 2), values=False)
