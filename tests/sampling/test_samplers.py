"""Importance samplers: reference tests (unbiasedness, eq. 13-16) and one check list for every sampler."""

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from iwlab.functional.sampling import (
    draw,
    importance_weights,
    sampling_probabilities,
    total_variation_to_uniform,
)
from iwlab.sampling import (
    METHODS,
    ApproxSampler,
    OracleSampler,
    PCGSampler,
    UniformSampler,
    make_sampler,
)

N, D, C = 24, 3, 3


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    W = torch.randn(D, C, generator=g)
    return x, y, W


def _per_example_grads(x, y, W):
    """(N, D*C) per-example gradients and (N,) losses of softmax regression, one autograd call each."""
    grads, losses = [], []
    for i in range(N):
        w = W.clone().requires_grad_(True)
        loss = F.cross_entropy(x[i : i + 1] @ w, y[i : i + 1])
        (gw,) = torch.autograd.grad(loss, w)
        grads.append(gw.reshape(-1))
        losses.append(loss.detach())
    return torch.stack(grads).double(), torch.stack(losses)


def _mc_estimate(sampler, losses, G, draws):
    """Mean and standard error over ``draws`` minibatches of the sampled gradient (1/B) sum alpha_b g_b."""
    est = []
    for _ in range(draws):
        b = sampler.sample(score_fn=lambda x, y: losses[_lookup(x)])
        est.append((b.weights.double().unsqueeze(1) * G[b.indices]).mean(0))
    est = torch.stack(est)
    return est.mean(0), est.std(0) / math.sqrt(draws)


_X_REF = None


def _lookup(xb):
    # map fetched rows back to dataset positions (rows of x are distinct)
    return (xb.unsqueeze(1) == _X_REF.unsqueeze(0)).all(-1).float().argmax(1)


@pytest.mark.parametrize("presample,smoothing", [(None, 0.0), (None, 0.3), (2.0, 0.0), (2.0, "adaptive")])
def test_k1_is_unbiased_for_the_full_batch_gradient(presample, smoothing):
    global _X_REF
    x, y, W = _problem()
    _X_REF = x
    G, losses = _per_example_grads(x, y, W)
    w = W.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(F.cross_entropy(x @ w, y), w)  # the full-batch gradient, by autograd
    s = OracleSampler(TensorDataset(x, y), batch_size=4, k=1.0, presample=presample, smoothing=smoothing, seed=1)
    if smoothing == "adaptive":
        s.update(torch.arange(4), losses[:4])  # gives the EMA a value, so smoothing is > 0
    mean, se = _mc_estimate(s, losses, G, 6000)
    err = (mean - full.reshape(-1).double()).abs()
    assert bool((err <= 4.5 * se + 1e-6).all()), (err / se).max()


def test_unbiasedness_test_has_power_k_half_is_biased_for_the_mean():
    global _X_REF
    x, y, W = _problem()
    _X_REF = x
    G, losses = _per_example_grads(x, y, W)
    full = G.mean(0)
    s = OracleSampler(TensorDataset(x, y), batch_size=4, k=0.5, presample=None, seed=1)
    mean, se = _mc_estimate(s, losses, G, 3000)
    assert bool(((mean - full).abs() > 6 * se).any())


@pytest.mark.parametrize("k", [0.5, 0.75, 0.0, -1.0])
def test_k_below_one_follows_gradient_of_loss_power_2_minus_k(k):
    """Eq. 13-16: E[alpha grad L] = C' grad (1/N) sum L^(2-k), C' = (sum L)^(k-1) / (2-k)."""
    global _X_REF
    x, y, W = _problem(3)
    _X_REF = x
    G, losses = _per_example_grads(x, y, W)
    w = W.clone().double().requires_grad_(True)
    per = F.cross_entropy(x.double() @ w, y, reduction="none")
    (ref,) = torch.autograd.grad(per.pow(2 - k).mean(), w)  # autograd of the smooth max-loss
    const = losses.double().sum() ** (k - 1) / (2 - k)
    s = OracleSampler(TensorDataset(x, y), batch_size=4, k=k, presample=None, seed=2)
    mean, se = _mc_estimate(s, losses, G, 6000)
    target = const * ref.reshape(-1)
    assert bool(((mean - target).abs() <= 4.5 * se + 1e-7).all())
    cos = F.cosine_similarity(mean, ref.reshape(-1), dim=0)
    assert cos > 0.99


def test_exact_expectation_matches_eq_14():
    # enumerate instead of sampling: sum_i p_i alpha_i g_i = sum_i p_i^(1-k) g_i / N
    g = torch.Generator().manual_seed(0)
    L = torch.rand(10, generator=g, dtype=torch.float64) + 0.1
    p = sampling_probabilities(L)
    for k in (1.0, 0.5, 0.0):
        a = importance_weights(p, k)
        assert torch.allclose(p * a, p.pow(1 - k) / 10)


def test_sampling_frequencies_follow_scores():
    scores = torch.tensor([0.0, 1.0, 2.0, 5.0, 2.0])
    p = sampling_probabilities(scores)
    idx = draw(p, 200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=5).double() / idx.numel()
    assert freq[0] == 0
    # 5 standard errors of a binomial proportion
    se = (p.double() * (1 - p.double()) / idx.numel()).sqrt()
    assert bool(((freq - p.double()).abs() <= 5 * se + 1e-9).all())


def test_sampler_draw_frequencies_follow_oracle_scores():
    x = torch.arange(6.0).unsqueeze(1)
    s = OracleSampler(TensorDataset(x), batch_size=50, presample=None, seed=0)
    counts = torch.zeros(6)
    for _ in range(400):
        counts += torch.bincount(s.sample(score_fn=lambda xb: xb[:, 0]).indices, minlength=6)
    freq = counts / counts.sum()
    assert torch.allclose(freq, torch.arange(6.0) / 15, atol=0.01)


def test_smoothing_moves_toward_uniform():
    scores = torch.tensor([0.01, 0.1, 1.0, 10.0])
    tv = [total_variation_to_uniform(sampling_probabilities(scores, c)) for c in (0.0, 0.1, 1.0, 10.0, 1e6)]
    assert all(a > b for a, b in zip(tv, tv[1:], strict=False))
    assert tv[-1] < 1e-4
    assert sampling_probabilities(torch.zeros(3)).tolist() == pytest.approx([1 / 3] * 3)


def test_adaptive_smoothing_is_half_the_loss_ema():
    s = OracleSampler(TensorDataset(torch.zeros(10, 1)), batch_size=2, smoothing="adaptive", ema=0.5)
    assert s.smoothing_constant() == 0.0
    s.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))  # batch mean 2
    assert s.smoothing_constant() == pytest.approx(1.0)
    s.update(torch.tensor([0, 1]), torch.tensor([4.0, 4.0]))  # ema = .5 * 2 + .5 * 4 = 3
    assert s.smoothing_constant() == pytest.approx(1.5)


def test_uniform_is_epochs_of_permutations():
    s = UniformSampler(TensorDataset(torch.arange(10.0)), batch_size=4, seed=0)
    seen = torch.cat([s.sample().indices for _ in range(5)])  # 20 draws = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:20].tolist()) == list(range(10))
    assert bool((s.sample().weights == 1).all())


def test_pcg_scores_are_class_means():
    x = torch.zeros(9, 1)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    s = PCGSampler(TensorDataset(x, y), batch_size=3, presample=None, class_decay=0.5)
    s.update(torch.tensor([0, 3]), torch.tensor([1.0, 3.0]))
    # class 2 unseen: scores the mean of the seen classes
    assert s._scores(torch.arange(9), None).tolist() == [1.0] * 3 + [3.0] * 3 + [2.0] * 3
    s.update(torch.tensor([1]), torch.tensor([2.0]))
    assert float(s.class_mean_[0]) == pytest.approx(1.5)


def test_approx_history_is_the_last_losses_oldest_first():
    s = ApproxSampler(TensorDataset(torch.zeros(5, 1), torch.zeros(5, dtype=torch.long)), batch_size=2, history=3)
    for v in range(1, 6):
        s.update(torch.tensor([0, 1, 1]), torch.tensor([float(v), 10.0 * v, 100.0 * v]))
    assert s.history_[0].tolist() == [3.0, 4.0, 5.0]
    assert s.history_[1].tolist() == [300.0, 400.0, 500.0]  # a repeated index keeps its last loss
    assert s.lengths_.tolist() == [3, 3, 0, 0, 0]


def test_approx_predictor_learns_class_dependent_losses_and_sampling_follows():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    # smoothing keeps drawing class 0 while the predictor is still wrong about it (paper §3.3.1)
    s = ApproxSampler(
        TensorDataset(torch.zeros(200, 1), y), batch_size=32, presample=2.0, seed=0, predictor_lr=0.02, smoothing=0.3
    )
    true = torch.where(y == 1, 2.0, 0.1)
    for _ in range(300):
        b = s.sample()
        s.update(b.indices, true[b.indices])
    pred = s.predict(torch.arange(200)).detach()
    assert float(pred[y == 1].mean()) == pytest.approx(2.0, abs=0.25)
    assert float(pred[y == 0].mean()) == pytest.approx(0.1, abs=0.3)
    frac = torch.cat([s.sample().indices for _ in range(20)])
    assert float((y[frac] == 1).float().mean()) > 0.75


# ---- one check list for every sampler -------------------------------------------------------------------


class ListDataset(Dataset):
    """A plain map-style dataset (no .tensors): items go through the default collate."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _data(kind, device="cpu"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    if kind == "tensor":
        return TensorDataset(x.to(device), y.to(device)), {}
    return ListDataset(x, y), {"labels": y}


def _score(x, y):
    return x.pow(2).sum(1)


def _make(method, kind="tensor", seed=0, device="cpu", **kw):
    ds, extra = _data(kind, device)
    if method in ("uniform", "oracle"):
        extra = {}
    return make_sampler(method, ds, 8, seed=seed, **extra, **kw)


def _run(s, steps=6):
    out = []
    for _ in range(steps):
        b = s.sample(score_fn=_score)
        out.append((b.indices.clone(), b.weights.clone()))
        s.update(b.indices, b.data[0].pow(2).sum(1).cpu())
    return out


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["tensor", "list"])
@pytest.mark.parametrize("method", METHODS)
def test_common_shapes_dtypes_devices(method, kind, device):
    if kind == "list" and device != "cpu":
        pytest.skip("list datasets live on the CPU")
    s = _make(method, kind, device=device)
    b = s.sample(score_fn=_score)
    assert b.indices.shape == (8,) and b.indices.dtype == torch.long
    assert b.weights.shape == (8,) and b.weights.dtype == torch.float32
    assert b.weights.device.type == device
    assert b.data[0].shape == (8, 2) and b.data[1].shape == (8,)
    assert bool((b.weights > 0).all()) and bool(torch.isfinite(b.weights).all())
    assert bool((b.indices >= 0).all()) and bool((b.indices < 40).all())
    x, y = b.data
    ds = s.dataset
    ref = torch.stack([torch.as_tensor(ds[i][0]) for i in b.indices.tolist()])
    assert torch.equal(x.cpu(), ref.cpu())


@pytest.mark.parametrize("method", METHODS)
def test_common_seeding(method):
    a, b, c = _run(_make(method, seed=3)), _run(_make(method, seed=3)), _run(_make(method, seed=4))
    assert all(torch.equal(i1, i2) and torch.equal(w1, w2) for (i1, w1), (i2, w2) in zip(a, b, strict=True))
    assert not all(torch.equal(i1, i2) for (i1, _), (i2, _) in zip(a, c, strict=True))


@pytest.mark.parametrize("method", METHODS)
def test_common_checkpoint_resumes_exactly(method):
    whole = _make(method, seed=5)
    ref = _run(whole, 10)
    first = _make(method, seed=5)
    _run(first, 4)
    state = first.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)  # through a file, as a checkpoint would
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    resumed = _make(method, seed=99)  # a different seed: the state must override it
    resumed.load_state_dict(state)
    rest = _run(resumed, 6)
    for (i1, w1), (i2, w2) in zip(ref[4:], rest, strict=True):
        assert torch.equal(i1, i2) and torch.allclose(w1, w2)


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
def test_common_weight_normalization_k1_mean_weight_is_one(method):
    """E_p[alpha] = sum_i p_i / (P p_i) = 1 for k = 1: weights are normalized to the pool size."""
    s = _make(method, presample=2.0, smoothing=0.1)
    ws = torch.cat([s.sample(score_fn=_score).weights for _ in range(3000)])
    assert float(ws.mean()) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("method", METHODS)
def test_common_bad_inputs(method):
    ds, _ = _data("tensor")
    with pytest.raises(ValueError, match="batch_size"):
        make_sampler(method, ds, 0)
    if method != "uniform":
        with pytest.raises(ValueError, match="k must be"):
            make_sampler(method, ds, 4, k=1.5)
        with pytest.raises(ValueError, match="smoothing"):
            make_sampler(method, ds, 4, smoothing=-1.0)
        with pytest.raises(ValueError, match="presample"):
            make_sampler(method, ds, 4, presample=0)
    s = make_sampler(method, ds, 4)
    with pytest.raises(ValueError, match="must match"):
        s.update(torch.arange(4), torch.rand(3))
    other = "pcg" if method != "pcg" else "oracle"
    with pytest.raises(ValueError, match="checkpoint is for"):
        s.load_state_dict(make_sampler(other, ds, 4).state_dict())


def test_bad_inputs_specific():
    ds, _ = _data("tensor")
    with pytest.raises(ValueError, match="unknown sampling method"):
        make_sampler("loss", ds, 4)
    with pytest.raises(ValueError, match="score_fn"):
        OracleSampler(ds, 4).sample()
    with pytest.raises(ValueError, match="one loss per pool example"):
        OracleSampler(ds, 4).sample(score_fn=lambda x, y: x.sum())
    with pytest.raises(ValueError, match="labels"):
        ApproxSampler(TensorDataset(torch.zeros(4, 1)), 2)
    with pytest.raises(ValueError, match="nonnegative"):
        sampling_probabilities(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="finite"):
        sampling_probabilities(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="k must be"):
        importance_weights(torch.tensor([0.5, 0.5]), k=2.0)
