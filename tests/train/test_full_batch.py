"""EnsembleTrainer's full-batch gradient descent, per-member losses, learned reweighting and bias-free MLPs.

The references are independent of the trainer's stacked kernel: hand-written float64 gradient-descent
loops for (bias-free) logistic regression with the logistic and exponential losses, and autograd through
ordinary ``nn.Module`` copies and :mod:`iwlab.functional`'s focal losses for the rest. Sample weights
are float32-exact (the trainer keeps weights in float32), so the float64 references see the very same
weights and the comparisons can be tight (1e-12).
"""

import functools
import math

import pytest
import torch
from torch import nn

from iwlab.functional import binary_focal_loss, focal_loss
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member

D, N = 3, 24
ATOL = 1e-12


def _data(n_classes=2, n=N, seed=0):
    g = torch.Generator().manual_seed(500 + seed)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    if n_classes == 2:
        y = ((x @ torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64) + 0.3 * torch.randn(n, generator=g)) > 0).long()
    else:
        y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


def _sample_weight(M, n=N, seed=1):
    # float32-exact weights in [0.25, 2): the trainer rounds weights to float32, the references must not differ
    g = torch.Generator().manual_seed(seed)
    return (0.25 + 1.75 * torch.rand(M, n, generator=g)).to(torch.float32).to(torch.float64)


def _logreg(g):
    return MLP(D, (), 1, generator=g, bias=False).double()


def _fit(model_fn, members, x, y, epochs, sample_weight=None, **kw):
    kw = {"batch_size": None, **kw}
    t = EnsembleTrainer(model_fn, members, **kw)
    t.fit(x, y, epochs=epochs, sample_weight=sample_weight, progress=False)
    return t


def _init(model_fn, seed):
    """The member's initial module: the trainer's protocol builds it from ``Generator().manual_seed(seed)``."""
    return model_fn(torch.Generator().manual_seed(seed))


def _hand_logreg(member, x, y, w, n_steps, normalization, hook=None):
    """theta <- theta - lr * (sum_i gw_i grad l_i + wd * theta) for one bias-free logistic regression, float64.

    ``gw_i = w_i / n`` ("batch_size") or ``w_i / sum_j w_j`` ("weight_sum"); ``hook(theta) -> (n,)`` multiplies
    the weights at every step (a learned weight, a constant in the gradient).
    """
    theta = _init(_logreg, member.seed).layers[0].weight.detach().clone()[0]  # (D,)
    s = 2.0 * y.double() - 1.0  # (n,) labels as signs
    gw0 = w / w.shape[0] if normalization == "batch_size" else w / w.sum()
    for _ in range(n_steps):
        z = x @ theta  # (n,)
        if member.loss == "ce":  # log(1 + exp(-s z)): d/dz = -s sigmoid(-s z)
            dz = -s * torch.sigmoid(-s * z)
        elif member.loss == "exponential":  # exp(-s z): d/dz = -s exp(-s z)
            dz = -s * torch.exp(-s * z)
        else:
            raise AssertionError(member.loss)
        gw = gw0 if hook is None else gw0 * hook(theta)
        grad = (gw * dz) @ x  # (D,) sum_i gw_i dl_i/dz x_i
        theta = theta - member.lr * (grad + member.weight_decay * theta)
    return theta


def _weights(trainer, i):
    return trainer.params[0][i, :, 0]  # (D,) member i's logistic-regression weight


# ----------------------------------------------------------------------------------------------
# 1. full-batch GD of bias-free logistic regressions against the hand loop


LOSS_ORDERS = {
    "ce": ["ce"] * 3,
    "exponential": ["exponential"] * 3,
    "by_loss": ["ce", "ce", "exponential", "exponential"],  # contiguous groups: the slice path
    "interleaved": ["ce", "exponential", "ce", "exponential", "ce"],  # the index-tensor path
}


@pytest.mark.parametrize("order", sorted(LOSS_ORDERS))
@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_full_batch_logreg_equals_hand_loop(order, normalization):
    x, y = _data()
    losses = LOSS_ORDERS[order]
    members = [
        # class weights of powers of two: their products with the float32 sample weights stay exact
        Member(seed=i, lr=0.3 + 0.1 * i, weight_decay=[0.0, 1e-2, 0.5][i % 3], loss=loss, class_weight=cw)
        for i, (loss, cw) in enumerate(zip(losses, [None, (1.0, 0.25), (2.0, 1.0)] * 2, strict=False))
    ]
    sw = _sample_weight(len(members))
    cw = torch.tensor([m.class_weight or (1.0, 1.0) for m in members], dtype=torch.float64)[:, y]  # (M, N)
    epochs, k = 3, 4
    t = _fit(_logreg, members, x, y, epochs, sw, steps_per_epoch=k, normalization=normalization)
    assert len(t.params) == 2 and torch.equal(t.params[1], torch.zeros_like(t.params[1]))  # bias-free
    for i, m in enumerate(members):
        want = _hand_logreg(m, x, y, sw[i] * cw[i], epochs * k, normalization)
        torch.testing.assert_close(_weights(t, i), want, rtol=0, atol=ATOL)
        # and the loop actually moved: the comparison is not between two initialisations
        assert (want - _init(_logreg, m.seed).layers[0].weight[0]).abs().max() > 1e-2


def test_full_batch_momentum_path_equals_hand_loop():
    # momentum=0 vs sgd_update's path (momentum is the non-fast path): momentum 0.9 with a hand heavy ball
    x, y = _data()
    m = Member(seed=3, lr=0.2, weight_decay=1e-2, loss="exponential")
    t = _fit(_logreg, [m], x, y, 2, steps_per_epoch=3, momentum=0.9)
    theta = _init(_logreg, m.seed).layers[0].weight.detach().clone()[0]
    s, buf = 2.0 * y.double() - 1.0, torch.zeros(D, dtype=torch.float64)
    for _ in range(6):
        grad = ((-s * torch.exp(-s * (x @ theta))) / N) @ x + m.weight_decay * theta
        buf = 0.9 * buf + grad
        theta = theta - m.lr * buf
    torch.testing.assert_close(_weights(t, 0), theta, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------
# 2. focal members against autograd through iwlab.functional's focal losses


def _autograd_gd(model_fn, member, x, y, w, n_steps, loss_fn):
    """Gradient descent on an ordinary module: autograd through ``loss_fn(logits, y, w)``, torch.optim.SGD."""
    mod = _init(model_fn, member.seed)
    opt = torch.optim.SGD(mod.parameters(), lr=member.lr, weight_decay=member.weight_decay)
    for _ in range(n_steps):
        opt.zero_grad()
        loss_fn(mod(x), y, w).backward()
        opt.step()
    return mod


def _assert_member_equals(trainer, i, mod, atol=ATOL):
    got = trainer.member_state_dict(i)
    want = mod.state_dict()
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=atol, msg=f"member {i} {k}")


@pytest.mark.parametrize("bias", [True, False])
def test_binary_focal_members_equal_autograd(bias):
    x, y = _data()
    model_fn = lambda g: MLP(D, (5,), 1, generator=g, bias=bias).double()  # noqa: E731
    gammas = [2.0, 0.5, 0.0]
    members = [
        Member(seed=i, lr=0.5, weight_decay=1e-3 * i, loss="focal", loss_kwargs={"gamma": gm})
        for i, gm in enumerate(gammas)
    ]
    sw = _sample_weight(len(members))
    t = _fit(model_fn, members, x, y, 1, sw, steps_per_epoch=2)
    for i, m in enumerate(members):
        loss = lambda z, yy, w: binary_focal_loss(z.squeeze(-1), yy, gamma=m.loss_kwargs["gamma"], sample_weight=w)  # noqa: E731,B023
        _assert_member_equals(t, i, _autograd_gd(model_fn, m, x, y, sw[i], 2, loss))


def test_multiclass_focal_members_equal_autograd():
    x, y = _data(n_classes=3)
    model_fn = lambda g: MLP(D, (6,), 3, generator=g).double()  # noqa: E731
    members = [
        Member(seed=0, lr=0.4, loss="focal", loss_kwargs={"gamma": 2.0}),
        Member(seed=1, lr=0.4, loss="ce"),
        Member(seed=2, lr=0.3, loss="focal", loss_kwargs={"gamma": 1.5}, weight_decay=1e-2),
    ]
    sw = _sample_weight(3)
    for normalization in ("batch_size", "weight_sum"):
        t = _fit(model_fn, members, x, y, 1, sw, steps_per_epoch=2, normalization=normalization)
        for i, m in enumerate(members):
            gamma = m.loss_kwargs.get("gamma", 0.0)  # gamma 0: the cross-entropy
            loss = lambda z, yy, w: focal_loss(z, yy, gamma=gamma, sample_weight=w, normalization=normalization)  # noqa: E731,B023
            _assert_member_equals(t, i, _autograd_gd(model_fn, m, x, y, sw[i], 2, loss))


# ----------------------------------------------------------------------------------------------
# 3. an ensemble of mixed losses equals its members trained alone


@pytest.mark.parametrize("batch_size", [None, 8])
def test_mixed_ensemble_equals_single_member_ensembles(batch_size):
    x, y = _data()
    model_fn = lambda g: MLP(D, (4,), 1, generator=g).double()  # noqa: E731
    members = [
        Member(seed=0, lr=0.3, loss="exponential"),
        Member(seed=1, lr=0.2, loss="focal", loss_kwargs={"gamma": 2.0}, weight_decay=1e-2),
        Member(seed=2, lr=0.4, loss="ce"),
    ]
    sw = _sample_weight(3)
    kw = {"batch_size": batch_size, "steps_per_epoch": 3 if batch_size is None else 1}
    together = _fit(model_fn, members, x, y, 3, sw, **kw)
    for i, m in enumerate(members):
        alone = _fit(model_fn, [m], x, y, 3, sw[i], **kw)
        for p, q in zip(together.params, alone.params, strict=True):
            torch.testing.assert_close(p[i], q[0], rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# 4. bias-free MLPs


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_bias_free_mlp_keeps_zero_biases_and_equals_autograd(optimizer):
    x, y = _data()
    model_fn = lambda g: MLP(D, (8,), 1, generator=g, bias=False).double()  # noqa: E731
    members = [Member(seed=s, lr=0.05 if optimizer == "adam" else 0.5, weight_decay=1e-2 * s) for s in range(3)]
    t = _fit(model_fn, members, x, y, 2, steps_per_epoch=3, optimizer=optimizer)
    for b in t.params[1::2]:
        assert torch.equal(b, torch.zeros_like(b))  # exactly zero, whatever the optimizer and decay
    for i, m in enumerate(members):
        mod = t.member_module(i)
        assert all(layer.bias is None for layer in mod.layers)
        assert [n for n, _ in mod.named_parameters()] == ["layers.0.weight", "layers.1.weight"]
        torch.testing.assert_close(mod(x), t.logits(x)[i], rtol=0, atol=ATOL)
        # the reference: autograd through a bias-free module and torch.optim
        ref = _init(model_fn, m.seed)
        cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        opt = cls(ref.parameters(), lr=m.lr, weight_decay=m.weight_decay)
        for _ in range(6):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(ref(x).squeeze(-1), y.double()).backward()
            opt.step()
        _assert_member_equals(t, i, ref)


def test_bias_free_mlp_is_two_homogeneous():
    x, _ = _data()
    mod = MLP(D, (8,), 1, generator=torch.Generator().manual_seed(0), bias=False).double()
    scaled = MLP(D, (8,), 1, bias=False).double()
    for c in (0.5, 1.7, 3.0):
        with torch.no_grad():
            for p, q in zip(scaled.parameters(), mod.parameters(), strict=True):
                p.copy_(c * q)
        torch.testing.assert_close(scaled(x), c**2 * mod(x), rtol=1e-13, atol=1e-14)
    # with biases it is not: f(c theta) != c^2 f(theta) (the property depends on bias=False)
    biased = MLP(D, (8,), 1, generator=torch.Generator().manual_seed(0)).double()
    doubled = MLP(D, (8,), 1).double()
    with torch.no_grad():
        for p, q in zip(doubled.parameters(), biased.parameters(), strict=True):
            p.copy_(2 * q)
    assert not torch.allclose(doubled(x), 4 * biased(x))


def _reference_draws(dims, seed, bias):
    """The draw order of MLP.reset_parameters before bias=False existed: per layer weight then bias,
    each ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` as ``rand * 2b - b``; bias-free layers skip the bias draw."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for li, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        bound = 1.0 / math.sqrt(a)
        out[f"layers.{li}.weight"] = torch.rand((b, a), generator=g) * (2 * bound) - bound
        if bias:
            out[f"layers.{li}.bias"] = torch.rand((b,), generator=g) * (2 * bound) - bound
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_draws(bias):
    for dims, seed in (((2, 4, 1), 0), ((3, 5, 6, 2), 7)):
        mod = MLP(dims[0], dims[1:-1], dims[-1], generator=torch.Generator().manual_seed(seed), bias=bias)
        want = _reference_draws(dims, seed, bias)
        got = mod.state_dict()
        assert list(got) == list(want)
        for k in want:
            assert torch.equal(got[k], want[k]), k


def test_mlp_bias_must_be_bool():
    with pytest.raises(TypeError, match="^bias must be True or False, got 0$"):
        MLP(2, (4,), 1, bias=0)


# ----------------------------------------------------------------------------------------------
# 5. the reweight hook


@pytest.mark.parametrize("batch_size", [None, 8])
def test_constant_reweight_equals_scaled_sample_weights(batch_size):
    # with "batch_size" normalization the hook multiplies the normalized weights: c * ones is the sample weights
    # times c (c a power of two, so both roundings are exact and the runs bitwise equal)
    x, y = _data()
    c = 4.0
    members = [Member(seed=0, lr=0.1), Member(seed=1, lr=0.2, loss="exponential")]
    sw = _sample_weight(2)
    kw = {"batch_size": batch_size, "steps_per_epoch": 3 if batch_size is None else 1}
    hooked = _fit(
        _logreg, members, x, y, 2, sw, reweight=lambda z, yy, xx, p: torch.full(yy.shape, c, dtype=z.dtype), **kw
    )
    scaled = _fit(_logreg, members, x, y, 2, sw * c, **kw)
    for p, q in zip(hooked.params, scaled.params, strict=True):
        assert torch.equal(p, q)
    unhooked = _fit(_logreg, members, x, y, 2, sw, **kw)
    assert not torch.equal(hooked.params[0], unhooked.params[0])  # the hook did something


def _margin_decay(logits, y, x, params):
    # exp(-s theta.x): the weight an example gets shrinks with its margin under the current parameters
    s = 2.0 * y - 1.0  # (M, B)
    return torch.exp(-s * torch.bmm(x, params[0]).squeeze(-1))  # (M, B)


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_param_dependent_reweight_equals_hand_loop(normalization):
    x, y = _data()
    members = [Member(seed=0, lr=0.3), Member(seed=1, lr=0.2, loss="exponential", weight_decay=1e-2)]
    sw = _sample_weight(2)
    t = _fit(_logreg, members, x, y, 2, sw, steps_per_epoch=4, normalization=normalization, reweight=_margin_decay)
    s = 2.0 * y.double() - 1.0
    for i, m in enumerate(members):
        want = _hand_logreg(m, x, y, sw[i], 8, normalization, hook=lambda th: torch.exp(-s * (x @ th)))  # noqa: B023
        torch.testing.assert_close(_weights(t, i), want, rtol=0, atol=ATOL)


def _logit_margin_decay(logits, y, x, params):
    # exp(-s f(x)) from the logits the hook is given: any model, not only logistic regression
    return torch.exp(-(2.0 * y - 1.0) * logits.squeeze(-1))  # (M, B)


def test_reweighted_full_batch_checkpoint_resume_is_bitwise(tmp_path):
    x, y = _data()
    model_fn = lambda g: MLP(D, (4,), 1, generator=g, bias=False).double()  # noqa: E731
    members = [Member(seed=0, lr=0.3), Member(seed=1, lr=0.2, loss="focal", loss_kwargs={"gamma": 2.0})]
    kw = {"steps_per_epoch": 3, "reweight": _logit_margin_decay}
    ckpt = tmp_path / "c.pt"
    first = EnsembleTrainer(model_fn, members, batch_size=None, **kw)
    first.fit(x, y, epochs=5, checkpoint_path=ckpt, progress=False)
    resumed = EnsembleTrainer(model_fn, members, batch_size=None, **kw)
    resumed.fit(x, y, epochs=10, checkpoint_path=ckpt, progress=False)
    assert resumed.epoch == 10
    straight = _fit(model_fn, members, x, y, 10, **kw)
    for p, q in zip(resumed.params, straight.params, strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(first.params[0], straight.params[0])  # the resumed half trained


# ----------------------------------------------------------------------------------------------
# 6. refusals, one line each


def _refused(exc, needle, fn):
    with pytest.raises(exc) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg


def _conv(g):
    return nn.Sequential(nn.Linear(D, 4), nn.ReLU(), nn.Linear(4, 1))


def test_refusals():
    mlp = lambda g: MLP(D, (4,), 1, generator=g)  # noqa: E731
    m0 = [Member(seed=0)]
    _refused(ValueError, "steps_per_epoch", lambda: EnsembleTrainer(mlp, m0, batch_size=8, steps_per_epoch=2))
    _refused(ValueError, "steps_per_epoch", lambda: EnsembleTrainer(mlp, m0, batch_size=None, steps_per_epoch=0))
    drop = lambda g: MLP(D, (4,), 1, dropout=0.5, generator=g)  # noqa: E731
    _refused(ValueError, "batch_size=None", lambda: EnsembleTrainer(drop, m0, batch_size=None))
    _refused(ValueError, "batch_size=None", lambda: EnsembleTrainer(_conv, m0, batch_size=None))
    _refused(
        ValueError,
        "member 1: loss must be one of",
        lambda: EnsembleTrainer(mlp, [m0[0], Member(seed=1, loss="hinge")], batch_size=8),
    )
    _refused(
        ValueError,
        "loss_kwargs",
        lambda: EnsembleTrainer(mlp, [Member(seed=0, loss="focal", loss_kwargs={"alpha": 0.25})], batch_size=8),
    )
    _refused(
        ValueError,
        "loss_kwargs",
        lambda: EnsembleTrainer(mlp, [Member(seed=0, loss="ce", loss_kwargs={"gamma": 2.0})], batch_size=8),
    )
    multi = lambda g: MLP(D, (4,), 3, generator=g)  # noqa: E731
    _refused(
        ValueError, "binary-only", lambda: EnsembleTrainer(multi, [Member(seed=0, loss="exponential")], batch_size=8)
    )
    _refused(TypeError, "reweight", lambda: EnsembleTrainer(mlp, m0, batch_size=8, reweight="margin"))


def test_func_backend_members_with_their_own_losses_equal_autograd():
    """The func backend pulls each member's d loss / d logits back through the forward: a focal, an exponential
    and a reweighted cross-entropy member each equal one ordinary module trained by autograd."""
    x, y = _data()
    members = [
        Member(seed=0, loss="focal", loss_kwargs={"gamma": 2.0}, lr=0.3),
        Member(seed=1, loss="exponential", lr=0.3),
    ]
    members.append(Member(seed=2, lr=0.3))

    def model_fn(g):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        return _conv(g).double()

    hook = lambda z, yy, xx, p: torch.exp(-0.1 * z.squeeze(-1).abs())  # noqa: E731
    trainer = EnsembleTrainer(model_fn, members, batch_size=N, backend="func", reweight=hook)
    starts = [model_fn(torch.Generator().manual_seed(m.seed)) for m in members]
    trainer.fit(x, y, epochs=2, progress=False)
    s = 2.0 * y.double() - 1.0
    losses = [
        lambda z: binary_focal_loss(z, y, gamma=2.0, reduction="none"),
        lambda z: torch.exp(-s * z),
        lambda z: nn.functional.binary_cross_entropy_with_logits(z, y.double(), reduction="none"),
    ]
    for i, (mod, loss) in enumerate(zip(starts, losses, strict=True)):
        opt = torch.optim.SGD(mod.parameters(), lr=0.3)
        for _ in range(2):  # full batch of N: one step per epoch, in the same order as the trainer
            opt.zero_grad()
            z = mod(x).squeeze(-1)
            (loss(z) * torch.exp(-0.1 * z.detach().abs())).mean().backward()
            opt.step()
        for name, p in mod.named_parameters():
            # the func path's step weights w / B are float32 (1/24 rounds at 3e-8 relative): hence 1e-7, not 1e-12
            torch.testing.assert_close(trainer.params[name][i], p.detach(), atol=1e-7, rtol=1e-6, msg=f"{i} {name}")


@pytest.mark.parametrize(
    "member, exc, needle",
    [  # found by the test hunt: these were accepted, or failed far from the cause
        (Member(seed=0, loss="focal", loss_kwargs={"gamma": -1.0}), ValueError, "member 0: loss_kwargs: gamma"),
        (Member(seed=0, loss="focal", loss_kwargs={"gamma": float("nan")}), ValueError, "gamma"),
        (Member(seed=0, loss="focal", loss_kwargs={"gamma": [2.0]}), ValueError, "gamma"),
        (Member(seed=0, loss="focal", loss_kwargs=None), TypeError, "member 0: loss_kwargs must be a dict"),
        (Member(seed=0, loss=["ce"]), TypeError, "member 0: loss must be a string"),
    ],
)
def test_bad_member_losses_are_refused_when_the_trainer_is_built(member, exc, needle):
    mlp = lambda g: MLP(D, (4,), 1, generator=g)  # noqa: E731
    _refused(exc, needle, lambda: EnsembleTrainer(mlp, [member], batch_size=8))


@pytest.mark.parametrize(
    "hook, needle",
    [
        (lambda z, y, x, p: torch.ones_like(z), "shape"),  # (M, B, 1), not (M, B)
        (lambda z, y, x, p: torch.ones_like(y, dtype=torch.long), "the logits' dtype"),  # integer weights: refused
        (lambda z, y, x, p: -torch.ones_like(y, dtype=z.dtype), "negative, NaN or infinite"),
        (lambda z, y, x, p: torch.full_like(y, float("nan"), dtype=z.dtype), "negative, NaN or infinite"),
        (lambda z, y, x, p: None, "reweight must return"),
    ],
)
def test_bad_reweight_outputs_are_refused_with_one_line(hook, needle):
    x, y = _data()
    trainer = EnsembleTrainer(_logreg, [Member(seed=0), Member(seed=1)], batch_size=None, reweight=hook)
    _refused(ValueError, needle, lambda: trainer.fit(x, y, epochs=1, progress=False))


# ----------------------------------------------------------------------------------------------
# 7. the settings record


def test_ce_minibatch_record_has_no_new_keys():
    x, y = _data()
    t = EnsembleTrainer(lambda g: MLP(D, (4,), 1, generator=g), [Member(seed=0), Member(seed=1)], batch_size=8)
    t.fit(x.float(), y, epochs=1, progress=False)
    spec = t.state_dict()["spec"]
    # the keys the record had before per-member losses existed: such checkpoints still compare equal
    assert list(spec) == [
        "members",
        "optimizer",
        "batch_size",
        "normalization",
        "backend",
        "dropout",
        "parameters",
        "buffers",
        "model_repr_sha256",
        "data",
    ]
    assert [list(m) for m in spec["members"]] == [["seed", "lr", "weight_decay", "class_weight"]] * 2
    full = EnsembleTrainer(_logreg, [Member(seed=0, loss="exponential")], batch_size=None, steps_per_epoch=5)
    rec = full._config_record()
    assert rec["steps_per_epoch"] == 5 and rec["members"][0]["loss"] == "exponential"


@pytest.mark.parametrize(
    "saved, now, field",
    [
        (
            Member(seed=0),
            Member(seed=0, loss="exponential"),
            "member 0 loss=(not recorded); this run has loss=exponential",
        ),
        (
            Member(seed=0, loss="focal", loss_kwargs={"gamma": 2.0}),
            Member(seed=0, loss="focal", loss_kwargs={"gamma": 1.0}),
            "member 0 loss_kwargs gamma=2.0",
        ),
        (
            Member(seed=0, loss="exponential"),
            Member(seed=0),
            "member 0 loss=exponential; this run has loss=(not recorded)",
        ),
    ],
)
def test_resume_with_other_member_loss_is_refused(tmp_path, saved, now, field):
    x, y = _data()
    ckpt = tmp_path / "c.pt"
    EnsembleTrainer(_logreg, [saved], batch_size=None).fit(x, y, epochs=1, checkpoint_path=ckpt, progress=False)
    before = ckpt.read_bytes()
    _refused(
        ValueError,
        f"checkpoint {ckpt} was made with {field}",
        lambda: EnsembleTrainer(_logreg, [now], batch_size=None).fit(
            x, y, epochs=2, checkpoint_path=ckpt, progress=False
        ),
    )
    assert ckpt.read_bytes() == before


def test_resume_with_other_steps_per_epoch_or_reweight_is_refused(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "c.pt"
    m = [Member(seed=0)]
    EnsembleTrainer(_logreg, m, batch_size=None, steps_per_epoch=2).fit(
        x, y, epochs=1, checkpoint_path=ckpt, progress=False
    )
    for kw, field in (
        ({"steps_per_epoch": 3}, "steps_per_epoch=2"),
        ({"steps_per_epoch": 2, "reweight": _margin_decay}, "reweight"),
    ):
        other = EnsembleTrainer(_logreg, m, batch_size=None, **kw)
        fit = functools.partial(other.fit, x, y, epochs=2, checkpoint_path=ckpt, progress=False)
        _refused(ValueError, f"was made with {field}", fit)


# ----------------------------------------------------------------------------------------------
# deferred re-weighting (DRW, Cao et al. 2019): class weights switch at a member's epoch


def _hand_logreg_from(theta, member, x, y, w, n_steps):
    """The hand loop of :func:`_hand_logreg` ("batch_size"), continued from ``theta``."""
    s = 2.0 * y.double() - 1.0
    for _ in range(n_steps):
        theta = theta - member.lr * ((w / w.shape[0]) * (-s * torch.sigmoid(-s * (x @ theta)))) @ x
    return theta


@pytest.mark.parametrize("batch_size", [None, N])
def test_deferred_class_weight_switches_at_its_epoch(batch_size):
    x, y = _data()
    early, late = (1.0, 0.5), (0.25, 2.0)
    members = [
        Member(seed=0, class_weight=early, deferred_class_weight=(3, late), lr=0.5),
        Member(seed=1, class_weight=early),
    ]
    kw = {"steps_per_epoch": 2} if batch_size is None else {}
    trainer = EnsembleTrainer(_logreg, members, batch_size=batch_size, **kw)
    trainer.fit(x, y, epochs=4, progress=False)
    per_epoch = 2 if batch_size is None else 1
    cw = lambda c: torch.tensor(c, dtype=torch.float64)[y]  # noqa: E731  (N,) the class weight of each example
    theta = _hand_logreg(members[0], x, y, cw(early), 2 * per_epoch, "batch_size")  # epochs 1-2: the early weights
    theta = _hand_logreg_from(theta, members[0], x, y, cw(late), 2 * per_epoch)  # epochs 3-4: the deferred ones
    torch.testing.assert_close(_weights(trainer, 0), theta, atol=1e-12, rtol=0)
    plain = _hand_logreg(members[1], x, y, cw(early), 4 * per_epoch, "batch_size")  # member 1 keeps its weights
    torch.testing.assert_close(_weights(trainer, 1), plain, atol=1e-12, rtol=0)


def test_deferred_class_weight_is_refused_when_malformed_and_recorded_in_the_settings():
    mlp = lambda g: MLP(D, (), 1, generator=g)  # noqa: E731
    _refused(
        ValueError,
        "deferred_class_weight",
        lambda: EnsembleTrainer(mlp, [Member(seed=0, deferred_class_weight=(2,))], batch_size=8),
    )
    _refused(
        ValueError,
        "deferred_class_weight epoch",
        lambda: EnsembleTrainer(mlp, [Member(seed=0, deferred_class_weight=(0, (1.0, 1.0)))], batch_size=8),
    )
    t = EnsembleTrainer(mlp, [Member(seed=0, deferred_class_weight=(5, (1.0, 3.0)))], batch_size=8)
    assert t._config_record()["members"][0]["deferred_class_weight"] == [5, [1.0, 3.0]]


def test_an_in_place_transform_does_not_touch_the_callers_data():
    """Found by the re-hunt: a transform doing xb.mul_(2) changed the caller's X in full-batch training."""
    x, y = _data()
    before = x.clone()

    def doubling(xb, g):
        return xb.mul_(2.0)

    trainer = EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=None, steps_per_epoch=3, transform=doubling)
    trainer.fit(x, y, epochs=2, progress=False)
    assert torch.equal(x, before)


def test_a_float64_reweight_on_a_float32_model_is_refused_not_crashed():
    x, y = _data()
    hook = lambda z, yy, xx, p: torch.ones(z.shape[:2], dtype=torch.float64)  # noqa: E731
    trainer = EnsembleTrainer(lambda g: MLP(D, (), 1, generator=g), [Member(seed=0)], batch_size=8, reweight=hook)
    _refused(ValueError, "the logits' dtype", lambda: trainer.fit(x.float(), y, epochs=1, progress=False))


def test_deferred_weights_that_are_not_numbers_are_refused():
    mlp = lambda g: MLP(D, (), 1, generator=g)  # noqa: E731
    bad = Member(seed=0, deferred_class_weight=(2, "ab"))
    _refused(
        ValueError, "deferred_class_weight weights must be numbers", lambda: EnsembleTrainer(mlp, [bad], batch_size=8)
    )
