"""One check list run over every component: every loss (functional and module forms), every registered
experiment, every module of the package.

To cover a new loss, append a ``Component`` to ``COMPONENTS``: ``make_inputs`` draws
``(logits, target, class_weight, sample_weight)`` for a batch with optional leading model axes,
``build`` returns a callable ``fn(logits, target, sample_weight)`` configured with the class
weight, normalization and reduction, and ``plain`` is PyTorch's unweighted loss. A new experiment is
covered by registering it in ``iwlab.experiments.EXPERIMENTS``.
"""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from iwlab.config import ConfigError
from iwlab.experiments import ALIASES, EXPERIMENTS, get_experiment, make_config
from iwlab.functional import (
    binary_focal_loss,
    binary_poly_tailed_loss,
    focal_loss,
    ldam_loss,
    logit_adjusted_loss,
    poly_tailed_loss,
    vs_loss,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
    weighted_multilabel_binary_cross_entropy,
)
from iwlab.losses import (
    BinaryFocalLoss,
    BinaryPolyTailedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    PolyTailedLoss,
    VSLoss,
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    WeightedMultiLabelBCEWithLogitsLoss,
)

B, C, L = 6, 3, 5


@dataclass(frozen=True)
class Component:
    name: str
    make_inputs: Callable  # (lead, dtype, device, seed) -> (logits, target, class_weight, sw)
    build: Callable  # (class_weight, normalization, reduction, device) -> fn(logits, target, sw)
    plain: Callable  # (logits, target, reduction) -> unweighted torch loss
    # the per-class weight's name, and whether it is an importance weight (scales each example's loss;
    # multi-label BCE's pos_weight scales only the positive term, so the scaling checks do not apply)
    class_weight_name: str = "class_weight"
    class_weight_scales_loss: bool = True
    none_extra: tuple = ()  # trailing dims of reduction="none" beyond (..., B): (L,) for multi-label


def _multiclass_inputs(lead, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*lead, B, C, generator=g, dtype=dtype)
    target = torch.randint(0, C, (*lead, B), generator=g)
    class_weight = torch.rand(C, generator=g, dtype=dtype) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=dtype) + 0.1
    return tuple(t.to(device) for t in (logits, target, class_weight, sample_weight))


def _binary_inputs(lead, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*lead, B, generator=g, dtype=dtype)
    target = torch.randint(0, 2, (*lead, B), generator=g)
    class_weight = torch.rand(2, generator=g, dtype=dtype) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=dtype) + 0.1
    return tuple(t.to(device) for t in (logits, target, class_weight, sample_weight))


def _multilabel_inputs(lead, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*lead, B, L, generator=g, dtype=dtype)
    target = torch.randint(0, 2, (*lead, B, L), generator=g)
    pos_weight = torch.rand(L, generator=g, dtype=dtype) + 0.1
    sample_weight = torch.rand(*lead, B, generator=g, dtype=dtype) + 0.1
    return tuple(t.to(device) for t in (logits, target, pos_weight, sample_weight))


def _functional(loss, weight_name="class_weight", **fixed):
    def build(class_weight, normalization, reduction, device):
        class_weight = None if class_weight is None else class_weight.to(device)  # as module.to(device) does
        kw = {weight_name: class_weight, **fixed}
        fn = partial(loss, normalization=normalization, reduction=reduction, **kw)
        return lambda logits, target, sw: fn(logits, target, sample_weight=sw)

    return build


def _module(cls, **fixed):
    def build(class_weight, normalization, reduction, device):
        module = cls(class_weight, normalization, reduction, **fixed).to(device)
        return lambda logits, target, sw: module(logits, target, sample_weight=sw)

    return build


def _plain_ce(logits, target, reduction):
    return F.cross_entropy(logits.movedim(-1, 1) if logits.dim() > 2 else logits, target, reduction=reduction)


def _plain_bce(logits, target, reduction):
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction=reduction)


def _plain_ce_smoothed(logits, target, reduction):
    # torch's ignore_index (never hit by these labels) and label smoothing: the plain reference
    moved = logits.movedim(-1, 1) if logits.dim() > 2 else logits
    return F.cross_entropy(moved, target, reduction=reduction, ignore_index=-100, label_smoothing=0.1)


def _plain_multilabel(logits, target, reduction):
    out = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")  # (..., B, L)
    # iwlab's per-example loss is the mean over labels, so "sum" sums examples of label-means x L
    return out if reduction == "none" else out.sum((-2, -1)) if reduction == "sum" else out.mean((-2, -1))


def _reduce(out, reduction):
    return out if reduction == "none" else out.sum(-1) if reduction == "sum" else out.mean(-1)


def _plain_focal(logits, target, reduction, gamma=2.0):
    # Lin et al. (2017, eq. 4) on probabilities, in float64: -(1 - p_t)^gamma log p_t
    p_t = logits.double().softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return _reduce(-((1 - p_t) ** gamma) * p_t.log(), reduction).to(logits.dtype)


def _plain_binary_focal(logits, target, reduction, gamma=2.0):
    p = logits.double().sigmoid()
    p_t = torch.where(target == 1, p, 1 - p)
    return _reduce(-((1 - p_t) ** gamma) * p_t.log(), reduction).to(logits.dtype)


# ---- the imbalance remedies of issue 15: references written from the papers' formulas, in float64 ----

COUNTS = (60, 15, 4)  # class counts n_c of the C = 3 classes


def _poly(z, alpha, kind):
    """Wang et al. (2022): z^(-alpha) for z >= 1 (over alpha - 1 for "linear"), the issue's left branch below."""
    if z >= 1:
        return z**-alpha / (alpha - 1) if kind == "linear" else z**-alpha
    if kind == "logit":
        return math.log1p(math.exp(-z)) / math.log1p(math.exp(-1))
    return alpha / (alpha - 1) - z if kind == "linear" else math.exp(1 - z)


def _plain_poly(logits, target, reduction, alpha=2.0, kind="logit"):
    z = logits.double()
    true = z.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    other = z.scatter(-1, target.unsqueeze(-1), -math.inf).amax(-1)  # max over j != y
    margin = true - other
    loss = torch.tensor([_poly(v, alpha, kind) for v in margin.flatten().tolist()], dtype=torch.float64)
    return _reduce(loss.reshape(margin.shape), reduction).to(logits.dtype)


def _plain_binary_poly(logits, target, reduction, alpha=2.0, kind="logit"):
    margin = torch.where(target == 1, logits.double(), -logits.double())  # (2y - 1) f
    loss = torch.tensor([_poly(v, alpha, kind) for v in margin.flatten().tolist()], dtype=torch.float64)
    return _reduce(loss.reshape(margin.shape), reduction).to(logits.dtype)


def _plain_adjusted(logits, target, reduction, tau=1.0, gamma=0.0):
    """VS (Kini et al. 2021): CE(Delta_c l_c + tau log pi_c); gamma = 0 is logit adjustment (Menon et al. 2021)."""
    shift = torch.tensor([tau * math.log(n / sum(COUNTS)) for n in COUNTS], dtype=torch.float64)
    delta = torch.tensor([(n / max(COUNTS)) ** gamma for n in COUNTS], dtype=torch.float64)
    return _plain_ce(logits.double() * delta + shift, target, reduction).to(logits.dtype)


def _plain_ldam(logits, target, reduction, max_margin=0.5, scale=30.0):
    """Cao et al. (2019): CE(s (l - m_y e_y)), m_c = max_margin (n_min / n_c)^(1/4)."""
    m = torch.tensor([max_margin * (min(COUNTS) / n) ** 0.25 for n in COUNTS], dtype=torch.float64)
    shifted = logits.double() - F.one_hot(target, len(COUNTS)) * m
    return _plain_ce(scale * shifted, target, reduction).to(logits.dtype)


COMPONENTS = [
    Component("weighted_cross_entropy", _multiclass_inputs, _functional(weighted_cross_entropy), _plain_ce),
    Component(
        "weighted_binary_cross_entropy",
        _binary_inputs,
        _functional(weighted_binary_cross_entropy),
        _plain_bce,
    ),
    Component("WeightedCrossEntropyLoss", _multiclass_inputs, _module(WeightedCrossEntropyLoss), _plain_ce),
    Component("WeightedBCEWithLogitsLoss", _binary_inputs, _module(WeightedBCEWithLogitsLoss), _plain_bce),
    # the torch-parity arguments of issue 13: every check holds with them set too
    Component(
        "weighted_cross_entropy[ignore_index,label_smoothing]",
        _multiclass_inputs,
        _functional(weighted_cross_entropy, ignore_index=-100, label_smoothing=0.1),
        _plain_ce_smoothed,
    ),
    Component(
        "WeightedCrossEntropyLoss[ignore_index,label_smoothing]",
        _multiclass_inputs,
        _module(WeightedCrossEntropyLoss, ignore_index=-100, label_smoothing=0.1),
        _plain_ce_smoothed,
    ),
    Component(
        "weighted_multilabel_binary_cross_entropy",
        _multilabel_inputs,
        _functional(weighted_multilabel_binary_cross_entropy, "pos_weight"),
        _plain_multilabel,
        class_weight_name="pos_weight",
        class_weight_scales_loss=False,
        none_extra=(L,),
    ),
    Component(
        "WeightedMultiLabelBCEWithLogitsLoss",
        _multilabel_inputs,
        _module(WeightedMultiLabelBCEWithLogitsLoss),
        _plain_multilabel,
        class_weight_name="pos_weight",
        class_weight_scales_loss=False,
        none_extra=(L,),
    ),
    # focal losses (issues 14 and 15): gamma = 2 (the default), and a non-integer gamma
    Component("focal_loss", _multiclass_inputs, _functional(focal_loss), _plain_focal),
    Component(
        "focal_loss[gamma=0.5]",
        _multiclass_inputs,
        _functional(focal_loss, gamma=0.5),
        partial(_plain_focal, gamma=0.5),
    ),
    Component("binary_focal_loss", _binary_inputs, _functional(binary_focal_loss), _plain_binary_focal),
    Component(
        "binary_focal_loss[gamma=0.5]",
        _binary_inputs,
        _functional(binary_focal_loss, gamma=0.5),
        partial(_plain_binary_focal, gamma=0.5),
    ),
    Component("FocalLoss", _multiclass_inputs, _module(partial(FocalLoss, 2.0)), _plain_focal),
    Component("BinaryFocalLoss", _binary_inputs, _module(partial(BinaryFocalLoss, 2.0)), _plain_binary_focal),
    # imbalance remedies (issue 15): polynomially-tailed (each kind), LDAM, logit-adjusted and VS losses
    Component("poly_tailed_loss", _multiclass_inputs, _functional(poly_tailed_loss, alpha=2.0), _plain_poly),
    Component(
        "poly_tailed_loss[linear,alpha=3]",
        _multiclass_inputs,
        _functional(poly_tailed_loss, alpha=3.0, kind="linear"),
        partial(_plain_poly, alpha=3.0, kind="linear"),
    ),
    Component(
        "poly_tailed_loss[exp,alpha=0.5]",
        _multiclass_inputs,
        _functional(poly_tailed_loss, alpha=0.5, kind="exp"),
        partial(_plain_poly, alpha=0.5, kind="exp"),
    ),
    Component(
        "binary_poly_tailed_loss", _binary_inputs, _functional(binary_poly_tailed_loss, alpha=2.0), _plain_binary_poly
    ),
    Component(
        "binary_poly_tailed_loss[exp,alpha=1.5]",
        _binary_inputs,
        _functional(binary_poly_tailed_loss, alpha=1.5, kind="exp"),
        partial(_plain_binary_poly, alpha=1.5, kind="exp"),
    ),
    Component("PolyTailedLoss", _multiclass_inputs, _module(partial(PolyTailedLoss, 2.0, "logit")), _plain_poly),
    Component(
        "BinaryPolyTailedLoss",
        _binary_inputs,
        _module(partial(BinaryPolyTailedLoss, 3.0, "linear")),
        partial(_plain_binary_poly, alpha=3.0, kind="linear"),
    ),
    Component("ldam_loss", _multiclass_inputs, _functional(ldam_loss, class_counts=COUNTS), _plain_ldam),
    Component(
        "ldam_loss[max_margin=1,scale=2]",
        _multiclass_inputs,
        _functional(ldam_loss, class_counts=COUNTS, max_margin=1.0, scale=2.0),
        partial(_plain_ldam, max_margin=1.0, scale=2.0),
    ),
    Component("LDAMLoss", _multiclass_inputs, _module(partial(LDAMLoss, COUNTS, 0.5, 30.0)), _plain_ldam),
    Component(
        "logit_adjusted_loss",
        _multiclass_inputs,
        _functional(logit_adjusted_loss, class_counts=COUNTS),
        _plain_adjusted,
    ),
    Component(
        "LogitAdjustedLoss",
        _multiclass_inputs,
        _module(partial(LogitAdjustedLoss, COUNTS, 1.5)),
        partial(_plain_adjusted, tau=1.5),
    ),
    Component(
        "vs_loss", _multiclass_inputs, _functional(vs_loss, class_counts=COUNTS), partial(_plain_adjusted, gamma=0.2)
    ),
    Component(
        "VSLoss",
        _multiclass_inputs,
        _module(partial(VSLoss, COUNTS, 0.5, 0.3)),
        partial(_plain_adjusted, tau=0.5, gamma=0.3),
    ),
]

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available"),
    ),
]
NORMALIZATIONS = ["batch_size", "weight_sum"]
REDUCTIONS = ["none", "sum", "mean"]

component = pytest.mark.parametrize("comp", COMPONENTS, ids=lambda c: c.name)


@component
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("lead", [(), (4,)], ids=["plain", "models"])
def test_output_shape(comp, reduction, lead):
    logits, target, cw, sw = comp.make_inputs(lead, torch.float32, "cpu", 0)
    out = comp.build(cw, "batch_size", reduction, "cpu")(logits, target, sw)
    assert out.shape == ((*lead, B, *comp.none_extra) if reduction == "none" else lead)


@component
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_dtype_and_device_preserved(comp, device, dtype, normalization):
    logits, target, cw, sw = comp.make_inputs((2,), dtype, device, 1)
    # Weights in the other precision must not change the output dtype.
    other = torch.float64 if dtype == torch.float32 else torch.float32
    out = comp.build(cw.to(other), normalization, "mean", device)(logits, target, sw.to(other))
    assert out.dtype == dtype
    assert out.device.type == device
    assert torch.isfinite(out).all()


@component
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_deterministic(comp, device, normalization):
    logits, target, cw, sw = comp.make_inputs((2,), torch.float32, device, 2)
    fn = comp.build(cw, normalization, "mean", device)
    first = fn(logits, target, sw)
    second = comp.build(cw.clone(), normalization, "mean", device)(logits.clone(), target.clone(), sw.clone())
    assert torch.equal(first, second)
    assert torch.equal(first, fn(logits, target, sw))


@component
@pytest.mark.parametrize("scaled", ["class_weight", "sample_weight"])
def test_weight_scaling(comp, scaled):
    if scaled == "class_weight" and not comp.class_weight_scales_loss:
        pytest.skip(f"{comp.class_weight_name} is not an importance weight")
    logits, target, cw, sw = comp.make_inputs((2,), torch.float64, "cpu", 3)
    c = 3.5

    def loss(normalization, scale):
        cw_ = cw * scale if scaled == "class_weight" else cw
        sw_ = sw * scale if scaled == "sample_weight" else sw
        return comp.build(cw_, normalization, "mean", "cpu")(logits, target, sw_)

    torch.testing.assert_close(loss("batch_size", c), c * loss("batch_size", 1.0))
    torch.testing.assert_close(loss("weight_sum", c), loss("weight_sum", 1.0))
    # And the two normalizations genuinely differ for non-uniform weights.
    assert not torch.allclose(loss("batch_size", 1.0), loss("weight_sum", 1.0))


@component
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", ["ones", "none"])
def test_unit_weights_give_plain_loss(comp, normalization, reduction, weights):
    logits, target, cw, sw = comp.make_inputs((), torch.float64, "cpu", 4)
    if weights == "ones":
        cw, sw = torch.ones_like(cw), torch.ones_like(sw)
    else:
        cw, sw = None, None
    out = comp.build(cw, normalization, reduction, "cpu")(logits, target, sw)
    torch.testing.assert_close(out, comp.plain(logits, target, reduction))


# ---- invariants from issue 10 (every loss, functional and module) -----------------------------


@component
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_empty_batch_mean_raises_sum_is_zero_none_is_empty(comp, normalization):
    logits, target, cw, sw = comp.make_inputs((4,), torch.float32, "cpu", 5)
    logits, target, sw = logits[:, :0], target[:, :0], sw[:, :0]  # B = 0
    with pytest.raises(ValueError, match=r"^the batch is empty \(B=0\): the mean is undefined"):
        comp.build(cw, normalization, "mean", "cpu")(logits, target, sw)
    assert torch.equal(comp.build(cw, normalization, "sum", "cpu")(logits, target, sw), torch.zeros(4))
    assert comp.build(cw, normalization, "none", "cpu")(logits, target, sw).shape == (4, 0, *comp.none_extra)


@component
@pytest.mark.parametrize("zeroed", ["class_weight", "sample_weight"])
def test_all_zero_weights_give_exactly_zero_under_batch_size(comp, zeroed):
    if zeroed == "class_weight" and not comp.class_weight_scales_loss:
        pytest.skip(f"{comp.class_weight_name} is not an importance weight")
    logits, target, cw, sw = comp.make_inputs((2,), torch.float64, "cpu", 6)
    if zeroed == "class_weight":
        cw = torch.zeros_like(cw)
    else:
        sw = torch.zeros_like(sw)
    logits.requires_grad_(True)
    out = comp.build(cw, "batch_size", "mean", "cpu")(logits, target, sw)
    assert torch.equal(out, torch.zeros(2, dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="zero total weight"):
        comp.build(cw, "weight_sum", "mean", "cpu")(logits, target, sw)


@component
@pytest.mark.parametrize(
    "dtype",
    [torch.int8, torch.uint8, torch.int16, torch.int32, torch.uint16, torch.uint32, torch.uint64],
    ids=str,
)
def test_integer_label_dtypes_match_int64(comp, dtype):
    logits, target, cw, sw = comp.make_inputs((2,), torch.float64, "cpu", 7)
    fn = comp.build(cw, "weight_sum", "none", "cpu")
    assert torch.equal(fn(logits, target.to(dtype), sw), fn(logits, target, sw))


@component
def test_other_device_is_named(comp):
    # "meta" stands in for a second device on CPU-only machines.
    logits, target, cw, sw = comp.make_inputs((2,), torch.float32, "cpu", 8)
    fn = comp.build(cw, "batch_size", "mean", "meta")
    meta = logits.to("meta")
    with pytest.raises(ValueError, match=r"^target is on cpu but logits are on meta; move it with"):
        fn(meta, target, sw.to("meta"))
    with pytest.raises(ValueError, match=r"^sample_weight is on cpu but logits are on meta; move it with"):
        fn(meta, target.to("meta"), sw)
    with pytest.raises(ValueError, match=rf"{comp.class_weight_name} is on cpu but logits are on meta; move"):
        comp.build(cw, "batch_size", "mean", "cpu")(meta, target.to("meta"), sw.to("meta"))


@component
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_half_logits_give_the_float32_loss_of_the_upcast_logits(comp, half, normalization):
    logits, target, cw, sw = comp.make_inputs((2,), torch.float32, "cpu", 9)
    logits = logits.to(half).requires_grad_(True)
    out = comp.build(cw, normalization, "mean", "cpu")(logits, target, sw)
    assert out.dtype == torch.float32
    assert torch.equal(out, comp.build(cw, normalization, "mean", "cpu")(logits.detach().float(), target, sw))
    out.sum().backward()
    assert logits.grad.dtype == half and torch.isfinite(logits.grad).all()


# ---- every registered experiment (issue 11) ---------------------------------------------------------


def _fields(name):
    return {f.name for f in dataclasses.fields(get_experiment(name).config)}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_is_registered_under_its_name_with_a_validating_config(name):
    exp = get_experiment(name)
    assert exp.name == name
    assert callable(getattr(exp.config, "validate", None)), f"{exp.config.__qualname__} has no validate()"
    assert "quick" in exp.profiles and exp.profiles["quick"] == {}, "defaults are the quick profile"
    for profile in exp.profiles:
        make_config(name, profile)  # every profile builds and validates
    for alias in exp.aliases:
        assert ALIASES[alias] == name and get_experiment(alias).name == name


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_set_of_a_key_the_experiment_does_not_use_is_rejected(name):
    """Every config key of every other experiment that this one lacks: ``--set key=...`` names it and fails."""
    own = _fields(name)
    foreign = sorted(set().union(*(_fields(other) for other in EXPERIMENTS if other != name)) - own)
    assert foreign, "no other experiment has a key this one lacks?"
    accepted = []
    for key in foreign:
        try:
            make_config(name, "quick", [f"{key}=1"])
        except ConfigError as e:
            assert f"'{key}'" in str(e) and "unknown config key" in str(e), str(e)
        else:
            accepted.append(key)
    assert not accepted, f"{name} accepted keys it does not use: {accepted}"


# ---- every module of the package --------------------------------------------------------------------


def test_no_import_cycles_between_modules():
    """Module level, function-local imports included (grimp parses them too)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("iwlab")
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.add(" -> ".join((module, *back)))
    assert not cycles, "\n".join(sorted(cycles))
