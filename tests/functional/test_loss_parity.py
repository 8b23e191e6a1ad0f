"""Parity of the weighted losses with nn.CrossEntropyLoss / BCEWithLogitsLoss (issue 13, part 3).

Where iwlab's definition coincides with torch's (ignore_index, label smoothing without class weights,
probability targets, the (N, C, d1, ..., dk) layout, multi-label BCE with pos_weight) the reference is
torch's own function, values and gradients. Where it differs by design (class-weighted label smoothing,
soft targets under "weight_sum", sample weights) the reference is a hand formula in float64 over plain
Python floats, and one test shows torch's number differs.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from iwlab.functional import weighted_cross_entropy, weighted_multilabel_binary_cross_entropy
from iwlab.losses import WeightedCrossEntropyLoss, WeightedMultiLabelBCEWithLogitsLoss

B, C, M, L = 8, 4, 3, 5
F64 = torch.float64
REDUCTIONS = ["none", "sum", "mean"]
NORMALIZATIONS = ["batch_size", "weight_sum"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _inputs(seed, lead=(), ignore=None):
    """Logits (..., B, C), labels (..., B) (a few set to ``ignore``), class and sample weights, float64."""
    g = _gen(seed)
    z = torch.randn(*lead, B, C, generator=g, dtype=F64) * 2
    y = torch.randint(0, C, (*lead, B), generator=g)
    if ignore is not None:
        y[..., ::3] = ignore
    cw = torch.rand(C, generator=g, dtype=F64) + 0.1
    sw = torch.rand(*lead, B, generator=g, dtype=F64) + 0.1
    return z, y, cw, sw


def _probs(seed, shape, dim=-1):
    g = _gen(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=F64) * 2, dim=dim)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _grad(fn, *tensors):
    """Gradients of fn(*tensors).sum() w.r.t. fresh leaf copies of the tensors."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    fn(*leaves).sum().backward()
    return [t.grad for t in leaves]


# ---- float64 hand formulas over Python floats --------------------------------------------------


def _logp(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _reduce(terms, weights, count, normalization, reduction):
    if reduction == "none":
        return terms
    if reduction == "sum":
        return sum(terms)
    return sum(terms) / (sum(weights) if normalization == "weight_sum" else count)


def ref_hard(z, y, cw, sw, eps, ignore, normalization, reduction):
    """iwlab's definition: w_i = cw[y_i] s_i times the whole smoothed loss; ignored: 0 and not counted."""
    terms, weights, count = [], [], 0
    for i, (row, label) in enumerate(zip(z.tolist(), y.tolist(), strict=True)):
        if label == ignore:
            terms.append(0.0)
            weights.append(0.0)
            continue
        lp = _logp(row)
        loss = (1 - eps) * -lp[label] + eps / len(row) * sum(-v for v in lp)
        w = (1.0 if cw is None else cw[label].item()) * (1.0 if sw is None else sw[i].item())
        terms.append(w * loss)
        weights.append(w)
        count += 1
    return _reduce(terms, weights, count, normalization, reduction)


def ref_soft(z, t, cw, sw, eps, normalization, reduction):
    """Soft targets: s_i sum_c cw_c t'_ic (-log p_ic); the example's weight s_i sum_c cw_c t'_ic."""
    terms, weights = [], []
    for i, (row, probs) in enumerate(zip(z.tolist(), t.tolist(), strict=True)):
        lp = _logp(row)
        tt = [(1 - eps) * p + eps / len(row) for p in probs]
        c = [1.0] * len(row) if cw is None else cw.tolist()
        s = 1.0 if sw is None else sw[i].item()
        terms.append(s * sum(c[k] * tt[k] * -lp[k] for k in range(len(row))))
        weights.append(s * (1.0 if cw is None else sum(c[k] * tt[k] for k in range(len(row)))))
    return _reduce(terms, weights, len(terms), normalization, reduction)


def _t(value):
    return torch.tensor(value, dtype=F64)


# ---- 1. ignore_index ------------------------------------------------------------------------------


@pytest.mark.parametrize("ignore", [-100, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_ignore_index_unit_weights_equal_torch(ignore, reduction, normalization):
    z, y, _, _ = _inputs(0, lead=(M,), ignore=ignore)
    fn = lambda x: weighted_cross_entropy(  # noqa: E731
        x, y, ignore_index=ignore, normalization=normalization, reduction=reduction
    )

    # torch reduces over all models at once; ours per model: compare model by model
    def ref(x):
        return torch.stack([F.cross_entropy(x[m], y[m], ignore_index=ignore, reduction=reduction) for m in range(M)])

    _close(fn(z), ref(z))
    _close(*_grad(fn, z), *_grad(ref, z))


def test_ignore_index_class_weight_weight_sum_equals_torch_and_batch_size_the_hand_formula():
    z, y, cw, sw = _inputs(1, ignore=-100)
    got = weighted_cross_entropy(z, y, class_weight=cw, ignore_index=-100, normalization="weight_sum")
    _close(got, F.cross_entropy(z, y, weight=cw, ignore_index=-100))
    mine = _grad(
        lambda x: weighted_cross_entropy(x, y, class_weight=cw, ignore_index=-100, normalization="weight_sum"), z
    )
    _close(*mine, *_grad(lambda x: F.cross_entropy(x, y, weight=cw, ignore_index=-100), z))
    for normalization in NORMALIZATIONS:
        for reduction in REDUCTIONS:
            got = weighted_cross_entropy(
                z,
                y,
                class_weight=cw,
                sample_weight=sw,
                ignore_index=-100,
                normalization=normalization,
                reduction=reduction,
            )
            _close(got, _t(ref_hard(z, y, cw, sw, 0.0, -100, normalization, reduction)))


def test_fully_ignored_model_is_zero_under_batch_size_and_an_error_under_weight_sum():
    z, y, cw, sw = _inputs(2, lead=(2,))
    y[1] = -100  # model 1: every target ignored
    x = z.clone().requires_grad_(True)
    s = sw.clone().requires_grad_(True)
    out = weighted_cross_entropy(x, y, class_weight=cw, sample_weight=s, ignore_index=-100)
    assert out[1].item() == 0.0
    out.sum().backward()
    assert torch.equal(x.grad[1], torch.zeros_like(x.grad[1])) and torch.equal(s.grad[1], torch.zeros(B, dtype=F64))
    assert torch.isnan(F.cross_entropy(z[1], y[1], ignore_index=-100))  # torch's NaN
    _close(out[0], _t(ref_hard(z[0], y[0], cw, sw[0], 0.0, -100, "batch_size", "mean")))
    for kw in ({}, {"class_weight": cw}):
        with pytest.raises(ValueError, match=r"zero total weight .*at index 1\b"):
            weighted_cross_entropy(z, y, ignore_index=-100, normalization="weight_sum", **kw)
        skipped = weighted_cross_entropy(z, y, ignore_index=-100, normalization="weight_sum", validate=False, **kw)
        assert torch.isnan(skipped[1]) and torch.isfinite(skipped[0])


def test_ignored_positions_get_zero_loss_and_skip_the_label_range_check():
    z, y, cw, sw = _inputs(3, ignore=-100)
    out = weighted_cross_entropy(z, y, class_weight=cw, sample_weight=sw, ignore_index=-100, reduction="none")
    assert torch.equal(out[y == -100], torch.zeros(int((y == -100).sum()), dtype=F64))
    assert (out[y != -100] > 0).all()
    with pytest.raises(ValueError, match=r"label -100 at index 0 but logits has C=4"):
        weighted_cross_entropy(z, y)  # torch's default -100 is not ours: None
    y[1] = C  # out of range and not ignored
    with pytest.raises(ValueError, match=rf"label {C} at index 1 "):
        weighted_cross_entropy(z, y, ignore_index=-100)
    # sample weights of ignored targets get zero gradient
    (gs,) = _grad(lambda s: weighted_cross_entropy(z, y.clamp(max=C - 1), sample_weight=s, ignore_index=-100), sw)
    assert torch.equal(gs[::3], torch.zeros_like(gs[::3])) and (gs[1::3] != 0).all()


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (True, TypeError, "ignore_index must be an integer, got bool"),
        (-100.0, TypeError, "ignore_index must be an integer, got float"),
        (2**70, ValueError, "ignore_index must fit in int64"),
    ],
)
def test_bad_ignore_index(value, error, match):
    z, y, _, _ = _inputs(4)
    with pytest.raises(error, match=match):
        weighted_cross_entropy(z, y, ignore_index=value)
    with pytest.raises(error, match=match):
        WeightedCrossEntropyLoss(ignore_index=value)


# ---- 2. label smoothing -----------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.1, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore", [None, -100])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_label_smoothing_without_class_weight_equals_torch(eps, reduction, ignore, normalization):
    z, y, _, _ = _inputs(5, ignore=ignore)
    kw = {} if ignore is None else {"ignore_index": ignore}
    fn = lambda x: weighted_cross_entropy(  # noqa: E731
        x, y, label_smoothing=eps, normalization=normalization, reduction=reduction, **kw
    )
    ref = lambda x: F.cross_entropy(x, y, label_smoothing=eps, reduction=reduction, **kw)  # noqa: E731
    _close(fn(z), ref(z))
    _close(*_grad(fn, z), *_grad(ref, z))


def test_label_smoothing_constant_class_weight_under_weight_sum_equals_torch():
    z, y, _, _ = _inputs(6, ignore=-100)
    cw = torch.full((C,), 0.3, dtype=F64)
    got = weighted_cross_entropy(
        z, y, class_weight=cw, label_smoothing=0.2, ignore_index=-100, normalization="weight_sum"
    )
    _close(got, F.cross_entropy(z, y, weight=cw, label_smoothing=0.2, ignore_index=-100))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_weighted_label_smoothing_is_the_hand_formula_and_not_torchs(normalization, reduction):
    z, y, cw, sw = _inputs(7)
    got = weighted_cross_entropy(
        z, y, class_weight=cw, sample_weight=sw, label_smoothing=0.2, normalization=normalization, reduction=reduction
    )
    _close(got, _t(ref_hard(z, y, cw, sw, 0.2, None, normalization, reduction)))
    if normalization == "weight_sum" and reduction == "mean":
        # torch weights each smoothing term by its own class: a different number for non-constant weights.
        mine = weighted_cross_entropy(z, y, class_weight=cw, label_smoothing=0.2, normalization="weight_sum")
        theirs = F.cross_entropy(z, y, weight=cw, label_smoothing=0.2)
        assert abs(mine.item() - theirs.item()) > 1e-3


@pytest.mark.parametrize(
    ("value", "error"), [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.1", TypeError)]
)
def test_bad_label_smoothing(value, error):
    z, y, _, _ = _inputs(8)
    with pytest.raises(error, match="label_smoothing must be"):
        weighted_cross_entropy(z, y, label_smoothing=value)
    with pytest.raises(error, match="label_smoothing must be"):
        WeightedCrossEntropyLoss(label_smoothing=value)


# ---- 3. probability targets ----------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.15])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_targets_equal_torch_under_batch_size(eps, reduction, weighted):
    z, _, cw, _ = _inputs(9)
    t = _probs(10, (B, C))
    cw = cw if weighted else None
    fn = lambda x, tt: weighted_cross_entropy(x, tt, class_weight=cw, label_smoothing=eps, reduction=reduction)  # noqa: E731
    ref = lambda x, tt: F.cross_entropy(x, tt, weight=cw, label_smoothing=eps, reduction=reduction)  # noqa: E731
    _close(fn(z, t), ref(z, t))
    for a, b in zip(_grad(fn, z, t), _grad(ref, z, t), strict=True):  # logits and target gradients
        _close(a, b)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probability_targets_with_class_and_sample_weights_are_the_hand_formula(normalization, reduction):
    z, _, cw, sw = _inputs(11)
    t = _probs(12, (B, C))
    for kw in ({"class_weight": cw}, {"sample_weight": sw}, {"class_weight": cw, "sample_weight": sw}):
        got = weighted_cross_entropy(z, t, label_smoothing=0.1, normalization=normalization, reduction=reduction, **kw)
        ref = ref_soft(z, t, kw.get("class_weight"), kw.get("sample_weight"), 0.1, normalization, reduction)
        _close(got, _t(ref))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_one_hot_probability_targets_equal_class_indices(normalization):
    z, y, cw, sw = _inputs(13, lead=(M,))
    onehot = F.one_hot(y, C).to(F64)
    kw = {"class_weight": cw, "sample_weight": sw, "normalization": normalization}
    _close(weighted_cross_entropy(z, onehot, **kw), weighted_cross_entropy(z, y, **kw))


def test_shared_probability_target_over_stacked_models_equals_per_model_calls():
    z, _, cw, sw = _inputs(14, lead=(M,))
    t = _probs(15, (B, C))  # one batch of targets for M models
    got = weighted_cross_entropy(z, t, class_weight=cw, sample_weight=sw, normalization="weight_sum")
    each = [
        weighted_cross_entropy(z[m], t, class_weight=cw, sample_weight=sw[m], normalization="weight_sum")
        for m in range(M)
    ]
    _close(got, torch.stack(each))


def test_probability_targets_are_validated():
    z, y, _, _ = _inputs(16)
    t = _probs(17, (B, C))
    bad = t.clone()
    bad[3] *= 0.9
    with pytest.raises(ValueError, match=r"^target row at index 3 \(the class axis -1 left out\) sums to 0.9\b"):
        weighted_cross_entropy(z, bad)
    # validate=False uses the numbers as given: 0.9 times row 3's loss
    full = weighted_cross_entropy(z, t, reduction="none")
    skipped = weighted_cross_entropy(z, bad, reduction="none", validate=False)
    _close(skipped[3], 0.9 * full[3])
    neg, nan = t.clone(), t.clone()
    neg[2, 1] = -0.1
    nan[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"target has a negative entry \(-0.1 at index \(2, 1\)\)"):
        weighted_cross_entropy(z, neg)
    with pytest.raises(ValueError, match=r"target has a non-finite entry \(nan at index \(5, 0\)\)"):
        weighted_cross_entropy(z, nan)
    with pytest.raises(ValueError, match="ignore_index applies to class-index targets only"):
        weighted_cross_entropy(z, t, ignore_index=-100)
    with pytest.raises(ValueError, match=r"a floating target holds class probabilities .*integer tensor"):
        weighted_cross_entropy(z, y.double())
    # float32 rounding of a softmax is within the tolerance
    weighted_cross_entropy(z.float(), torch.softmax(torch.randn(B, C, generator=_gen(18)) * 5, -1))


def test_probability_targets_half_logits_give_float32():
    z, _, cw, _ = _inputs(19)
    t = _probs(20, (B, C)).half()
    out = weighted_cross_entropy(z.half(), t, class_weight=cw)
    assert out.dtype == torch.float32
    assert torch.equal(out, weighted_cross_entropy(z.half().float(), t.float(), class_weight=cw.float()))


# ---- 4. class_dim=1: torch's (N, C, d1, ..., dk) layout --------------------------------------------------


N, H, W = 2, 3, 4


def _images(seed, ignore=None):
    g = _gen(seed)
    z = torch.randn(N, C, H, W, generator=g, dtype=F64) * 2
    y = torch.randint(0, C, (N, H, W), generator=g)
    if ignore is not None:
        y[:, 0, :] = ignore
    return z, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "kw",
    [{}, {"ignore_index": -100}, {"label_smoothing": 0.1}, {"ignore_index": 1, "label_smoothing": 0.3}],
    ids=["plain", "ignore", "smoothing", "both"],
)
def test_channels_first_equals_torch(reduction, kw):
    z, y = _images(21, ignore=kw.get("ignore_index"))
    fn = lambda x: weighted_cross_entropy(x, y, class_dim=1, reduction=reduction, **kw)  # noqa: E731
    ref = lambda x: F.cross_entropy(x, y, reduction=reduction, **kw)  # noqa: E731
    assert fn(z).shape == ref(z).shape
    _close(fn(z), ref(z))
    _close(*_grad(fn, z), *_grad(ref, z))
    cw = torch.rand(C, generator=_gen(22), dtype=F64) + 0.1
    kw = {k: v for k, v in kw.items() if k != "label_smoothing"}  # class-weighted smoothing differs by design
    got = weighted_cross_entropy(
        z, y, class_weight=cw, class_dim=1, normalization="weight_sum", reduction=reduction, **kw
    )
    _close(got, F.cross_entropy(z, y, weight=cw, reduction=reduction, **kw))


def test_channels_first_probability_targets_equal_torch():
    z, _ = _images(23)
    t = _probs(24, (N, C, H, W), dim=1)
    cw = torch.rand(C, generator=_gen(25), dtype=F64) + 0.1
    for reduction in REDUCTIONS:
        got = weighted_cross_entropy(z, t, class_weight=cw, label_smoothing=0.1, class_dim=1, reduction=reduction)
        _close(got, F.cross_entropy(z, t, weight=cw, label_smoothing=0.1, reduction=reduction))


def test_channels_first_sample_weight_per_sample_or_per_position():
    z, y = _images(26, ignore=-100)
    s = torch.rand(N, generator=_gen(27), dtype=F64) + 0.1
    per_position = s[:, None, None].expand(N, H, W)
    for normalization in NORMALIZATIONS:
        a = weighted_cross_entropy(z, y, sample_weight=s, class_dim=1, ignore_index=-100, normalization=normalization)
        b = weighted_cross_entropy(
            z, y, sample_weight=per_position, class_dim=1, ignore_index=-100, normalization=normalization
        )
        assert torch.equal(a, b)
    # every non-ignored position is an example: (1 / n) sum w l
    plain = F.cross_entropy(z, y, ignore_index=-100, reduction="none")
    got = weighted_cross_entropy(z, y, sample_weight=s, class_dim=1, ignore_index=-100)
    _close(got, (per_position * plain).sum() / (y != -100).sum())
    # and the stacked layout (one model of B = N*H*W examples) gives the same number
    stacked = weighted_cross_entropy(
        z.movedim(1, -1).reshape(-1, C), y.reshape(-1), sample_weight=per_position.reshape(-1), ignore_index=-100
    )
    _close(stacked, weighted_cross_entropy(z, y, sample_weight=s, class_dim=1, ignore_index=-100))


def test_channels_first_two_axes_equals_stacked_and_errors_name_the_callers_layout():
    z, y, cw, _ = _inputs(28)
    assert torch.equal(
        weighted_cross_entropy(z, y, class_weight=cw, class_dim=1), weighted_cross_entropy(z, y, class_weight=cw)
    )
    zi, yi = _images(29)
    yi[1, 2, 3] = C
    with pytest.raises(ValueError, match=rf"label {C} at index \(1, 2, 3\)"):
        weighted_cross_entropy(zi, yi, class_dim=1)
    with pytest.raises(ValueError, match=r"target has shape \(2, 4, 3\) .*expected shape \(2, 3, 4\)"):
        weighted_cross_entropy(zi, yi.transpose(1, 2), class_dim=1)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(2, 3\) .*expected shape \(2,\) or \(2, 3, 4\)"):
        weighted_cross_entropy(zi, yi, sample_weight=torch.ones(2, 3), class_dim=1)
    with pytest.raises(ValueError, match=r"class_weight has shape \(2, 4\) .*class_dim=1 is one model"):
        weighted_cross_entropy(zi, yi, class_weight=torch.ones(2, C), class_dim=1)
    with pytest.raises(ValueError, match=r"class_dim must be -1 .* or 1 .*; got 2"):
        weighted_cross_entropy(zi, yi, class_dim=2)
    with pytest.raises(TypeError, match="class_dim must be an integer"):
        WeightedCrossEntropyLoss(class_dim=1.0)
    with pytest.raises(ValueError, match="class_dim must be"):
        WeightedCrossEntropyLoss(class_dim=0)
    t = _probs(30, (N, C, H, W), dim=1)
    t[0, :, 1, 2] *= 2
    with pytest.raises(ValueError, match=r"target row at index \(0, 1, 2\) \(the class axis 1 left out\) sums to 2"):
        weighted_cross_entropy(zi, t, class_dim=1)
    with pytest.raises(ValueError, match="the batch is empty"):
        weighted_cross_entropy(zi[:, :, :0], yi[:, :0], class_dim=1)


# ---- 5. multi-label BCE with pos_weight --------------------------------------------------------------------


def _multilabel(seed, lead=()):
    g = _gen(seed)
    z = torch.randn(*lead, B, L, generator=g, dtype=F64) * 3
    hard = torch.randint(0, 2, (*lead, B, L), generator=g).to(F64)
    soft = torch.rand(*lead, B, L, generator=g, dtype=F64)
    pw = torch.rand(L, generator=g, dtype=F64) * 3
    sw = torch.rand(*lead, B, generator=g, dtype=F64) + 0.1
    return z, hard, soft, pw, sw


def ref_multilabel(z, y, pw, sw, normalization, reduction):
    terms, weights, elems = [], [], []
    for i, (zr, yr) in enumerate(zip(z.tolist(), y.tolist(), strict=True)):
        w = 1.0 if sw is None else sw[i].item()
        row = []
        for j, (v, t) in enumerate(zip(zr, yr, strict=True)):
            p = 1 / (1 + math.exp(-v))
            row.append(-((1.0 if pw is None else pw[j].item()) * t * math.log(p) + (1 - t) * math.log(1 - p)))
        elems.append([w * e for e in row])
        terms.append(w * sum(row) / len(row))
        weights.append(w)
    if reduction == "none":
        return elems
    if reduction == "sum":
        return sum(map(sum, elems))
    return sum(terms) / (sum(weights) if normalization == "weight_sum" else len(terms))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", ["hard", "soft"])
@pytest.mark.parametrize("pos", [False, True])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_multilabel_equals_torch(reduction, target, pos, normalization):
    z, hard, soft, pw, _ = _multilabel(31, lead=(M,))
    y = hard if target == "hard" else soft
    pw = pw if pos else None
    fn = lambda x: weighted_multilabel_binary_cross_entropy(  # noqa: E731
        x, y, pos_weight=pw, normalization=normalization, reduction=reduction
    )
    per_model = {"none": lambda e: e, "sum": lambda e: e.sum((-2, -1)), "mean": lambda e: e.mean((-2, -1))}[reduction]
    ref = lambda x: per_model(F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none"))  # noqa: E731
    _close(fn(z), ref(z))
    _close(*_grad(fn, z), *_grad(ref, z))
    # one model: torch's own mean over B * L
    _close(
        weighted_multilabel_binary_cross_entropy(z[0], y[0], pos_weight=pw),
        F.binary_cross_entropy_with_logits(z[0], y[0], pos_weight=pw),
    )


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_sample_weights_are_the_hand_formula(normalization, reduction):
    z, hard, soft, pw, sw = _multilabel(32)
    y = torch.where(torch.arange(L) % 2 == 0, hard, soft)
    got = weighted_multilabel_binary_cross_entropy(
        z, y, pos_weight=pw, sample_weight=sw, normalization=normalization, reduction=reduction
    )
    _close(got, _t(ref_multilabel(z, y, pw, sw, normalization, reduction)))


def test_multilabel_stacked_models_with_per_model_pos_weight_and_large_logits():
    z, hard, soft, _, sw = _multilabel(33, lead=(M,))
    pw = torch.rand(M, L, generator=_gen(34), dtype=F64) * 2
    got = weighted_multilabel_binary_cross_entropy(z, soft, pos_weight=pw, sample_weight=sw, normalization="weight_sum")
    each = [
        weighted_multilabel_binary_cross_entropy(
            z[m], soft[m], pos_weight=pw[m], sample_weight=sw[m], normalization="weight_sum"
        )
        for m in range(M)
    ]
    _close(got, torch.stack(each))
    big = torch.tensor([[200.0, -200.0, 40.0]], dtype=F64)
    y = torch.tensor([[0.25, 0.75, 1.0]], dtype=F64)
    out = weighted_multilabel_binary_cross_entropy(big, y, reduction="none")
    # -[y log sig(z) + (1-y) log sig(-z)] with log sig(z) = -log1p(exp(-z)) ~ min(z, 0) for |z| large
    _close(out, _t([[0.75 * 200.0, 0.75 * 200.0, math.log1p(math.exp(-40.0))]]))


def test_multilabel_validation_half_logits_and_devices():
    z, hard, soft, pw, sw = _multilabel(35)
    bad = soft.clone()
    bad[2, 3] = 1.5
    with pytest.raises(ValueError, match=r"target has an entry 1.5 at index \(2, 3\); multi-label targets must be"):
        weighted_multilabel_binary_cross_entropy(z, bad)
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"target has an entry nan at index \(2, 3\)"):
        weighted_multilabel_binary_cross_entropy(z, bad)
    with pytest.raises(ValueError, match=r"target has an entry 2 at index \(0, 0\)"):
        weighted_multilabel_binary_cross_entropy(z, torch.full((B, L), 2))
    neg = pw.clone()
    neg[1] = -1.0
    with pytest.raises(ValueError, match=r"pos_weight has a negative entry \(-1 at index 1\)"):
        weighted_multilabel_binary_cross_entropy(z, hard, pos_weight=neg)
    with pytest.raises(ValueError, match=r"pos_weight has shape \(4,\) but logits has shape \(8, 5\) \(L=5 labels\)"):
        weighted_multilabel_binary_cross_entropy(z, hard, pos_weight=pw[:4])
    with pytest.raises(
        ValueError, match=r"target has shape \(8,\) but logits has shape \(8, 5\); expected shape \(8, 5\)"
    ):
        weighted_multilabel_binary_cross_entropy(z, hard[:, 0])
    with pytest.raises(ValueError, match=r"logits must have shape \(\.\.\., B, L\)"):
        weighted_multilabel_binary_cross_entropy(z[:, 0], hard[:, 0])
    with pytest.raises(ValueError, match="^pos_weight is on cpu but logits are on meta"):
        weighted_multilabel_binary_cross_entropy(z.to("meta"), hard.to("meta"), pos_weight=pw)
    # bool and integer hard targets equal float ones
    assert torch.equal(
        weighted_multilabel_binary_cross_entropy(z, hard.bool()), weighted_multilabel_binary_cross_entropy(z, hard)
    )
    x = z.half().requires_grad_(True)
    out = weighted_multilabel_binary_cross_entropy(x, soft, pos_weight=pw, sample_weight=sw)
    assert out.dtype == torch.float32
    assert torch.equal(
        out, weighted_multilabel_binary_cross_entropy(z.half().float(), soft, pos_weight=pw, sample_weight=sw)
    )
    out.backward()
    assert x.grad.dtype == torch.float16 and torch.isfinite(x.grad).all()
    assert weighted_multilabel_binary_cross_entropy(z[:0], hard[:0], reduction="sum").item() == 0.0


# ---- 6. modules ----------------------------------------------------------------------------------------------


def test_cross_entropy_module_forwards_the_new_arguments():
    z, y = _images(36, ignore=-100)
    cw = torch.rand(C, generator=_gen(37), dtype=F64) + 0.1
    kw = {"ignore_index": -100, "label_smoothing": 0.2, "class_dim": 1}
    module = WeightedCrossEntropyLoss(cw, normalization="weight_sum", reduction="none", **kw)
    expected = weighted_cross_entropy(z, y, class_weight=cw, normalization="weight_sum", reduction="none", **kw)
    assert torch.equal(module(z, y), expected)
    text = repr(module)
    assert "ignore_index=-100" in text and "label_smoothing=0.2" in text and "class_dim=1" in text


def test_multilabel_module_pos_weight_buffer_and_errors():
    z, hard, _, pw, sw = _multilabel(38)
    module = WeightedMultiLabelBCEWithLogitsLoss(pw, normalization="weight_sum")
    assert torch.equal(module.state_dict()["pos_weight"], pw)
    assert torch.equal(
        module(z, hard, sw),
        weighted_multilabel_binary_cross_entropy(z, hard, pos_weight=pw, sample_weight=sw, normalization="weight_sum"),
    )
    assert module.to(torch.float32).pos_weight.dtype == torch.float32
    assert "pos_weight_shape=(5,)" in repr(module)
    assert list(WeightedMultiLabelBCEWithLogitsLoss().state_dict()) == []
    with pytest.raises(ValueError, match=r"pos_weight has a negative entry \(-1 at index 0\)"):
        WeightedMultiLabelBCEWithLogitsLoss([-1.0, 1.0])
    with pytest.raises(ValueError, match=r"pos_weight must have shape \(L,\) or \(\.\.\., L\)"):
        WeightedMultiLabelBCEWithLogitsLoss(torch.tensor(2.0))
    with pytest.raises(ValueError, match="reduction must be one of"):
        WeightedMultiLabelBCEWithLogitsLoss(reduction="avg")
    with pytest.raises(
        ValueError, match=r"WeightedMultiLabelBCEWithLogitsLoss.pos_weight is on cpu but logits are on meta"
    ):
        module(z.to("meta"), hard.to("meta"))


# ---- 7. the rules every path keeps: gradients, half precision, devices, exact scaling, validate=False ------------


def test_gradcheck_of_the_paths_torch_has_no_equal_for():
    z, y, cw, sw = _inputs(40, lead=(2,), ignore=-100)
    t = _probs(41, (2, B, C))
    hard = lambda x, s: weighted_cross_entropy(  # noqa: E731
        x, y, class_weight=cw, sample_weight=s, ignore_index=-100, label_smoothing=0.1, normalization="weight_sum"
    )
    # validate=False: gradcheck's finite differences step the targets off the simplex
    soft = lambda x, tt, s: weighted_cross_entropy(  # noqa: E731
        x, tt, class_weight=cw, sample_weight=s, label_smoothing=0.1, normalization="weight_sum", validate=False
    )
    zm, hm, sm, pw, swm = _multilabel(42)
    multi = lambda x, yy, p, s: weighted_multilabel_binary_cross_entropy(  # noqa: E731
        x, yy, pos_weight=p, sample_weight=s, normalization="weight_sum"
    )
    for fn, args in ((hard, (z, sw)), (soft, (z, t, sw)), (multi, (zm, sm, pw, swm))):
        assert torch.autograd.gradcheck(fn, [a.clone().requires_grad_(True) for a in args])


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=str)
def test_new_paths_keep_the_half_precision_rule(half):
    z, y = _images(43, ignore=-100)
    t = _probs(44, (N, C, H, W), dim=1)
    cw = torch.rand(C, generator=_gen(45)) + 0.1
    for target, kw in ((y, {"ignore_index": -100, "label_smoothing": 0.1}), (t, {"label_smoothing": 0.1})):
        x = z.to(half).requires_grad_(True)
        out = weighted_cross_entropy(x, target, class_weight=cw, class_dim=1, **kw)
        assert out.dtype == torch.float32
        assert torch.equal(out, weighted_cross_entropy(x.detach().float(), target, class_weight=cw, class_dim=1, **kw))
        out.backward()
        assert x.grad.dtype == half and torch.isfinite(x.grad).all()


def test_devices_are_named_on_the_new_paths():
    z, y = _images(46)
    t = _probs(47, (N, C, H, W), dim=1)
    meta = z.to("meta")
    with pytest.raises(ValueError, match="^target is on cpu but logits are on meta"):
        weighted_cross_entropy(meta, t, class_dim=1)
    with pytest.raises(ValueError, match="^sample_weight is on cpu but logits are on meta"):
        weighted_cross_entropy(meta, y.to("meta"), sample_weight=torch.ones(N), class_dim=1, ignore_index=-100)


def test_extreme_float32_weights_are_exact_with_probability_targets():
    z, _, cw, sw = _inputs(48)
    t = _probs(49, (B, C))
    z32, t32, cw32, sw32 = z.float(), t.float(), cw.float(), sw.float()
    base = weighted_cross_entropy(z32, t32, class_weight=cw32, sample_weight=sw32, normalization="weight_sum")
    # cw * sw = 1e60 overflows float32, yet weight_sum is scale-free and the scaling exact
    big = weighted_cross_entropy(
        z32, t32, class_weight=cw32 * 1e30, sample_weight=sw32 * 1e30, normalization="weight_sum"
    )
    torch.testing.assert_close(big, base, rtol=1e-6, atol=0)
    torch.testing.assert_close(base, _t(ref_soft(z, t, cw, sw, 0.0, "weight_sum", "mean")).float(), rtol=1e-5, atol=0)


def test_validate_false_still_checks_types_and_shapes():
    z, y, _, _ = _inputs(50)
    t = _probs(51, (B, C))
    with pytest.raises(ValueError, match="a floating target holds class probabilities"):
        weighted_cross_entropy(z, t[:, :2], validate=False)
    with pytest.raises(ValueError, match="ignore_index applies to class-index targets only"):
        weighted_cross_entropy(z, t, ignore_index=0, validate=False)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        weighted_cross_entropy(z, y, label_smoothing=2.0, validate=False)
    with pytest.raises(ValueError, match=r"target has shape \(8, 3\) but logits has shape \(8, 5\)"):
        weighted_multilabel_binary_cross_entropy(torch.zeros(B, L), torch.zeros(B, 3), validate=False)


# ---- 8. bad inputs of the new options (hunt findings) ----------------------------------------------------------


def _rows(dtype, total, n=2):
    """One row of n equal probabilities summing to ``total`` (exact in float64), in ``dtype``."""
    return torch.full((1, n), total / n, dtype=F64).to(dtype)


@pytest.mark.parametrize(
    ("dtype", "total", "tol"), [(torch.bfloat16, 1.08, "0.016"), (torch.float16, 1.03, "0.002")], ids=str
)
def test_half_probability_rows_off_by_more_than_c_eps_are_refused(dtype, total, tol):
    t = _rows(dtype, total)
    s = t.double().sum().item()  # 1.078125 / 1.0302734375 after rounding to the half dtype
    assert abs(s - 1) > 2 * torch.finfo(dtype).eps
    with pytest.raises(ValueError, match=rf"^target row at index 0 .* sums to {s:.8g}, not 1 \(tolerance {tol}\)"):
        weighted_cross_entropy(torch.zeros(1, 2), t)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("n_classes", [2, 3, 10, 100])
def test_half_rounding_of_a_correct_softmax_passes_and_float32_keeps_sqrt_eps(dtype, n_classes):
    g = _gen(60 + n_classes)
    t = torch.softmax(torch.randn(64, n_classes, generator=g, dtype=F64) * 3, -1).to(dtype)
    z = torch.randn(64, n_classes, generator=g, dtype=F64)
    got = weighted_cross_entropy(z, t)  # no error: every row within C * eps of 1
    _close(got, F.cross_entropy(z, t.double()))
    # float32 keeps max(sqrt(eps), C eps): a float32 row off by 1e-4 (< sqrt(eps) = 3.5e-4) passes
    weighted_cross_entropy(z.float(), _rows(torch.float32, 1 + 1e-4, n_classes).expand(64, n_classes))


def test_multilabel_with_no_labels_is_refused():
    for reduction in REDUCTIONS:
        for normalization in NORMALIZATIONS:
            with pytest.raises(ValueError, match=r"^logits has shape \(2, 0\), i\.e\. L=0 labels, but the loss needs"):
                weighted_multilabel_binary_cross_entropy(
                    torch.zeros(2, 0), torch.zeros(2, 0), reduction=reduction, normalization=normalization
                )
    with pytest.raises(ValueError, match=r"^logits has shape \(3, 2, 0\), i\.e\. L=0 labels"):
        WeightedMultiLabelBCEWithLogitsLoss(normalization="weight_sum")(torch.zeros(3, 2, 0), torch.zeros(2, 0))


def test_multilabel_huge_pos_weight_float64_mean_is_finite_and_sum_the_overflow_error():
    z = torch.full((2, 2), -1.0, dtype=F64)
    y = torch.ones(2, 2, dtype=F64)
    pw = _t([1e308, 1e308])
    each = 1e308 * math.log1p(math.e)  # -pos_weight log sigmoid(-1) = 1.3133e308: finite
    kw = {"pos_weight": pw}
    got = weighted_multilabel_binary_cross_entropy(z, y, reduction="none", **kw)
    torch.testing.assert_close(got, torch.full((2, 2), each, dtype=F64), rtol=1e-15, atol=0)
    for normalization in NORMALIZATIONS:
        for sw in (None, _t([1.0, 1.0]), _t([0.5, 0.5])):
            # the sums over labels and over the batch overflow, the means do not
            got = weighted_multilabel_binary_cross_entropy(z, y, sample_weight=sw, normalization=normalization, **kw)
            scale = 1.0 if sw is None or normalization == "weight_sum" else sw[0].item()
            assert got.item() == pytest.approx(scale * each, rel=1e-15)
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float64: .*rescale the weights$"):
        weighted_multilabel_binary_cross_entropy(z, y, reduction="sum", **kw)
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float64: "):
        weighted_multilabel_binary_cross_entropy(z, y, reduction="sum", sample_weight=_t([1.0, 1.0]), **kw)
    # validate=False: the same numbers, unchecked
    out = weighted_multilabel_binary_cross_entropy(z, y, reduction="sum", validate=False, **kw)
    assert out.item() == math.inf


def test_multilabel_float32_pos_weight_overflowing_an_element():
    z = torch.tensor([[-4.0, 0.0]])
    y = torch.tensor([[1.0, 0.0]])
    pw = torch.tensor([1e38, 1.0])
    # l_00 = 1e38 log(1 + e^4) = 4.02e38 > float32 max: "none" cannot hold it
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float32 at index \(0, 0\): .*use float64 logits"):
        weighted_multilabel_binary_cross_entropy(z, y, pos_weight=pw, reduction="none")
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float32: "):
        weighted_multilabel_binary_cross_entropy(z, y, pos_weight=pw, reduction="sum")
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float32 at index \(0, 0\)"):
        WeightedMultiLabelBCEWithLogitsLoss(pw, reduction="none")(z, y)
    # ... but the mean over the two labels, (4.02e38 + log 2) / 2 = 2.01e38, is a float32
    expected = (1e38 * math.log1p(math.exp(4.0)) + math.log(2)) / 2
    got = weighted_multilabel_binary_cross_entropy(z, y, pos_weight=pw)
    assert math.isfinite(got.item()) and got.item() == pytest.approx(expected, rel=1e-6)


def test_unweighted_and_weighted_batch_sums_overflow_only_when_the_result_does():
    z = torch.tensor([[0.0, -1e308]] * 4, dtype=F64)  # -log p_1 = 1e308 for every example
    y = torch.ones(4, dtype=torch.long)
    assert weighted_cross_entropy(z, y).item() == pytest.approx(1e308, rel=1e-15)  # sum 4e308, mean 1e308
    assert weighted_cross_entropy(z, y, ignore_index=0).item() == pytest.approx(1e308, rel=1e-15)
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float64: "):
        weighted_cross_entropy(z, y, reduction="sum")
    # tiny weights: the scaled sum overflows, the weighted sum 4 * 1e308 * 1e-300 = 4e8 does not
    sw = torch.full((4,), 1e-300, dtype=F64)
    assert weighted_cross_entropy(z, y, sample_weight=sw, reduction="sum").item() == pytest.approx(4e8, rel=1e-15)
    # -log p of finite logits can overflow on its own: 2e308
    with pytest.raises(ValueError, match=r"^the loss overflows torch.float64 at index 1: "):
        weighted_cross_entropy(_t([[0.0, 1.0], [1e308, -1e308]]), y[:2], reduction="none")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.uint32, torch.uint64], ids=str)
def test_unsigned_labels_never_match_a_negative_ignore_index(dtype):
    z, y, _, _ = _inputs(61)
    # a valid unsigned batch is the int64 one, also with a non-negative ignore_index
    for ignore in (-100, 2):
        expected = weighted_cross_entropy(z, y, ignore_index=ignore, reduction="none")
        assert torch.equal(weighted_cross_entropy(z, y.to(dtype), ignore_index=ignore, reduction="none"), expected)
    # the largest label of the dtype (uint64: 2**64 - 100 would wrap to -100 in int64) is out of range
    big = torch.iinfo(dtype).max - 99 if dtype == torch.uint64 else torch.iinfo(dtype).max
    bad = y.to(dtype)
    bad[2] = torch.tensor(big, dtype=dtype)  # a Python int >= 2**63 does not assign into uint64 directly
    with pytest.raises(ValueError, match=rf"^target contains label {big} at index 2 but logits has C=4 classes"):
        weighted_cross_entropy(z, bad, ignore_index=-100)
    if dtype == torch.uint64:
        bad[2] = torch.tensor(2**63 + 5, dtype=dtype)  # wraps to -(2**63) + 5
        with pytest.raises(ValueError, match=rf"^target contains label {2**63 + 5} at index 2"):
            weighted_cross_entropy(z, bad, ignore_index=-(2**63) + 5)


def test_label_smoothing_just_above_one_is_printed_exactly():
    z, y, _, _ = _inputs(62)
    with pytest.raises(ValueError, match=r"^label_smoothing must be in \[0, 1\]; got 1\.0000001$"):
        weighted_cross_entropy(z, y, label_smoothing=1.0000001)


def test_torch_habits_get_a_hint():
    # fresh-clone trial (issue 13): torch's -100 padding label and (N, C, H, W) layout gave no hint
    from iwlab.functional import weighted_cross_entropy

    with pytest.raises(ValueError, match=r"pass ignore_index=-100\)$"):
        weighted_cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, -100, 2]))
    with pytest.raises(ValueError, match="pass class_dim=1"):
        weighted_cross_entropy(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))


def test_half_precision_rows_a_few_percent_off_are_refused_for_any_class_count():
    # second hunt (issue 13): min(C, 8) * eps let a 10-class bfloat16 row summing to 1.05 through
    from iwlab.functional import weighted_cross_entropy

    t = torch.full((1, 10), 0.105, dtype=torch.bfloat16)  # sums to about 1.05
    with pytest.raises(ValueError, match="sum"):
        weighted_cross_entropy(torch.zeros(1, 10, dtype=torch.bfloat16), t)
    ok = torch.softmax(torch.randn(4, 1000), -1).to(torch.bfloat16)  # a correct row, rounded
    weighted_cross_entropy(torch.zeros(4, 1000, dtype=torch.bfloat16), ok)
