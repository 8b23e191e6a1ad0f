"""EnsembleTrainer against independent single-model runs (nn.Module + autograd + torch.optim).

The reference, :func:`reference_single.train_single`, shares only the per-member random protocol with
the ensemble (seeded generator -> init, then per epoch randperm and dropout masks); its gradients come
from autograd through the module and its updates from ``torch.optim``. Training M of these must give
the same parameters as one ensemble of M members.
"""

import math

import pytest
import torch
from reference_single import train_single
from torch import nn

from iwlab.models import MLP, logistic_regression
from iwlab.train import EnsembleTrainer, History, Member, log_epochs

ATOL = 1e-5
EPOCHS = 4


# ----------------------------------------------------------------------------------------------
# helpers


def _data(n, n_classes=2, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n, 2, generator=g) * scale
    if n_classes == 2:
        y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g)) > 0).long()
    else:
        y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


MODELS = {
    "logreg": (lambda g: logistic_regression(2, 1, generator=g), 2),
    "mlp": (lambda g: MLP(2, (16,), 1, generator=g), 2),
    "mlp_dropout": (lambda g: MLP(2, (16,), 1, dropout=0.5, generator=g), 2),
    "mlp_multiclass": (lambda g: MLP(2, (8,), 3, generator=g), 3),
}


def _members(n_classes, optimizer):
    lr = 0.02 if optimizer == "adam" else 0.1
    if n_classes == 2:
        cws = [(1.0, 0.25), (1.0, 1 / 256), None, (1.0, 1.0)]
    else:
        cws = [(1.0, 0.25, 0.5), (1.0, 1 / 256, 1.0), None, (0.5, 1.0, 2.0)]
    # L2 = 1e-2 and L2 = 0 mixed in one ensemble, and different lr per member
    l2s = [0.0, 1e-2, 1e-2, 0.0]
    return [
        Member(seed=10 + i, class_weight=cw, lr=lr * (1 + 0.5 * i), weight_decay=l2)
        for i, (cw, l2) in enumerate(zip(cws, l2s, strict=True))
    ]


def _assert_module_close(mod, ref, atol=ATOL):
    got, want = dict(mod.named_parameters()), dict(ref.named_parameters())
    assert got.keys() == want.keys()
    for k in want:
        assert torch.isfinite(want[k]).all()
        torch.testing.assert_close(got[k].detach(), want[k].detach(), atol=atol, rtol=1e-5, msg=k)


def _moved(trainer, model_fn, members):
    """Guard against vacuous equality: training must actually have changed the parameters."""
    for i, m in enumerate(members):
        init = model_fn(torch.Generator().manual_seed(m.seed))
        diff = max(
            (a - b).abs().max().item()
            for a, b in zip(trainer.member_module(i).parameters(), init.parameters(), strict=True)
        )
        assert diff > 1e-3


# ----------------------------------------------------------------------------------------------
# stacked backend == M single runs


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(
    "optimizer,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)], ids=["sgd", "momentum", "adam"]
)
@pytest.mark.parametrize("normalization", ["batch_size", "weight_sum"])
def test_stacked_equals_single_runs(model, optimizer, momentum, normalization):
    model_fn, n_classes = MODELS[model]
    x, y = _data(37, n_classes)  # 37 = 4 * 8 + 5: a partial last batch every epoch
    members = _members(n_classes, optimizer)
    kw = dict(batch_size=8, optimizer=optimizer, momentum=momentum, normalization=normalization)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    assert trainer.backend == "stacked"
    trainer.fit(x, y, epochs=EPOCHS, progress=False)
    assert (trainer.diverged_at == -1).all()
    _moved(trainer, model_fn, members)
    for i, m in enumerate(members):
        ref = train_single(model_fn, m, x, y, epochs=EPOCHS, **kw)
        _assert_module_close(trainer.member_module(i), ref)
        # evaluation-mode logits of the ensemble agree with the reference module
        ref.eval()
        with torch.no_grad():
            torch.testing.assert_close(trainer.logits(x)[i], ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("n", [40, 7, 3])  # divisible by the batch size; one partial batch; N < B
def test_batch_sizes(n):
    model_fn, _ = MODELS["mlp_dropout"]
    x, y = _data(n)
    members = _members(2, "sgd")
    trainer = EnsembleTrainer(model_fn, members, batch_size=8)
    trainer.fit(x, y, epochs=3, progress=False)
    for i, m in enumerate(members):
        _assert_module_close(trainer.member_module(i), train_single(model_fn, m, x, y, epochs=3, batch_size=8))


def test_dropout_is_actually_applied():
    """With p=0.5 the dropout run must differ from the same run without dropout (masks not ignored)."""
    x, y = _data(37)
    members = [Member(seed=3, lr=0.3)]
    t_drop = EnsembleTrainer(MODELS["mlp_dropout"][0], members, batch_size=8)
    t_plain = EnsembleTrainer(MODELS["mlp"][0], members, batch_size=8)
    for t in (t_drop, t_plain):
        t.fit(x, y, epochs=2, progress=False)
    w_drop, w_plain = t_drop.member_module(0).layers[0].weight, t_plain.member_module(0).layers[0].weight
    assert (w_drop - w_plain).abs().max() > 1e-3


def test_compile_flag_off_and_auto_backend():
    t = EnsembleTrainer(MODELS["logreg"][0], [Member(seed=0)], batch_size=4)
    assert t.backend == "stacked" and t.binary and t.out_dim == 1
    t3 = EnsembleTrainer(MODELS["mlp_multiclass"][0], [Member(seed=0)], batch_size=4)
    assert not t3.binary and t3.out_dim == 3


@pytest.mark.parametrize("model", ["logreg", "mlp_dropout", "mlp_multiclass"])
@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.0), ("adam", 0.0)], ids=["sgd", "adam"])
def test_per_member_data(model, optimizer, momentum):
    model_fn, n_classes = MODELS[model]
    members = _members(n_classes, optimizer)
    data = [_data(21, n_classes, seed=s) for s in range(len(members))]
    x = torch.stack([d[0] for d in data])
    y = torch.stack([d[1] for d in data])
    kw = dict(batch_size=8, optimizer=optimizer, momentum=momentum)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    trainer.fit(x, y, epochs=EPOCHS, progress=False, per_member=True)
    for i, m in enumerate(members):
        ref = train_single(model_fn, m, x[i], y[i], epochs=EPOCHS, **kw)
        _assert_module_close(trainer.member_module(i), ref)
    # per-member evaluation: member i on its own data
    z = trainer.logits(x, per_member=True, chunk=5)
    for i in range(len(members)):
        with torch.no_grad():
            torch.testing.assert_close(z[i], trainer.member_module(i).eval()(x[i]), atol=1e-5, rtol=1e-5)


def test_per_member_differs_from_shared():
    """Different datasets per member must matter (guards against per_member silently using x[0])."""
    model_fn, _ = MODELS["logreg"]
    members = [Member(seed=0), Member(seed=0)]
    x = torch.stack([_data(16, seed=0)[0], _data(16, seed=1)[0]])
    y = torch.stack([_data(16, seed=0)[1], _data(16, seed=1)[1]])
    t = EnsembleTrainer(model_fn, members, batch_size=4)
    t.fit(x, y, epochs=2, progress=False, per_member=True)
    a, b = t.member_module(0).layers[0].weight, t.member_module(1).layers[0].weight
    assert (a - b).abs().max() > 1e-4


def test_sample_weight_equals_class_weight():
    """sample_weight = class_weight[y] gives the same training as the class weights themselves."""
    model_fn, _ = MODELS["mlp"]
    x, y = _data(37)
    cw = torch.tensor([1.0, 0.25])
    t1 = EnsembleTrainer(model_fn, [Member(seed=1, class_weight=(1.0, 0.25))], batch_size=8)
    t2 = EnsembleTrainer(model_fn, [Member(seed=1)], batch_size=8)
    t1.fit(x, y, epochs=3, progress=False)
    t2.fit(x, y, epochs=3, progress=False, sample_weight=cw[y])
    _assert_module_close(t2.member_module(0), t1.member_module(0), atol=1e-6)


def test_logits_chunking_and_predict():
    model_fn, _ = MODELS["mlp_multiclass"]
    x, y = _data(50, 3)
    t = EnsembleTrainer(model_fn, _members(3, "sgd"), batch_size=8)
    t.fit(x, y, epochs=1, progress=False)
    z = t.logits(x, chunk=7)
    assert z.shape == (4, 50, 3)
    torch.testing.assert_close(z, t.logits(x), atol=1e-6, rtol=0)
    assert torch.equal(t.predict(x), z.argmax(-1))
    zb = EnsembleTrainer(MODELS["logreg"][0], [Member(seed=0)], batch_size=8)
    pb = zb.predict(x)
    assert torch.equal(pb, (zb.logits(x)[..., 0] > 0).long())


def test_param_norm_and_linear_weights():
    model_fn, _ = MODELS["logreg"]
    t = EnsembleTrainer(model_fn, [Member(seed=0), Member(seed=1)], batch_size=8)
    for i, seed in enumerate((0, 1)):
        ref = model_fn(torch.Generator().manual_seed(seed))
        flat = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
        assert t.param_norm()[i].item() == pytest.approx(flat.norm().item(), rel=1e-6)
        w, b = t.linear_weights()
        torch.testing.assert_close(w[i], ref.layers[0].weight[0].detach())
        torch.testing.assert_close(b[i], ref.layers[0].bias[0].detach())
    with pytest.raises(ValueError):
        EnsembleTrainer(MODELS["mlp"][0], [Member(seed=0)], batch_size=8).linear_weights()


# ----------------------------------------------------------------------------------------------
# func backend (vmap over functional_call) on a conv net


def _conv_fn(out_dim):
    def model_fn(g):
        net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, out_dim))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 - 0.3)
        return net

    return model_fn


@pytest.mark.parametrize(
    "optimizer,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)], ids=["sgd", "momentum", "adam"]
)
@pytest.mark.parametrize("out_dim", [3, 1])
def test_func_backend_conv_equals_single_runs(optimizer, momentum, out_dim):
    n_classes = 3 if out_dim == 3 else 2
    g = torch.Generator().manual_seed(7)
    x = torch.randn(19, 1, 6, 6, generator=g)
    y = torch.randint(0, n_classes, (19,), generator=g)
    model_fn = _conv_fn(out_dim)
    members = _members(n_classes, optimizer)[:3]
    kw = dict(batch_size=5, optimizer=optimizer, momentum=momentum)
    trainer = EnsembleTrainer(model_fn, members, backend="func", **kw)
    assert trainer.backend == "func"
    trainer.fit(x, y, epochs=3, progress=False)
    with pytest.raises(NotImplementedError):
        trainer.member_module(0)
    z = trainer.logits(x)
    assert z.shape == (3, 19, out_dim)
    for i, m in enumerate(members):
        ref = train_single(model_fn, m, x, y, epochs=3, **kw)
        init = model_fn(torch.Generator().manual_seed(m.seed))
        moved = 0.0
        for (name, p), p0 in zip(ref.named_parameters(), init.parameters(), strict=True):
            torch.testing.assert_close(trainer.params[name][i], p.detach(), atol=ATOL, rtol=1e-5, msg=name)
            moved = max(moved, (p - p0).abs().max().item())
        assert moved > 1e-3
        with torch.no_grad():
            torch.testing.assert_close(z[i], ref(x), atol=1e-4, rtol=1e-4)


def test_func_backend_rejects_cumulative_batchnorm():
    # BatchNorm with momentum=None keeps a cumulative average, which cannot run under vmap
    def model_fn(g):
        return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4, momentum=None), nn.Linear(4, 1))

    with pytest.raises(ValueError, match="momentum=None"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4)


# ----------------------------------------------------------------------------------------------
# checkpoint / resume


def _norm_cb(tr, epoch):
    return {"param_norm": tr.param_norm(), "epoch_x2": torch.full((tr.M,), 2.0 * epoch)}


@pytest.mark.parametrize(
    "model,optimizer,momentum",
    [
        ("mlp", "sgd", 0.0),
        ("mlp_dropout", "sgd", 0.0),
        ("mlp_dropout", "sgd", 0.9),
        ("mlp", "adam", 0.0),
        pytest.param("conv", "adam", 0.0),
    ],
)
def test_checkpoint_resume_is_bitwise(tmp_path, model, optimizer, momentum):
    if model == "conv":
        model_fn, n_classes = _conv_fn(3), 3
        g = torch.Generator().manual_seed(3)
        x, y = torch.randn(13, 1, 6, 6, generator=g), torch.randint(0, 3, (13,), generator=g)
    else:
        model_fn, n_classes = MODELS[model]
        x, y = _data(37, n_classes)
    members = _members(n_classes, optimizer)
    kw = dict(batch_size=8, optimizer=optimizer, momentum=momentum)
    ckpt = tmp_path / "ck" / "cell.pt"

    first = EnsembleTrainer(model_fn, members, **kw)
    first.fit(x, y, epochs=3, callbacks=[_norm_cb], checkpoint_path=ckpt, progress=False)
    assert ckpt.exists() and first.epoch == 3
    assert not ckpt.with_suffix(".pt.tmp").exists()

    resumed = EnsembleTrainer(model_fn, members, **kw)
    resumed.fit(x, y, epochs=6, callbacks=[_norm_cb], checkpoint_path=ckpt, progress=False)

    straight = EnsembleTrainer(model_fn, members, **kw)
    straight.fit(x, y, epochs=6, callbacks=[_norm_cb], progress=False)

    assert resumed.epoch == straight.epoch == 6
    for a, b in zip(resumed._param_list(), straight._param_list(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history.rows == straight.history.rows
    assert sorted({r[0] for r in straight.history.rows}) == [1, 2, 3, 5, 6]
    # the callback really ran after resume (epochs 5, 6 come from the second fit)
    assert resumed.history.values("epoch_x2")[6] == [12.0] * len(members)
    # a further fit to the same epoch count is a no-op
    again = EnsembleTrainer(model_fn, members, **kw)
    again.fit(x, y, epochs=6, callbacks=[_norm_cb], checkpoint_path=ckpt, progress=False)
    for a, b in zip(again._param_list(), straight._param_list(), strict=True):
        assert torch.equal(a, b)
    assert again.history.rows == straight.history.rows


def test_checkpoint_with_other_seeds_is_refused(tmp_path):
    model_fn, _ = MODELS["logreg"]
    x, y = _data(16)
    ckpt = tmp_path / "c.pt"
    EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y, epochs=1, checkpoint_path=ckpt, progress=False)
    with pytest.raises(ValueError, match="was made with member 0 seed=0; this run has seed=1"):
        EnsembleTrainer(model_fn, [Member(seed=1)], batch_size=4).fit(
            x, y, epochs=2, checkpoint_path=ckpt, progress=False
        )


# ----------------------------------------------------------------------------------------------
# divergence


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_divergence_is_isolated(optimizer):
    model_fn, _ = MODELS["mlp"]
    x, y = _data(37, scale=100.0)  # unnormalised inputs
    lr = 1e-3
    members = [Member(seed=0, lr=lr), Member(seed=1, lr=1e6), Member(seed=2, lr=lr, class_weight=(1, 0.25))]
    if optimizer == "adam":
        members[1] = Member(seed=1, lr=1e30)
    kw = dict(batch_size=8, optimizer=optimizer)
    trainer = EnsembleTrainer(model_fn, members, **kw)
    trainer.fit(x, y, epochs=4, progress=False, callbacks=[_norm_cb])
    assert trainer.diverged_at[1] >= 1
    assert trainer.diverged_at[0] == -1 and trainer.diverged_at[2] == -1
    bad = trainer.member_module(1)
    assert not all(torch.isfinite(p).all() for p in bad.parameters())
    for i in (0, 2):
        ref = train_single(model_fn, members[i], x, y, epochs=4, **kw)
        _assert_module_close(trainer.member_module(i), ref, atol=1e-4)
    # the healthy members' metrics stay finite (NaN values of the diverged member are not stored)
    norms = trainer.history.values("param_norm")
    assert all(math.isfinite(v[0]) for v in norms.values())


# ----------------------------------------------------------------------------------------------
# errors


def test_errors():
    model_fn, _ = MODELS["logreg"]
    x, y = _data(16)
    fit = dict(epochs=1, progress=False)
    with pytest.raises(ValueError, match="3 entries"):
        EnsembleTrainer(model_fn, [Member(seed=0, class_weight=(1.0, 1.0, 1.0))], batch_size=4).fit(x, y, **fit)
    with pytest.raises(ValueError, match="negative"):
        EnsembleTrainer(model_fn, [Member(seed=0, class_weight=(1.0, -0.5))], batch_size=4).fit(x, y, **fit)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y + 1, **fit)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y - 1, **fit)
    with pytest.raises(ValueError, match="rows"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x[:10], y, **fit)
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleTrainer(model_fn, [], batch_size=4)
    with pytest.raises(ValueError, match="stacked backend"):
        EnsembleTrainer(_conv_fn(3), [Member(seed=0)], batch_size=4, backend="stacked")
    with pytest.raises(ValueError, match="batch_size"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=0)
    with pytest.raises(ValueError, match="optimizer"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, optimizer="rmsprop")
    with pytest.raises(ValueError, match="normalization"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4, normalization="mean")
    with pytest.raises(ValueError, match="lr"):
        EnsembleTrainer(model_fn, [Member(seed=0, lr=-0.1)], batch_size=4)
    with pytest.raises(ValueError, match="weight_decay"):
        EnsembleTrainer(model_fn, [Member(seed=0, weight_decay=float("nan"))], batch_size=4)
    with pytest.raises(ValueError, match="per_member"):
        EnsembleTrainer(model_fn, [Member(seed=0), Member(seed=1)], batch_size=4).fit(
            x.expand(3, 16, 2), y.expand(3, 16), per_member=True, **fit
        )
    with pytest.raises(ValueError, match="sample_weight"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y, sample_weight=torch.ones(15), **fit)

    def bad_cb(tr, epoch):
        return {"x": torch.zeros(tr.M + 1)}

    with pytest.raises(ValueError, match="metric 'x' returned"):
        EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4).fit(x, y, callbacks=[bad_cb], **fit)


# ----------------------------------------------------------------------------------------------
# evaluation schedule and history


def test_log_epochs_known_values():
    assert log_epochs(1) == [1]
    assert log_epochs(4) == [1, 2, 3, 4]
    assert log_epochs(7) == [1, 2, 3, 5, 7]
    assert log_epochs(60) == [1, 2, 3, 5, 10, 20, 30, 50, 60]
    assert log_epochs(300) == [1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300]
    assert log_epochs(10_000) == [1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10_000]
    assert log_epochs(1000, per_decade=(1,)) == [1, 10, 100, 1000]
    assert log_epochs(25, per_decade=(1, 5)) == [1, 5, 10, 25]
    with pytest.raises(ValueError):
        log_epochs(0)


def test_default_and_explicit_eval_epochs():
    model_fn, _ = MODELS["logreg"]
    x, y = _data(8)
    t = EnsembleTrainer(model_fn, [Member(seed=0), Member(seed=1)], batch_size=4)
    t.fit(x, y, epochs=12, callbacks=[_norm_cb], progress=False)
    assert sorted(t.history.values("param_norm")) == [1, 2, 3, 5, 10, 12]
    t2 = EnsembleTrainer(model_fn, [Member(seed=0)], batch_size=4)
    t2.fit(x, y, epochs=4, eval_epochs=[2, 4], callbacks=[_norm_cb], progress=False)
    assert t2.history.values("epoch_x2") == {2: [4.0], 4: [8.0]}


def test_nan_metric_values_are_not_stored():
    model_fn, _ = MODELS["logreg"]
    x, y = _data(8)

    def cb(tr, epoch):
        return {"m": torch.tensor([1.0, float("nan")])}

    t = EnsembleTrainer(model_fn, [Member(seed=0), Member(seed=1)], batch_size=4)
    t.fit(x, y, epochs=1, callbacks=[cb], progress=False)
    assert t.history.rows == [(1, 0, "m", 1.0)]


def test_history_values_orders_members():
    h = History([(2, 1, "a", 1.0), (2, 0, "a", 3.0), (1, 0, "a", 5.0), (1, 0, "b", 9.0)])
    assert h.values("a") == {1: [5.0], 2: [3.0, 1.0]}
    assert h.values("c") == {}
