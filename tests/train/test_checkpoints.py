"""Checkpoints: unreadable files are set aside and the run restarts; settings records refuse a resume
made with other settings (EnsembleTrainer, fit_in_packs, train_sampled)."""

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from iwlab.files import atomic_save, check_record, fingerprint, load_checkpoint
from iwlab.models import MLP, logistic_regression
from iwlab.sampling import make_sampler
from iwlab.train import EnsembleTrainer, Member, fit_in_packs
from iwlab.train.sampled import train_sampled

LOGGER = "iwlab.files"


def _data(n=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = ((x[:, 0] - 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g)) > 0).long()
    return x, y


def _mlp(g):
    return MLP(2, (8,), 1, dropout=0.25, generator=g)


def _members(lr3=0.1):
    return [
        Member(seed=0, lr=0.1),
        Member(seed=1, lr=0.2, weight_decay=1e-2),
        Member(seed=2, lr=0.1, class_weight=(1.0, 0.25)),
        Member(seed=3, lr=lr3),
    ]


def _cb(tr, epoch):
    return {"norm": tr.param_norm()}


def _fit(members=None, ckpt=None, epochs=4, x=None, y=None, model_fn=_mlp, fit_kw=None, **kw):
    x0, y0 = _data()
    t = EnsembleTrainer(model_fn, members or _members(), **{"batch_size": 8, **kw})
    t.fit(
        x0 if x is None else x,
        y0 if y is None else y,
        epochs=epochs,
        checkpoint_path=ckpt,
        callbacks=[_cb],
        progress=False,
        **(fit_kw or {}),
    )
    return t


def _same(a, b):
    assert a.epoch == b.epoch
    for p, q in zip(a._param_list(), b._param_list(), strict=True):
        assert torch.equal(p, q)
    assert a.history.rows == b.history.rows


def _damage(path, how):
    """The first half of the file (a kill during a non-atomic copy), random bytes, or an empty file."""
    data = path.read_bytes()
    noise = torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    path.write_bytes({"truncated": data[: len(data) // 2], "random": noise.numpy().tobytes(), "empty": b""}[how])


DAMAGE = ["truncated", "random", "empty"]


# ----------------------------------------------------------------------------------------------
# load_checkpoint


@pytest.mark.parametrize("how", DAMAGE)
def test_load_checkpoint_sets_unreadable_file_aside(tmp_path, caplog, how):
    p = atomic_save({"w": torch.arange(5000.0)}, tmp_path / "c.pt")
    _damage(p, how)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_checkpoint(p) is None
    assert not p.exists() and (tmp_path / "c.pt.corrupt").is_file()
    msgs = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert str(p) in msgs[0] and str(tmp_path / "c.pt.corrupt") in msgs[0]


def test_load_checkpoint_missing_is_none_and_free_corrupt_name(tmp_path):
    assert load_checkpoint(tmp_path / "nothing.pt") is None
    for _ in range(3):
        (tmp_path / "c.pt").write_bytes(b"")
        assert load_checkpoint(tmp_path / "c.pt") is None
    # nothing is overwritten: each damaged file keeps its own name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt.corrupt", "c.pt.corrupt.1", "c.pt.corrupt.2"]
    p = atomic_save({"a": 1}, tmp_path / "good.pt")
    assert load_checkpoint(p) == {"a": 1} and p.exists()


def test_load_checkpoint_reraises_errors_that_are_not_damage(tmp_path, monkeypatch):
    p = atomic_save({"a": 1}, tmp_path / "c.pt")

    def boom(*a, **k):
        raise RuntimeError("Attempting to deserialize object on a CUDA device")

    monkeypatch.setattr(torch, "load", boom)
    with pytest.raises(RuntimeError, match="CUDA device"):
        load_checkpoint(p)
    assert p.exists()  # a good file is never moved


def test_fingerprint_sees_values_shape_and_dtype_and_samples_large_tensors():
    x = torch.arange(12.0).reshape(3, 4)
    assert fingerprint(x) == fingerprint(x.clone())
    assert fingerprint(x) != fingerprint(x.reshape(4, 3))
    assert fingerprint(x) != fingerprint(x.double())
    y = x.clone()
    y[1, 2] += 1
    assert fingerprint(x) != fingerprint(y)
    big = torch.zeros(100_001)
    other = big.clone()
    other[-1] = 1.0  # the last element is always among the sampled ones
    assert fingerprint(big) != fingerprint(other)
    # a non-contiguous view hashes like its contiguous copy
    t = torch.randn(300, 400).t()
    assert fingerprint(t) == fingerprint(t.contiguous())


def test_check_record_names_first_difference():
    saved = {"members": [{"seed": 0, "lr": 0.1}, {"seed": 1, "lr": 0.1}], "batch_size": 8}
    check_record(saved, {"members": [{"seed": 0, "lr": 0.1}, {"seed": 1, "lr": 0.1}], "batch_size": 8}, "c.pt")
    with pytest.raises(ValueError) as e:
        check_record(saved, {"members": [{"seed": 0, "lr": 0.1}, {"seed": 1, "lr": 0.05}], "batch_size": 4}, "c.pt")
    assert str(e.value) == (
        "checkpoint c.pt was made with member 1 lr=0.1; this run has lr=0.05 "
        "(use another --out, or delete the checkpoint to start afresh)"
    )
    with pytest.raises(ValueError, match="number of members=2; this run has number of members=1"):
        check_record(saved, {"members": [{"seed": 0, "lr": 0.1}], "batch_size": 8}, "c.pt")
    with pytest.raises(ValueError, match="no settings record"):
        check_record(None, {"batch_size": 8}, "c.pt")
    check_record({"lr": 1}, {"lr": 1.0}, None)  # numbers compare by value
    with pytest.raises(ValueError, match="the state dict was made with flag=True; this run has flag=1"):
        check_record({"flag": True}, {"flag": 1}, None)


# ----------------------------------------------------------------------------------------------
# EnsembleTrainer: unreadable checkpoint -> set aside, restart, same result


@pytest.mark.parametrize("how", DAMAGE)
def test_ensemble_damaged_checkpoint_restarts_and_equals_straight_run(tmp_path, caplog, how):
    ckpt = tmp_path / "ck" / "cell.pt"
    _fit(ckpt=ckpt, epochs=3)
    _damage(ckpt, how)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        resumed = _fit(ckpt=ckpt, epochs=5)
    _same(resumed, _fit(epochs=5))
    assert (ckpt.parent / "cell.pt.corrupt").is_file()
    assert any("cell.pt.corrupt" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 5  # a fresh checkpoint was written


def test_fit_in_packs_damaged_pack_checkpoint_restarts(tmp_path, caplog):
    x, y = _data()
    kw = dict(pack_size=2, batch_size=8, callbacks=[_cb], progress=False, checkpoint_path=tmp_path / "c.pt")
    fit_in_packs(_mlp, _members(), x, y, epochs=2, **kw)
    _damage(tmp_path / "c.members2-3.pt", "truncated")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        packs = fit_in_packs(_mlp, _members(), x, y, epochs=4, **kw)
    assert (tmp_path / "c.members2-3.pt.corrupt").is_file()
    assert any("c.members2-3.pt.corrupt" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    straight = fit_in_packs(_mlp, _members(), x, y, epochs=4, **{**kw, "checkpoint_path": None})
    for a, b in zip(packs, straight, strict=True):
        _same(a, b)


# ----------------------------------------------------------------------------------------------
# EnsembleTrainer: a checkpoint made with other settings is refused


def test_resume_with_other_member_lr_is_refused(tmp_path):
    ckpt = tmp_path / "mlp.pt"
    _fit(ckpt=ckpt, epochs=2)
    with pytest.raises(ValueError) as e:
        _fit(members=_members(lr3=0.05), ckpt=ckpt, epochs=4)
    assert str(e.value) == (
        f"checkpoint {ckpt} was made with member 3 lr=0.1; this run has lr=0.05 "
        "(use another --out, or delete the checkpoint to start afresh)"
    )


def _other_members(field):
    m = _members()
    if field == "weight_decay":
        m[0] = Member(seed=0, lr=0.1, weight_decay=1e-3)
    elif field == "class_weight":
        m[2] = Member(seed=2, lr=0.1, class_weight=(1.0, 0.5))
    elif field == "seed":
        m[1] = Member(seed=7, lr=0.2, weight_decay=1e-2)
    return m


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(members=_other_members("weight_decay")), "member 0 weight_decay=0.0; this run has weight_decay=0.001"),
        (dict(members=_other_members("class_weight")), "member 2 class_weight=[1.0, 0.25]; this run has"),
        (dict(members=_other_members("seed")), "member 1 seed=1; this run has seed=7"),
        (dict(members=_members()[:3]), "number of members=4; this run has number of members=3"),
        (dict(momentum=0.9), "optimizer momentum=0.0; this run has optimizer momentum=0.9"),
        (dict(optimizer="adam"), "optimizer name=sgd; this run has optimizer name=adam"),
        (dict(batch_size=4), "batch_size=8; this run has batch_size=4"),
        (dict(normalization="weight_sum"), "normalization=batch_size; this run has normalization=weight_sum"),
        (dict(model_fn=lambda g: MLP(2, (8,), 1, dropout=0.5, generator=g)), "dropout=0.25; this run has"),
        (dict(model_fn=lambda g: MLP(2, (6,), 1, dropout=0.25, generator=g)), "parameters layers.0.weight=[[8, 2], "),
        (dict(model_fn=lambda g: nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))), "backend=stacked"),
        (dict(x=_data()[0] * 2), "data fingerprint="),
        (dict(y=1 - _data()[1]), "data fingerprint="),
        (dict(fit_kw=dict(sample_weight=torch.full((37,), 0.5))), "data sample_weight=None; this run has"),
        (dict(y=_data()[1].int()), "data y dtype=torch.int64; this run has data y dtype=torch.int32"),
    ],
)
def test_resume_with_other_settings_is_refused(tmp_path, change, field):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt=ckpt, epochs=2)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError) as e:
        _fit(ckpt=ckpt, epochs=4, **change)
    msg = str(e.value)
    assert "\n" not in msg and f"checkpoint {ckpt} was made with {field}" in msg
    assert ckpt.read_bytes() == before  # the checkpoint is left alone


def test_checkpoint_past_requested_epochs_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt=ckpt, epochs=5)
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} is at epoch 5 but epochs=3 was asked for"):
        _fit(ckpt=ckpt, epochs=3)
    t = _fit(epochs=5)
    with pytest.raises(ValueError, match=r"the job is at epoch 5 but epochs=3 was asked for"):
        t.fit(*_data(), epochs=3, progress=False)


def test_checkpoint_without_settings_record_is_refused(tmp_path):
    ckpt = tmp_path / "old.pt"
    state = _fit(epochs=2).state_dict()
    del state["spec"]  # as written by iwlab before checkpoints recorded their settings
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} has no settings record \(made by an older iwlab"):
        _fit(ckpt=ckpt, epochs=4)


def test_diverged_member_keeps_frozen_lr_on_resume(tmp_path):
    x, y = _data()
    x = x * 100.0
    members = [Member(seed=0, lr=1e-3), Member(seed=1, lr=1e6)]
    ckpt = tmp_path / "c.pt"
    kw = dict(members=members, x=x, model_fn=lambda g: MLP(2, (8,), 1, generator=g))
    first = _fit(ckpt=ckpt, epochs=2, **kw)
    assert first.diverged_at.tolist()[0] == -1 and first.diverged_at.tolist()[1] >= 1
    resumed = _fit(ckpt=ckpt, epochs=4, **kw)  # configured lr compared, not the live lr (0 when frozen)
    assert resumed.lr.tolist() == [pytest.approx(1e-3), 0.0]
    straight = _fit(epochs=4, **kw)
    assert torch.equal(resumed._param_list()[0][0], straight._param_list()[0][0])


def test_load_state_dict_by_hand_checks_settings_and_the_next_fit_checks_data():
    a = _fit(epochs=2)
    b = EnsembleTrainer(_mlp, _members(lr3=0.3), batch_size=8)
    with pytest.raises(ValueError, match="the state dict was made with member 3 lr=0.1; this run has lr=0.3"):
        b.load_state_dict(a.state_dict())
    c = EnsembleTrainer(_mlp, _members(), batch_size=8)
    c.load_state_dict(a.state_dict())
    x, y = _data()
    with pytest.raises(ValueError, match="data fingerprint"):
        c.fit(x + 1, y, epochs=3, progress=False)


def test_state_dict_records_settings():
    t = _fit(epochs=1, fit_kw=dict(sample_weight=torch.ones(37)))
    spec = t.state_dict()["spec"]
    assert spec["members"][1] == {"seed": 1, "lr": 0.2, "weight_decay": 1e-2, "class_weight": None}
    assert spec["members"][2]["class_weight"] == [1.0, 0.25]
    assert spec["optimizer"] == {"name": "sgd", "momentum": 0.0, "betas": [0.9, 0.999], "eps": 1e-8}
    assert (spec["batch_size"], spec["normalization"], spec["backend"], spec["dropout"]) == (
        8,
        "batch_size",
        "stacked",
        0.25,
    )
    assert spec["parameters"]["layers.0.weight"] == [[8, 2], "torch.float32"]
    x, y = _data()
    assert spec["data"]["x"] == {"shape": [37, 2], "dtype": "torch.float32"}
    assert spec["data"]["fingerprint"] == fingerprint(x, y, torch.ones(37))


# ----------------------------------------------------------------------------------------------
# train_sampled


def _ds():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    return TensorDataset(x, (x[:, 0] + 0.3 * torch.randn(96, generator=g) > 0).long())


def _sampled(iterations, ckpt, *, k=0.5, lr=0.01, steps_per_epoch=5, ds=None, method="oracle"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = make_sampler(method, ds or _ds(), 8, seed=5, k=k)
    torch.manual_seed(7)
    recs = train_sampled(
        model, sampler, opt, iterations=iterations, steps_per_epoch=steps_per_epoch, checkpoint_path=ckpt
    )
    return model, recs


@pytest.mark.parametrize("how", DAMAGE)
def test_train_sampled_damaged_checkpoint_restarts(tmp_path, caplog, how):
    ckpt = tmp_path / "c.pt"
    _sampled(10, ckpt)
    _damage(ckpt, how)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model, recs = _sampled(20, ckpt)
    whole, recs_whole = _sampled(20, None)
    for p, q in zip(model.parameters(), whole.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [r["train_loss"] for r in recs] == [r["train_loss"] for r in recs_whole]
    assert (tmp_path / "c.pt.corrupt").is_file()
    assert any("c.pt.corrupt" in r.getMessage() for r in caplog.records if r.name == LOGGER)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(k=1.0), "sampler k=0.5; this run has sampler k=1.0"),
        (dict(lr=0.1), "optimizer group 0 lr=0.01; this run has optimizer group 0 lr=0.1"),
        (dict(steps_per_epoch=4), "steps_per_epoch=5; this run has steps_per_epoch=4"),
        (dict(method="pcg"), "sampler class=OracleSampler; this run has sampler class=PerClassGaussianSampler"),
        (dict(ds=TensorDataset(_ds().tensors[0] * 2, _ds().tensors[1])), "sampler data_fingerprint="),
        (dict(ds=TensorDataset(_ds().tensors[0][:90], _ds().tensors[1][:90])), "sampler n=96; this run has"),
    ],
)
def test_train_sampled_resume_with_other_settings_is_refused(tmp_path, change, field):
    ckpt = tmp_path / "c.pt"
    _sampled(10, ckpt)
    with pytest.raises(ValueError) as e:
        _sampled(20, ckpt, **change)
    assert f"checkpoint {ckpt} was made with {field}" in str(e.value) and "\n" not in str(e.value)


def test_train_sampled_checkpoint_past_iterations_or_cut_epoch_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    _sampled(15, ckpt)
    with pytest.raises(ValueError, match=r"is at iteration 15 \(epoch 3\) but train_sampled\(iterations=12\)"):
        _sampled(12, ckpt)
    cut = tmp_path / "cut.pt"
    _sampled(13, cut)  # epoch 3 ends at iteration 13, inside the epoch
    with pytest.raises(ValueError, match=r"made with iterations=13, ending inside epoch 3; .* skip iterations 13..14"):
        _sampled(20, cut)
    _sampled(13, cut)  # the same run again: complete, nothing to do


def test_train_sampled_extension_still_resumes_bitwise(tmp_path):
    ckpt = tmp_path / "c.pt"
    _sampled(10, ckpt)
    model, recs = _sampled(20, ckpt)
    whole, _ = _sampled(20, None)
    assert [r["iteration"] for r in recs] == [5, 10, 15, 20]
    for p, q in zip(model.parameters(), whole.parameters(), strict=True):
        assert torch.equal(p, q)


def test_train_sampled_checkpoint_without_record_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    _sampled(10, ckpt)
    state = torch.load(ckpt, weights_only=False)
    del state["spec"]
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="has no settings record"):
        _sampled(20, ckpt)


def test_logreg_checkpoint_records_are_plain_values(tmp_path):
    t = _fit(model_fn=lambda g: logistic_regression(2, 1, generator=g), ckpt=tmp_path / "c.pt", epochs=1)
    spec = torch.load(tmp_path / "c.pt", weights_only=False)["spec"]
    assert spec == t.state_dict()["spec"]
    assert spec["parameters"] == {"layers.0.weight": [[1, 2], "torch.float32"], "layers.0.bias": [[1], "torch.float32"]}
