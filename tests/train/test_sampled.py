"""train_sampled: against a plain loop, bitwise resume, and the time split."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from iwlab.sampling import UniformSampler, make_sampler
from iwlab.train.sampled import per_example_loss, train_sampled


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(96, generator=g) > 0).long()
    return TensorDataset(x, y)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def test_uniform_matches_a_plain_loop():
    ds = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(1)
    train_sampled(model, UniformSampler(ds, 16, seed=3), opt, iterations=12, steps_per_epoch=6)

    ref = _model()
    ropt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(96, generator=g)  # the sampler's first permutation (96 = 6 batches of 16)
    torch.manual_seed(1)
    ref.train()
    x, y = ds.tensors
    for step in range(12):
        if step == 6:
            order = torch.randperm(96, generator=g)
        idx = order[(step % 6) * 16 : (step % 6 + 1) * 16]
        loss = F.cross_entropy(ref(x[idx]), y[idx])  # weights 1: the plain mean
        ropt.zero_grad()
        loss.backward()
        ropt.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("method", ["uniform", "oracle", "approx", "pcg"])
def test_resume_from_checkpoint_is_bitwise(method, tmp_path):
    ds = _data()

    def run(iterations, ckpt):
        model = _model()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        sampler = make_sampler(method, ds, 8, seed=5, **({} if method == "uniform" else {"k": 0.5}))
        torch.manual_seed(7)
        recs = train_sampled(model, sampler, opt, iterations=iterations, steps_per_epoch=5, checkpoint_path=ckpt)
        return model, recs

    whole, recs_whole = run(20, None)
    run(10, tmp_path / "c.pt")  # "interrupted" after epoch 2
    resumed, recs = run(20, tmp_path / "c.pt")
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [r["train_loss"] for r in recs] == [r["train_loss"] for r in recs_whole]


def test_records_time_split_and_eval():
    ds = _data()
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    seen_modes = []

    def on_epoch(m, epoch):
        seen_modes.append(m.training)
        x, y = ds.tensors
        return {"test_error": float((m(x).argmax(1) != y).float().mean())}

    recs = train_sampled(model, make_sampler("oracle", ds, 8), opt, iterations=13, steps_per_epoch=5, on_epoch=on_epoch)
    assert [r["iteration"] for r in recs] == [5, 10, 13]  # the last epoch is partial
    assert seen_modes == [False] * 3
    for r in recs:
        assert r["time_scoring"] > 0 and r["time_training"] > 0
        assert r["time_total"] == pytest.approx(r["time_scoring"] + r["time_training"])
        assert 0 <= r["test_error"] <= 1
    assert recs[-1]["time_total"] >= recs[0]["time_total"]
    assert not model.training


def test_weighted_objective_is_recorded():
    """With one constant-weight batch the recorded loss equals mean(alpha * L) computed by hand."""
    ds = TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 0, 1]))
    model = nn.Linear(4, 2)
    sampler = make_sampler("oracle", ds, 4, presample=None, seed=0)
    torch.manual_seed(0)
    state = sampler.state_dict()
    with torch.no_grad():
        L = per_example_loss(model, *ds.tensors)
    probe = make_sampler("oracle", ds, 4, presample=None, seed=0)
    probe.load_state_dict(state)
    b = probe.sample(score_fn=lambda x, y: L)
    expected = float((b.weights * L[b.indices]).mean())
    recs = train_sampled(model, sampler, torch.optim.SGD(model.parameters(), lr=0.0), iterations=1, steps_per_epoch=1)
    assert recs[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_bad_arguments():
    ds = _data()
    model = _model()
    with pytest.raises(ValueError, match="iterations"):
        train_sampled(
            model,
            make_sampler("uniform", ds, 8),
            torch.optim.SGD(model.parameters(), lr=0.1),
            iterations=0,
            steps_per_epoch=5,
        )
