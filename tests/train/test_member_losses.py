"""Every member loss of the ensemble trainer against autograd through its functional loss."""

import pytest
import torch

from iwlab.functional import (
    binary_poly_tailed_loss,
    ldam_loss,
    logit_adjusted_loss,
    poly_tailed_loss,
    vs_loss,
)
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member

D, N = 3, 20
COUNTS3, COUNTS2 = [50, 20, 5], [40, 8]
# (loss name, loss_kwargs, the functional loss for C >= 2 logits)
MULTI = [
    ("poly", {"alpha": 1.5, "kind": "logit"}, poly_tailed_loss),
    ("poly", {"alpha": 2.0, "kind": "linear"}, poly_tailed_loss),
    ("poly", {"alpha": 1.0, "kind": "exp"}, poly_tailed_loss),
    ("ldam", {"class_counts": COUNTS3, "max_margin": 0.5, "scale": 5.0}, ldam_loss),
    ("logit_adjusted", {"class_counts": COUNTS3, "tau": 1.0}, logit_adjusted_loss),
    ("vs", {"class_counts": COUNTS3, "tau": 1.0, "gamma": 0.2}, vs_loss),
]


def _data(C):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def _model(out):
    return lambda g: MLP(D, (4,), out, generator=g).double()


def _autograd(out, seed, loss, x, y, steps, lr):
    """One ordinary module, full-batch SGD on the mean of ``loss(logits, y)`` (the trainer's "batch_size")."""
    mod = _model(out)(torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(mod.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        z = mod(x)
        loss(z.squeeze(-1) if out == 1 else z, y).mean().backward()
        opt.step()
    return mod


def _compare(trainer, i, mod):
    ref = trainer.member_module(i)
    for (name, a), (_, b) in zip(ref.named_parameters(), mod.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=f"member {i} {name}")


def test_multiclass_member_losses_equal_autograd():
    x, y = _data(3)
    members = [Member(seed=i, loss=n, loss_kwargs=kw, lr=0.2) for i, (n, kw, _) in enumerate(MULTI)]
    members.append(Member(seed=9, lr=0.2))  # plain cross-entropy beside them
    trainer = EnsembleTrainer(_model(3), members, batch_size=None, steps_per_epoch=3)
    trainer.fit(x, y, epochs=1, progress=False)
    for i, (_, kw, fn) in enumerate(MULTI):
        _compare(trainer, i, _autograd(3, i, lambda z, t, fn=fn, kw=kw: fn(z, t, reduction="none", **kw), x, y, 3, 0.2))


@pytest.mark.parametrize("backend", ["stacked", "func"])
def test_binary_members_use_the_two_logits_0_f(backend):
    """On a one-logit model, LDAM / LA / VS are the two-class losses on (0, f); poly has its own binary form."""
    x, y = _data(2)
    specs = [
        ("ldam", {"class_counts": COUNTS2, "scale": 5.0}, ldam_loss),
        ("logit_adjusted", {"class_counts": COUNTS2, "tau": 1.0}, logit_adjusted_loss),
        ("vs", {"class_counts": COUNTS2}, vs_loss),
    ]
    members = [Member(seed=i, loss=n, loss_kwargs=kw, lr=0.2) for i, (n, kw, _) in enumerate(specs)]
    members.append(Member(seed=5, loss="poly", loss_kwargs={"alpha": 1.0}, lr=0.2))
    trainer = EnsembleTrainer(_model(1), members, batch_size=N, backend=backend)
    trainer.fit(x, y, epochs=2, progress=False)
    for i, (_, kw, fn) in enumerate(specs):

        def two(z, t, fn=fn, kw=kw):
            return fn(torch.stack([torch.zeros_like(z), z], -1), t, reduction="none", **kw)

        mod = _autograd(1, i, two, x, y, 2, 0.2)
        if backend == "stacked":
            _compare(trainer, i, mod)
        else:  # the func path's step weights are float32 (w / B): 1e-7, see test_full_batch
            for name, p in mod.named_parameters():
                torch.testing.assert_close(trainer.params[name][i], p.detach(), atol=1e-7, rtol=1e-6)
    poly = _autograd(1, 5, lambda z, t: binary_poly_tailed_loss(z, t, alpha=1.0, reduction="none"), x, y, 2, 0.2)
    if backend == "stacked":
        _compare(trainer, 3, poly)


@pytest.mark.parametrize(
    "member, out, needle",
    [
        (Member(seed=0, loss="ldam", loss_kwargs={"class_counts": [1, 2]}), 3, "member 0: loss_kwargs"),
        (Member(seed=0, loss="poly", loss_kwargs={"alpha": 0.0}), 3, "alpha"),
        (Member(seed=0, loss="poly", loss_kwargs={"alpha": 1.0, "kind": "linear"}), 3, "alpha"),
        (Member(seed=0, loss="poly", loss_kwargs={"alpha": 1.0, "kind": "cubic"}), 3, "kind"),
        (Member(seed=0, loss="vs", loss_kwargs={"class_counts": [3, 0, 1]}), 3, "member 0: loss_kwargs"),
        (Member(seed=0, loss="logit_adjusted", loss_kwargs={"class_counts": [3, 1], "tau": float("nan")}), 1, "tau"),
        (Member(seed=0, loss="vs", loss_kwargs={"class_counts": [3, 1], "beta": 1.0}), 1, "takes"),
    ],
)
def test_bad_member_loss_keywords_are_refused_when_built(member, out, needle):
    with pytest.raises(ValueError) as e:
        EnsembleTrainer(_model(out), [member], batch_size=4)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("kind, alpha", [("logit", 1.0), ("logit", 0.5), ("linear", 2.0), ("exp", 1.5)])
def test_binary_poly_closed_form_equals_autograd(kind, alpha):
    """The binary poly members use a closed-form gradient (one group per kind, alpha per member): it equals
    autograd through the functional loss, on both sides of the switch at margin 1."""
    x, y = _data(2)
    members = [Member(seed=0, loss="poly", loss_kwargs={"alpha": alpha, "kind": kind}, lr=0.5)]
    members.append(Member(seed=1, loss="poly", loss_kwargs={"alpha": alpha + 1.0, "kind": kind}, lr=0.5))
    trainer = EnsembleTrainer(_model(1), members, batch_size=None, steps_per_epoch=5)
    trainer.fit(x, y, epochs=2, progress=False)
    for i, m in enumerate(members):
        kw = m.loss_kwargs
        mod = _autograd(1, i, lambda z, t, kw=kw: binary_poly_tailed_loss(z, t, reduction="none", **kw), x, y, 10, 0.5)
        _compare(trainer, i, mod)
