"""EnsembleTrainer's per-epoch learning-rate factor (``lr_schedule``) and training-batch transform (``transform``).

References: a hand-written float64 gradient-descent loop for bias-free logistic regression (with and without
momentum), the LDAM-DRW code's ``adjust_learning_rate`` written out by hand, zero-padded crops built with
``F.pad`` for the flip-and-shift transform, and uninterrupted runs for resumed ones.
"""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iwlab.models import MLP, init_from_generator_
from iwlab.train import EnsembleTrainer, Member, ensemble_rng_seed
from iwlab.train.augment import flip_shift_transform
from iwlab.train.ensemble_state import describe
from iwlab.train.optim import step_warmup_schedule

D, N = 3, 24


def _data(n=N, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(700 + seed)
    x = torch.randn(n, D, generator=g, dtype=dtype)
    y = ((x @ torch.tensor([1.0, -0.5, 0.25], dtype=dtype) + 0.3 * torch.randn(n, generator=g, dtype=dtype)) > 0).long()
    return x, y


def _logreg(g):
    return MLP(D, (), 1, generator=g, bias=False).double()


def _images(n=12, seed=0):
    g = torch.Generator().manual_seed(800 + seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _conv(g):
    net = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Linear(72, 3)
    )
    return init_from_generator_(net, g)


class Factors:
    """A schedule from a table of factors, with a repr (as the settings record wants)."""

    def __init__(self, *factors):
        self.factors = factors

    def __call__(self, epoch):
        return self.factors[epoch - 1]

    def __repr__(self):
        return f"Factors{self.factors}"


class Noise:
    """A transform for vector inputs: xb + scale * N(0, 1) drawn from the trainer's generator."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, xb, g):
        return xb + self.scale * torch.randn(xb.shape, generator=g, dtype=xb.dtype)

    def __repr__(self):
        return f"Noise({self.scale})"


# ----------------------------------------------------------------------------------------------
# lr_schedule


@pytest.mark.parametrize("momentum", [0.0, 0.9])  # the folded-lr fast step and the general step
def test_schedule_full_batch_equals_hand_loop(momentum):
    x, y = _data()
    members = [Member(seed=0, lr=0.3, weight_decay=0.05), Member(seed=1, lr=0.1)]
    steps, factors = 2, (1.0, 0.5, 0.1)
    t = EnsembleTrainer(
        _logreg, members, batch_size=None, steps_per_epoch=steps, momentum=momentum, lr_schedule=Factors(*factors)
    )
    t.fit(x, y, epochs=3, progress=False)
    yf = y.double()
    for i, m in enumerate(members):
        theta = _logreg(torch.Generator().manual_seed(m.seed)).layers[0].weight.detach().reshape(D).clone()
        buf = torch.zeros(D, dtype=torch.float64)
        for f in factors:
            for _ in range(steps):
                z = x @ theta  # (N,)
                g = x.T @ (torch.sigmoid(z) - yf) / N + m.weight_decay * theta  # mean logistic loss + coupled decay
                buf = momentum * buf + g if momentum else g
                theta = theta - m.lr * f * buf
        torch.testing.assert_close(t._param_list()[0][i].reshape(D), theta, rtol=0, atol=1e-12)


def test_warmup_schedule_is_the_ldam_drw_recipe():
    f = step_warmup_schedule()

    def ldam_drw(e):  # kaidic/LDAM-DRW cifar_train.py adjust_learning_rate, its `epoch + 1` being our e
        if e <= 5:
            return e / 5
        if e > 180:
            return 0.0001
        if e > 160:
            return 0.01
        return 1.0

    assert [f(e) for e in range(1, 201)] == pytest.approx([ldam_drw(e) for e in range(1, 201)], rel=1e-15)
    assert [f(e) for e in range(1, 6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0], rel=1e-15)
    assert (f(160), f(161), f(180), f(181)) == pytest.approx((1.0, 0.01, 0.01, 1e-4), rel=1e-15)
    assert repr(f) == "step_warmup_schedule(warmup_epochs=5, milestones=(160, 180), gamma=0.01)"
    g = step_warmup_schedule(0, [2], 0.5)
    assert [g(e) for e in (1, 2, 3, 4)] == [1.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(milestones=(180, 160)), "milestones"),
        (dict(milestones=(3,), warmup_epochs=5), "milestones"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(gamma=-0.1), "gamma"),
    ],
)
def test_warmup_schedule_refuses_bad_arguments(kw, err):
    with pytest.raises(ValueError, match=err):
        step_warmup_schedule(**kw)


def test_frozen_members_stay_at_lr_zero_under_a_schedule():
    x, y = _data(dtype=torch.float32)
    members = [Member(seed=0, lr=1e-3), Member(seed=1, lr=1e6)]
    factors = (1.0, 2.0, 0.5, 3.0)
    t = EnsembleTrainer(
        lambda g: MLP(D, (8,), 1, generator=g), members, batch_size=8, momentum=0.5, lr_schedule=Factors(*factors)
    )
    used = []
    step = t._train_step

    def spy(*args):  # the general step's last argument is the epoch's (M,) lr
        used.append((t.epoch + 1, args[-1].clone()))
        return step(*args)

    t._train_step = spy
    t.fit(x * 100.0, y, epochs=4, progress=False)
    frozen = int(t.diverged_at[1])
    assert t.diverged_at[0] == -1 and 1 <= frozen < 4
    after = [(e, lr) for e, lr in used if e > frozen]
    assert after, "no epoch after the divergence"
    for e, lr in used:
        assert float(lr[0]) == pytest.approx(1e-3 * factors[e - 1], rel=1e-6)
        assert float(lr[1]) == (0.0 if e > frozen else pytest.approx(1e6 * factors[e - 1], rel=1e-6))
    assert t.lr.tolist() == [pytest.approx(1e-3), 0.0]


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_bad_factor_is_refused_naming_the_epoch(bad):
    x, y = _data()
    t = EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=8, lr_schedule=Factors(1.0, bad))
    with pytest.raises(ValueError, match=r"lr_schedule .* for epoch 2"):
        t.fit(x, y, epochs=2, progress=False)


def test_factor_that_underflows_the_lr_is_refused():
    x, y = _data(dtype=torch.float32)
    t = EnsembleTrainer(
        lambda g: MLP(D, (), 1, generator=g), [Member(seed=0)], batch_size=8, lr_schedule=Factors(1e-60)
    )
    with pytest.raises(ValueError, match="lr_schedule factor 1e-60 of epoch 1"):
        t.fit(x, y, epochs=1, progress=False)


# ----------------------------------------------------------------------------------------------
# transform


@pytest.mark.parametrize("backend", ["stacked", "func"])
def test_transform_sees_each_step_batch_and_the_trainers_generator(backend):
    seen = []

    def spy(xb, g):
        seen.append((tuple(xb.shape), g))
        return xb

    if backend == "stacked":
        x, y = _data(n=20, dtype=torch.float32)
        model_fn = lambda g: MLP(D, (4,), 1, generator=g)  # noqa: E731
    else:
        (x, y), model_fn = _images(n=20), _conv
    members = [Member(seed=3), Member(seed=4)]
    t = EnsembleTrainer(model_fn, members, batch_size=8, transform=spy)
    t.fit(x, y, epochs=2, progress=False)
    assert [s for s, _ in seen] == [(2, b, *x.shape[1:]) for b in (8, 8, 4)] * 2
    assert all(g is t._transform_gen for _, g in seen)
    assert t._transform_gen.initial_seed() == ensemble_rng_seed([3, 4]) + 1
    t.logits(x), t.predict(x)
    assert len(seen) == 6  # evaluation never transforms


@pytest.mark.parametrize(
    "bad",
    [lambda xb, g: xb[:, :-1], lambda xb, g: xb.double(), lambda xb, g: xb.tolist()],
    ids=["shape", "dtype", "type"],
)
def test_transform_changing_the_batch_is_refused(bad):
    x, y = _data(dtype=torch.float32)
    t = EnsembleTrainer(lambda g: MLP(D, (), 1, generator=g), [Member(seed=0)], batch_size=8, transform=bad)
    with pytest.raises(ValueError, match=r"transform must return the batch's shape, dtype and device \(\(1, 8, 3\)"):
        t.fit(x, y, epochs=1, progress=False)


def test_flip_shift_transform_is_a_zero_padded_crop_and_flip():
    xb = torch.randn(2, 3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    out = flip_shift_transform(max_shift=2)(xb, torch.Generator().manual_seed(1))
    assert out.shape == xb.shape and out.dtype == xb.dtype

    def candidates(img):  # (1, 5, 5): every flip and every 5 x 5 crop of the image padded with 2 zeros
        for im in (img, img.flip(-1)):
            padded = F.pad(im, (2, 2, 2, 2))
            for i in range(5):
                for j in range(5):
                    yield padded[:, i : i + 5, j : j + 5]

    for m in range(2):
        for b in range(3):
            assert any(torch.equal(out[m, b], c) for c in candidates(xb[m, b]))
    assert not torch.equal(out, xb)
    assert repr(flip_shift_transform()) == "flip_shift_transform(max_shift=4, flip_p=0.5)"
    with pytest.raises(ValueError, match="flip_p"):
        flip_shift_transform(flip_p=1.5)
    with pytest.raises(ValueError, match="max_shift"):
        flip_shift_transform(max_shift=-1)


# ----------------------------------------------------------------------------------------------
# checkpoints and the settings record


def _resume_case(backend):
    if backend == "stacked":
        x, y = _data(n=20, dtype=torch.float32)
        model_fn = lambda g: MLP(D, (4,), 1, dropout=0.25, generator=g)  # noqa: E731
        transform = Noise(0.3)
    else:
        (x, y), model_fn, transform = _images(n=20), _conv, flip_shift_transform(max_shift=2)
    members = [Member(seed=0, lr=0.05, weight_decay=1e-3), Member(seed=1, lr=0.1)]
    kw = dict(batch_size=8, momentum=0.9, lr_schedule=step_warmup_schedule(2, (3,), 0.1), transform=transform)
    return x, y, model_fn, members, kw


def _params(t):
    return [p.clone() for p in t._param_list()] + [b.clone() for b in t.buffers.values()]


@pytest.mark.parametrize("backend", ["stacked", "func"])
def test_resume_with_schedule_and_transform_is_bitwise(tmp_path, backend):
    x, y, model_fn, members, kw = _resume_case(backend)
    ckpt = tmp_path / "c.pt"
    first = EnsembleTrainer(model_fn, members, **kw)
    first.fit(x, y, epochs=2, eval_epochs=[2], checkpoint_path=ckpt, progress=False)
    resumed = EnsembleTrainer(model_fn, members, **kw)
    resumed.fit(x, y, epochs=4, eval_epochs=[2, 4], checkpoint_path=ckpt, progress=False)
    straight = EnsembleTrainer(model_fn, members, **kw)
    straight.fit(x, y, epochs=4, progress=False)
    assert resumed.epoch == straight.epoch == 4
    for p, q in zip(_params(resumed), _params(straight), strict=True):
        assert torch.equal(p, q)
    # the transform changes training (so the test above would see a lost generator state)
    plain = EnsembleTrainer(model_fn, members, **{**kw, "transform": None})
    plain.fit(x, y, epochs=4, progress=False)
    assert not all(torch.equal(p, q) for p, q in zip(_params(plain), _params(straight), strict=True))


def test_resume_with_another_schedule_is_refused(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "c.pt"
    members = [Member(seed=0)]
    t = EnsembleTrainer(_logreg, members, batch_size=8, lr_schedule=step_warmup_schedule(1, (2,)))
    t.fit(x, y, epochs=1, checkpoint_path=ckpt, progress=False)
    other = EnsembleTrainer(_logreg, members, batch_size=8, lr_schedule=step_warmup_schedule(1, (3,)))
    with pytest.raises(ValueError, match=r"lr_schedule=.*milestones=\(2,\).*milestones=\(3,\)"):
        other.fit(x, y, epochs=2, checkpoint_path=ckpt, progress=False)
    none = EnsembleTrainer(_logreg, members, batch_size=8)
    with pytest.raises(ValueError, match="lr_schedule"):
        none.fit(x, y, epochs=2, checkpoint_path=ckpt, progress=False)


def test_defaults_leave_the_settings_record_and_state_as_they_were():
    x, y = _data()
    plain = EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=8)
    nones = EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=8, lr_schedule=None, transform=None)
    both = EnsembleTrainer(
        _logreg, [Member(seed=0)], batch_size=8, lr_schedule=step_warmup_schedule(), transform=Noise(0.1)
    )
    for t in (plain, nones, both):
        t.fit(x, y, epochs=1, progress=False)
    keys = list(plain.state_dict()["spec"])
    assert list(nones.state_dict()["spec"]) == keys
    assert set(both.state_dict()["spec"]) == set(keys) | {"lr_schedule", "transform"}
    assert both.state_dict()["spec"]["transform"] == "Noise(0.1)"
    assert list(nones.training_state()) == list(plain.training_state())
    assert set(both.training_state()) - set(plain.training_state()) == {"transform_rng"}
    assert nones._transform_gen is None


def test_describe_names_functions_without_their_address():
    def sched(e):
        return 1.0

    assert describe(sched).endswith("test_describe_names_functions_without_their_address.<locals>.sched")
    part = describe(functools.partial(sched, 2, k=3))
    assert part.startswith("functools.partial(") and part.endswith(".sched, 2, k=3)") and "0x" not in part
    assert describe(step_warmup_schedule(3)) == repr(step_warmup_schedule(3))


def test_non_callable_options_are_refused():
    with pytest.raises(TypeError, match="lr_schedule must be a callable"):
        EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=8, lr_schedule=0.5)
    with pytest.raises(TypeError, match="transform must be a callable"):
        EnsembleTrainer(_logreg, [Member(seed=0)], batch_size=8, transform="flip")
