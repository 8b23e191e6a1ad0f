"""The func backend (vmap over functional_call) on conv nets with BatchNorm, residual blocks and dropout,
against independent single-model runs (nn.Module in train mode + autograd + torch.optim); packs.

BatchNorm: each member normalizes with its own batch statistics and updates its own running statistics
exactly as one ``nn.Module`` in train mode does; evaluation uses the running statistics. Dropout masks
in this backend cannot match a single run's, so those tests check determinism and bitwise resume.
"""

import logging

import pytest
import torch
from reference_single import train_single
from torch import nn

from iwlab.models import ByrdLiptonCNN, ResNet, init_from_generator_
from iwlab.models.mlp import MLP
from iwlab.train import EnsembleTrainer, Member, fit_in_packs, merge_histories, pack_checkpoint_path

ATOL = 1e-5
EPOCHS = 3


def _conv_bn(out_dim, bn=True, conv_bias=True):
    def model_fn(g):
        layers = [nn.Conv2d(3, 4, 3, padding=1, bias=conv_bias)]
        layers += [nn.BatchNorm2d(4)] if bn else []
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, out_dim)]
        return init_from_generator_(nn.Sequential(*layers), g)

    return model_fn


class _ResBlockNet(nn.Module):
    """conv-BN-ReLU, then one residual block (conv-BN-ReLU-conv-BN + projection shortcut with BN), pool, dense."""

    def __init__(self, out_dim, generator):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.skip = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, out_dim))
        init_from_generator_(self, generator)
        with torch.no_grad():  # non-trivial affine BN parameters
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=generator))
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)

    def forward(self, x):
        h = self.stem(x)
        out = torch.relu(self.bn1(self.conv1(h)))
        return self.head(torch.relu(self.bn2(self.conv2(out)) + self.skip(h)))


def _data(n, n_classes, size=8, seed=0):
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n, 3, size, size, generator=g) * 2.0 + 0.5  # BN sees non-trivial mean and variance
    return x, torch.randint(0, n_classes, (n,), generator=g)


tr_x = _data(16, 2)[0]  # the training inputs of the dropout, resume and pack tests


def _members(n_classes, optimizer, k=3):
    lr = 0.01 if optimizer == "adam" else 0.05
    cws = [(1.0, 0.25), None, (1.0, 1 / 16)] if n_classes == 2 else [(1.0, 0.25, 0.5), None, (0.5, 1.0, 2.0)]
    l2s = [0.0, 1e-2, 0.0]
    return [Member(seed=20 + i, class_weight=cws[i], lr=lr * (1 + 0.5 * i), weight_decay=l2s[i]) for i in range(k)]


def _assert_matches_single_runs(trainer, model_fn, members, x, y, epochs, **kw):
    z = trainer.logits(x)
    for i, m in enumerate(members):
        ref = train_single(model_fn, m, x, y, epochs=epochs, **kw)
        assert not ref.training  # returned in eval mode
        want, got = ref.state_dict(), trainer.member_state_dict(i)
        assert got.keys() == want.keys()
        init = model_fn(torch.Generator().manual_seed(m.seed)).state_dict()
        moved = 0.0
        for k in want:
            assert torch.isfinite(want[k].double()).all(), k
            torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=1e-5, msg=k)
            moved = max(moved, (want[k].double() - init[k].double()).abs().max().item())
            if k.endswith(("running_mean", "running_var")):  # the statistics were really updated
                assert (want[k] - init[k]).abs().max() > 1e-3, k
            if k.endswith("num_batches_tracked"):
                assert int(got[k]) == epochs * -(-len(x) // kw["batch_size"])
        assert moved > 1e-3  # training changed the parameters (the comparison is not vacuous)
        with torch.no_grad():
            torch.testing.assert_close(z[i], ref(x), atol=1e-4, rtol=1e-4)  # eval mode: running statistics
            if any(k.endswith("running_mean") for k in want):
                assert (ref.train()(x) - z[i]).abs().max() > 1e-3  # eval logits are not batch-statistics logits


# ----------------------------------------------------------------------------------------------
# BatchNorm == single runs


@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.9), ("adam", 0.0)], ids=["sgd", "adam"])
@pytest.mark.parametrize("out_dim", [1, 3], ids=["binary", "multiclass"])
def test_conv_batchnorm_equals_single_runs(optimizer, momentum, out_dim):
    n_classes = max(2, out_dim)
    x, y = _data(19, n_classes)  # batches 5, 5, 5, 4
    # A conv bias right before BN has an exactly zero gradient; Adam divides the float noise in it by
    # its own square root and so moves that bias (and running_mean with it) by ~lr per step in a
    # rounding-dependent direction. Such a bias is a no-op anyway, so the Adam case drops it.
    model_fn = _conv_bn(out_dim, conv_bias=optimizer == "sgd")
    members = _members(n_classes, optimizer)
    kw = dict(batch_size=5, optimizer=optimizer, momentum=momentum)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    assert trainer.backend == "func"
    assert set(trainer.buffers) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert trainer.buffers["1.running_mean"].shape == (3, 4)
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    _assert_matches_single_runs(trainer, model_fn, members, x, y, EPOCHS, **kw)
    assert torch.equal(
        trainer.predict(x), trainer.logits(x).squeeze(-1).gt(0).long() if out_dim == 1 else trainer.logits(x).argmax(-1)
    )


@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_residual_block_batchnorm_equals_single_runs(normalization):
    x, y = _data(14, 3, seed=1)
    model_fn = lambda g: _ResBlockNet(3, g)  # noqa: E731
    members = _members(3, "adam")
    kw = dict(batch_size=6, optimizer="adam", normalization=normalization)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    _assert_matches_single_runs(trainer, model_fn, members, x, y, EPOCHS, **kw)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no_bn"])
def test_project_resnet_equals_single_runs(batch_norm):
    x, y = _data(10, 2, seed=2)
    model_fn = lambda g: ResNet(width=1 / 16, batch_norm=batch_norm, dense=8, generator=g)  # noqa: E731
    members = _members(2, "sgd", k=2)
    kw = dict(batch_size=5, momentum=0.9)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    assert bool(trainer.buffers) == batch_norm
    trainer.fit(x, y, epochs=2, progress=False)
    _assert_matches_single_runs(trainer, model_fn, members, x, y, 2, **kw)


def test_conv_without_buffers_still_works():
    x, y = _data(13, 3, seed=3)
    model_fn = lambda g: ByrdLiptonCNN(n_out=3, width=1 / 16, dense=(8,), image_size=8, generator=g)  # noqa: E731
    members = _members(3, "sgd")
    trainer = EnsembleTrainer(model_fn, members, batch_size=4)
    assert trainer.backend == "func" and trainer.buffers == {}
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    _assert_matches_single_runs(trainer, model_fn, members, x, y, EPOCHS, batch_size=4)


def test_member_state_dict_rebuilds_the_module():
    x, y = _data(12, 3)
    model_fn = _conv_bn(3)
    trainer = EnsembleTrainer(model_fn, _members(3, "sgd"), batch_size=4)
    trainer.fit(x, y, epochs=1, progress=False)
    net = model_fn(torch.Generator())
    net.load_state_dict(trainer.member_state_dict(2))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), trainer.logits(x)[2])
    with pytest.raises(IndexError):
        trainer.member_state_dict(3)


def test_batchnorm_cumulative_average_is_refused():
    def model_fn(g):
        return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4, momentum=None), nn.Linear(4, 1))

    with pytest.raises(ValueError, match="momentum=None"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4)


# ----------------------------------------------------------------------------------------------
# dropout: deterministic, independent of the global RNG, resumable bit for bit


def _dropout_cnn(p=0.5):
    return lambda g: ByrdLiptonCNN(n_out=1, width=1 / 16, dense=(16,), dropout=p, image_size=8, generator=g)


def test_dropout_is_deterministic_and_leaves_global_rng_alone():
    x, y = _data(16, 2)
    members = _members(2, "sgd")
    runs = []
    for draw in (False, True):
        torch.manual_seed(1234 if draw else 99)  # a different global RNG state must not matter

        def cb(tr, epoch, draw=draw):
            if draw:  # a callback drawing from the global RNG must not shift the masks either
                torch.rand(100)
            return {"norm": tr.param_norm()}

        t = EnsembleTrainer(_dropout_cnn(), members, batch_size=4)  # (nn.Conv2d's own init draws globally)
        before = torch.get_rng_state()
        t.fit(x, y, epochs=2, progress=False, callbacks=[cb])
        if not draw:
            assert torch.equal(torch.get_rng_state(), before)  # training left the global RNG untouched
        runs.append(t)
    for a, b in zip(runs[0]._param_list(), runs[1]._param_list(), strict=True):
        assert torch.equal(a, b)
    # dropout is really applied in training (differs from p=0) and off in evaluation (logits repeat)
    plain = EnsembleTrainer(_dropout_cnn(0.0), members, batch_size=4)
    plain.fit(x, y, epochs=2, progress=False)
    assert (plain.params["net.5.weight"] - runs[0].params["net.5.weight"]).abs().max() > 1e-4
    assert torch.equal(runs[0].logits(x), runs[0].logits(x))


def _norm_cb(tr, epoch):
    return {"param_norm": tr.param_norm(), "logit0": tr.logits(tr_x)[:, 0, 0]}


@pytest.mark.parametrize("model", ["dropout", "bn"])
def test_checkpoint_resume_is_bitwise(tmp_path, model):
    x, y = tr_x, _data(16, 2)[1]
    model_fn = _dropout_cnn() if model == "dropout" else _conv_bn(1)
    members = _members(2, "adam")
    kw = dict(batch_size=5, optimizer="adam")
    ckpt = tmp_path / "cell.pt"
    first = EnsembleTrainer(model_fn, members, **kw)
    first.fit(x, y, epochs=3, callbacks=[_norm_cb], checkpoint_path=ckpt, progress=False)
    torch.rand(7)  # the global RNG moves on between the runs
    resumed = EnsembleTrainer(model_fn, members, **kw)
    resumed.fit(x, y, epochs=5, callbacks=[_norm_cb], checkpoint_path=ckpt, progress=False)
    straight = EnsembleTrainer(model_fn, members, **kw)
    straight.fit(x, y, epochs=5, callbacks=[_norm_cb], progress=False)
    assert resumed.epoch == straight.epoch == 5
    for a, b in zip(resumed._param_list(), straight._param_list(), strict=True):
        assert torch.equal(a, b)
    assert resumed.buffers.keys() == straight.buffers.keys()
    for k in straight.buffers:
        assert torch.equal(resumed.buffers[k], straight.buffers[k]), k
    assert torch.equal(resumed._rng["cpu"], straight._rng["cpu"])
    assert resumed.history.rows == straight.history.rows


# ----------------------------------------------------------------------------------------------
# train_single modes


def test_train_single_metrics_see_eval_mode():
    x, y = _data(10, 2)
    modes = []
    train_single(
        _conv_bn(1), Member(seed=0), x, y, epochs=2, batch_size=5, on_epoch=lambda m, e: modes.append(m.training)
    )
    assert modes == [False, False]


# ----------------------------------------------------------------------------------------------
# packs


def _metrics_cb(tr, epoch):
    return {"param_norm": tr.param_norm(), "mean_logit": tr.logits(tr_x).mean((1, 2))}


def _assert_packs_equal_one(trainers, one):
    assert sum(t.M for t in trainers) == one.M
    i = 0
    for t in trainers:
        for j in range(t.M):
            got, want = t.member_state_dict(j), one.member_state_dict(i)
            for k in want:
                torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6, msg=k)
            i += 1
    torch.testing.assert_close(torch.cat([t.logits(tr_x) for t in trainers]), one.logits(tr_x), atol=1e-5, rtol=1e-5)
    merged = merge_histories(trainers)
    assert [r[:3] for r in merged.rows] == [r[:3] for r in one.history.rows]
    for a, b in zip(merged.rows, one.history.rows, strict=True):
        assert a[3] == pytest.approx(b[3], rel=1e-5, abs=1e-6)


@pytest.fixture
def pack_setup():
    x, y = tr_x, _data(16, 2)[1]
    members = _members(2, "sgd") + _members(2, "adam")[:2]  # 5 members
    kw = dict(batch_size=5, momentum=0.9, epochs=3, progress=False, callbacks=[_metrics_cb])
    one = EnsembleTrainer(_conv_bn(1), members, batch_size=5, momentum=0.9)
    one.fit(tr_x, y, epochs=3, progress=False, callbacks=[_metrics_cb])
    return x, y, members, kw, one


def test_fit_in_packs_equals_one_pack(pack_setup, tmp_path):
    x, y, members, kw, one = pack_setup
    trainers = fit_in_packs(_conv_bn(1), members, x, y, pack_size=2, checkpoint_path=tmp_path / "c.pt", **kw)
    assert [t.M for t in trainers] == [2, 2, 1]
    assert [m.seed for t in trainers for m in t.members] == [m.seed for m in members]
    _assert_packs_equal_one(trainers, one)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.members0-1.pt", "c.members2-3.pt", "c.members4-4.pt"]
    assert pack_checkpoint_path(tmp_path / "c.pt", 2, 4) == tmp_path / "c.members2-3.pt"
    with pytest.raises(TypeError, match="unexpected"):
        fit_in_packs(_conv_bn(1), members, x, y, epochs=1, batch_size=4, bogus=1)


@pytest.mark.parametrize(
    "error",
    [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), RuntimeError("out of memory")],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_fit_in_packs_halves_on_oom(pack_setup, monkeypatch, caplog, error):
    x, y, members, kw, one = pack_setup
    real_fit = EnsembleTrainer.fit
    sizes = []

    def fit(self, *args, **kwargs):
        sizes.append(self.M)
        if len(sizes) == 1:  # the first attempt (all 5 members) runs out of memory mid-training
            real_fit(self, *args, **{**kwargs, "epochs": 1})
            raise error
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(EnsembleTrainer, "fit", fit)
    with caplog.at_level(logging.WARNING, logger="iwlab.train.ensemble"):
        trainers = fit_in_packs(_conv_bn(1), members, x, y, **kw)
    assert sizes == [5, 2, 2, 1]
    assert "retrying in packs of 2" in caplog.text
    _assert_packs_equal_one(trainers, one)


def test_fit_in_packs_reraises_other_errors_and_single_member_oom(monkeypatch):
    x, y = tr_x, _data(16, 2)[1]

    def fit(self, *args, **kwargs):
        raise RuntimeError("out of memory" if self.M == 1 else "shape mismatch")

    monkeypatch.setattr(EnsembleTrainer, "fit", fit)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fit_in_packs(_conv_bn(1), _members(2, "sgd"), x, y, batch_size=4, epochs=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        fit_in_packs(_conv_bn(1), _members(2, "sgd")[:1], x, y, batch_size=4, epochs=1)


def test_fit_in_packs_per_member_data_stacked_backend():
    members = [Member(seed=s, class_weight=(1.0, 0.5), lr=0.2) for s in range(3)]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 20, 2, generator=g), torch.randint(0, 2, (3, 20), generator=g)
    sw = torch.rand(3, 20, generator=g)
    model_fn = lambda g: MLP(2, (8,), 1, dropout=0.5, generator=g)  # noqa: E731
    kw = dict(batch_size=8, epochs=2, progress=False, per_member=True, sample_weight=sw)
    trainers = fit_in_packs(model_fn, members, x, y, pack_size=2, **kw)
    one = EnsembleTrainer(model_fn, members, batch_size=8)
    one.fit(x, y, epochs=2, progress=False, per_member=True, sample_weight=sw)
    assert [t.M for t in trainers] == [2, 1]
    for got, want in zip(
        [t.member_state_dict(j) for t in trainers for j in range(t.M)],
        [one.member_state_dict(i) for i in range(3)],
        strict=True,
    ):
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)
