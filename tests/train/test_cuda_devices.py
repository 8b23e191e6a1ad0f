"""On a GPU: data on other devices is moved by the trainers, and checkpoints resume across devices.

Skipped without CUDA.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from iwlab.files import fingerprint
from iwlab.models import MLP, init_from_generator_
from iwlab.sampling import make_sampler
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.sampled import train_sampled

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

MEMBERS = [Member(seed=0, lr=0.1, class_weight=(1.0, 0.25)), Member(seed=1, lr=0.05, weight_decay=1e-2)]


def _data(n=37):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long(), torch.rand(n, generator=g) + 0.1


def _mlp(g):
    return MLP(2, (8,), 1, dropout=0.25, generator=g)


def _func(g):
    return init_from_generator_(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1)), g)


@pytest.mark.parametrize("model_fn", [_mlp, _func], ids=["stacked", "func"])
def test_inputs_on_other_devices_are_moved(model_fn):
    x, y, sw = _data()
    on_gpu = EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda")
    on_gpu.fit(x.cuda(), y.cuda(), epochs=3, sample_weight=sw.cuda(), progress=False)
    mixed = EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda")
    mixed.fit(x, y.to(torch.int8).cuda(), epochs=3, sample_weight=sw, progress=False)  # x, weights on the CPU
    for a, b in zip(on_gpu._param_list(), mixed._param_list(), strict=True):
        assert a.is_cuda and torch.equal(a, b)


@pytest.mark.parametrize("model_fn", [_mlp, _func], ids=["stacked", "func"])
def test_gpu_checkpoint_resumes_bitwise_and_cpu_checkpoint_resumes_on_gpu(tmp_path, model_fn):
    x, y, _ = _data()
    ck = tmp_path / "g.pt"
    EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda").fit(
        x, y, epochs=2, checkpoint_path=ck, progress=False
    )
    resumed = EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda")
    resumed.fit(x, y, epochs=4, checkpoint_path=ck, progress=False)
    straight = EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda")
    straight.fit(x, y, epochs=4, progress=False)
    for a, b in zip(resumed._param_list(), straight._param_list(), strict=True):
        assert torch.equal(a, b)
    ck_cpu = tmp_path / "c.pt"
    EnsembleTrainer(model_fn, MEMBERS, batch_size=8).fit(x, y, epochs=2, checkpoint_path=ck_cpu, progress=False)
    moved = EnsembleTrainer(model_fn, MEMBERS, batch_size=8, device="cuda")
    moved.fit(x, y, epochs=4, checkpoint_path=ck_cpu, progress=False)
    assert moved.epoch == 4 and all(p.is_cuda and torch.isfinite(p).all() for p in moved._param_list())
    if model_fn is _mlp:  # the func backend's dropout masks come from the device's RNG stream, so they differ
        torch.testing.assert_close(moved.logits(x).cpu(), straight.logits(x).cpu(), atol=1e-4, rtol=1e-4)


def test_train_sampled_resumes_on_gpu(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g).cuda()
    ds = TensorDataset(x, (x[:, 0] > 0).long())

    def run(iterations, ckpt):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2)).cuda()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        sampler = make_sampler("oracle", ds, 8, seed=5, k=0.5)
        torch.manual_seed(7)
        torch.cuda.manual_seed(7)
        train_sampled(model, sampler, opt, iterations=iterations, steps_per_epoch=5, checkpoint_path=ckpt)
        return model

    run(10, tmp_path / "c.pt")
    resumed, whole = run(20, tmp_path / "c.pt"), run(20, None)
    for p, q in zip(resumed.parameters(), whole.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fingerprint_is_the_same_on_every_device():
    t = torch.randn(300, 400)
    assert fingerprint(t.cuda(), t.t().cuda()) == fingerprint(t, t.t())
