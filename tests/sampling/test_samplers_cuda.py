"""Samplers and draws with CUDA tensors (skipped without a GPU)."""

import io

import pytest
import torch
from torch.utils.data import TensorDataset

from iwlab.functional.sampling import draw
from iwlab.sampling import STRATEGIES, fetch, make_sampler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _ds(device):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, generator=g), torch.randint(0, 3, (40,), generator=g)
    return TensorDataset(x.to(device), y.to(device))


def _steps(s, k):
    out = []
    for _ in range(k):
        b = s.sample(score_fn=lambda x, y: x.pow(2).sum(1))
        out.append((b.indices.clone(), b.weights.cpu().clone()))
        s.update(b.indices.cuda(), b.data[0].pow(2).sum(1))  # indices and losses on the GPU
    return out


@pytest.mark.parametrize("method", STRATEGIES)
def test_cuda_dataset_checkpoint_loaded_onto_the_gpu_resumes_exactly(method):
    ref = _steps(make_sampler(method, _ds("cuda"), 8, seed=5), 8)
    first = make_sampler(method, _ds("cuda"), 8, seed=5)
    _steps(first, 3)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location="cuda", weights_only=False)  # as train_sampled loads it
    resumed = make_sampler(method, _ds("cuda"), 8, seed=99)
    resumed.load_state_dict(state)
    for (i1, w1), (i2, w2) in zip(ref[3:], _steps(resumed, 5), strict=True):
        assert torch.equal(i1, i2) and torch.allclose(w1, w2)


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
def test_cuda_nan_loss_is_refused_with_its_dataset_index(method):
    s = make_sampler(method, _ds("cuda"), 8)
    with pytest.raises(ValueError, match=r"losses\[1\] = nan \(dataset index 4\)"):
        s.update(torch.tensor([3, 4], device="cuda"), torch.tensor([1.0, float("nan")], device="cuda"))
    assert s.ema_loss_ is None


def test_cuda_draw_past_2_24_and_fetch_with_cuda_indices():
    n = 2**24 + 1
    probs = torch.zeros(n, device="cuda")
    probs[0], probs[-1] = 1.0, 3.0
    idx = draw(probs, 40_000, torch.Generator(device="cuda").manual_seed(0))
    assert idx.device.type == "cuda" and set(idx.unique().tolist()) == {0, n - 1}
    assert abs(float(idx.eq(n - 1).double().mean()) - 0.75) < 5 * (0.75 * 0.25 / 40_000) ** 0.5
    small = torch.tensor([0.0, 1.0], device="cuda")
    g1, g2 = torch.Generator(device="cuda").manual_seed(1), torch.Generator(device="cuda").manual_seed(1)
    assert torch.equal(draw(small, 20, g1), torch.multinomial(small, 20, True, generator=g2))
    ds = TensorDataset(torch.arange(5.0))
    assert fetch(ds, torch.tensor([4, 0], device="cuda"))[0].tolist() == [4.0, 0.0]
    with pytest.raises(ValueError, match=r"indices\[1\] = 40"):
        fetch(_ds("cuda"), torch.tensor([0, 40], device="cuda"))


def test_cuda_approx_state_is_on_the_gpu_and_its_step_needs_no_host_sync():
    from iwlab.functional.sampling import floored_scores
    from iwlab.sampling import ApproxSampler
    from iwlab.sampling.approx import append_losses

    s = ApproxSampler(_ds("cuda"), 8, seed=0)
    assert s.history_.is_cuda and s.lengths_.is_cuda and s.labels_.is_cuda
    pool = torch.randint(0, 40, (24,), device="cuda")
    idx = torch.randint(0, 40, (8,), device="cuda")
    losses = torch.rand(8, device="cuda")
    s.predict(pool)  # warm-up: cuDNN picks its kernels once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        floored_scores(s.predict(pool), 0.1, validate=False)
        pred = s.predict(idx)
        loss = torch.nn.functional.mse_loss(pred, losses)
        s.optimizer.zero_grad()
        loss.backward()
        s.optimizer.step()
        append_losses(s.history_, s.lengths_, idx, losses)
    finally:
        torch.cuda.set_sync_debug_mode(0)
