"""Importance samplers: reference tests (unbiasedness, eq. 13-16) and one check list for every sampler."""

import io
import math
import re

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
    STRATEGIES,
    ApproxSampler,
    OracleSampler,
    PerClassGaussianSampler,
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
    s = PerClassGaussianSampler(TensorDataset(x, y), batch_size=3, presample=None, class_decay=0.5)
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
@pytest.mark.parametrize("method", STRATEGIES)
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


@pytest.mark.parametrize("method", STRATEGIES)
def test_common_seeding(method):
    a, b, c = _run(_make(method, seed=3)), _run(_make(method, seed=3)), _run(_make(method, seed=4))
    assert all(torch.equal(i1, i2) and torch.equal(w1, w2) for (i1, w1), (i2, w2) in zip(a, b, strict=True))
    assert not all(torch.equal(i1, i2) for (i1, _), (i2, _) in zip(a, c, strict=True))


@pytest.mark.parametrize("method", STRATEGIES)
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


@pytest.mark.parametrize("method", STRATEGIES)
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


# ---- issue 10: inputs that used to give wrong numbers, hangs or poisoned states -----------------------

CLASS_AWARE = ["approx", "pcg"]


def _ds(n, num_classes=3):
    g = torch.Generator().manual_seed(n)
    return TensorDataset(torch.randn(n, 2, generator=g), torch.arange(n) % num_classes)


def _snapshot(s):
    """Every number in the sampler's state, cloned, for before/after comparisons."""
    out = {}
    for key, v in s.state_dict().items():
        if isinstance(v, torch.Tensor):
            out[key] = v.clone()
        elif isinstance(v, dict):  # predictor / optimizer
            out[key] = io.BytesIO()
            torch.save(v, out[key])
            out[key] = out[key].getvalue()
        else:
            out[key] = v
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("method", STRATEGIES)
def test_load_state_dict_from_a_dataset_of_another_size_raises_and_changes_nothing(method):
    s = make_sampler(method, _ds(10), 4, seed=1)
    _run_updates(s, 2)
    before = _snapshot(s)
    with pytest.raises(ValueError, match=r"checkpoint field 'n' is 20 but this sampler's dataset size is 10") as e:
        s.load_state_dict(make_sampler(method, _ds(20), 4).state_dict())
    assert "\n" not in str(e.value)
    _same(before, _snapshot(s))


def _run_updates(s, steps):
    for _ in range(steps):
        b = s.sample(score_fn=lambda x, y: x.pow(2).sum(1))
        s.update(b.indices, b.data[0].pow(2).sum(1))


def test_uniform_load_state_without_n_but_with_a_short_permutation_raises_instead_of_hanging():
    state = UniformSampler(_ds(10), 4).state_dict()
    del state["n"]  # a checkpoint from before the size was stored
    s = UniformSampler(_ds(20), 4)
    with pytest.raises(ValueError, match=r"'order_' has shape \(10,\) but this sampler's is \(20,\)"):
        s.load_state_dict(state)
    ok = UniformSampler(_ds(10), 4, seed=7)
    ok.load_state_dict(state)  # the same size still loads
    assert torch.equal(ok.sample().indices, UniformSampler(_ds(10), 4).sample().indices)


def test_approx_load_state_with_another_history_length_raises():
    s = ApproxSampler(_ds(10), 4, history=10)
    with pytest.raises(ValueError, match=r"checkpoint field 'history' is 5 but this sampler's history is 10"):
        s.load_state_dict(ApproxSampler(_ds(10), 4, history=5).state_dict())
    assert s.history_.shape == (10, 10)


@pytest.mark.parametrize("method", CLASS_AWARE)
def test_class_aware_load_state_with_another_num_classes_raises_before_changing_anything(method):
    s = make_sampler(method, _ds(12, 3), 4, seed=2)
    before = _snapshot(s)
    with pytest.raises(ValueError, match=r"checkpoint field 'num_classes' is 4 but this sampler's num_classes is 3"):
        s.load_state_dict(make_sampler(method, _ds(12, 4), 4, seed=9).state_dict())
    _same(before, _snapshot(s))


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_update_refuses_a_non_finite_or_negative_loss_naming_its_index_and_keeps_the_state(method, bad):
    s = make_sampler(method, _ds(10), 4, smoothing="adaptive", seed=0)
    s.update(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
    before = _snapshot(s)
    with pytest.raises(ValueError, match=r"losses\[2\] = .* \(dataset index 7\)") as e:
        s.update(torch.tensor([3, 5, 7]), torch.tensor([1.0, 2.0, bad]))
    assert "\n" not in str(e.value)
    _same(before, _snapshot(s))
    # later draws are unaffected: smoothing is still half the EMA of the good losses (mean 1.5)
    assert s.smoothing_constant() == pytest.approx(0.75)
    assert s.sample(score_fn=lambda x, y: x.pow(2).sum(1)).indices.shape == (4,)


@pytest.mark.parametrize("method", STRATEGIES)
def test_update_refuses_indices_outside_the_dataset(method):
    s = make_sampler(method, _ds(10), 4)
    before = _snapshot(s)
    for bad in (-1, 10):
        with pytest.raises(ValueError, match=rf"indices\[1\] = {bad}"):
            s.update(torch.tensor([0, bad]), torch.tensor([1.0, 1.0]))
    with pytest.raises(TypeError, match="integer tensor"):
        s.update(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
    _same(before, _snapshot(s))


def test_approx_negative_index_no_longer_writes_the_last_examples_history():
    s = ApproxSampler(_ds(10), 4)
    with pytest.raises(ValueError, match="dataset indices in"):
        s.update(torch.tensor([-1]), torch.tensor([5.0]))
    assert s.lengths_.tolist() == [0] * 10


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
def test_empty_update_changes_nothing(method):
    s = make_sampler(method, _ds(10), 4, smoothing="adaptive")
    s.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    before = _snapshot(s)
    s.update(torch.empty(0, dtype=torch.long), torch.empty(0))
    _same(before, _snapshot(s))
    assert s.ema_loss_ == 2.0


def test_adaptive_ema_of_losses_whose_float32_sum_overflows_is_their_mean():
    s = OracleSampler(_ds(10), 4, smoothing="adaptive")
    s.update(torch.tensor([0, 1]), torch.tensor([3e38, 3e38]))
    assert s.ema_loss_ == pytest.approx(float(torch.tensor(3e38)), rel=1e-7)


def test_pcg_class_mean_of_losses_whose_float32_sum_overflows_is_their_mean():
    s = PerClassGaussianSampler(_ds(10, 2), 4, presample=None)
    s.update(torch.tensor([0, 2]), torch.tensor([3e38, 3e38]))  # both class 0
    assert float(s.class_mean_[0]) == float(torch.tensor(3e38))
    probs = s.sample().probs  # class 1 unseen scores the seen mean: every example equally likely
    assert torch.allclose(probs, torch.full((4,), 0.1))


def test_update_refuses_float64_losses_beyond_float32():
    s = PerClassGaussianSampler(_ds(10), 4)
    with pytest.raises(ValueError, match=r"float32's range.*losses\[0\] = 1e\+300 \(dataset index 4\)"):
        s.update(torch.tensor([4]), torch.tensor([1e300], dtype=torch.float64))
    assert not bool(s.class_seen_.any())


def test_approx_refuses_losses_whose_squared_error_overflows_instead_of_poisoning_the_predictor():
    s = ApproxSampler(_ds(10), 4)
    before = _snapshot(s)
    with pytest.raises(ValueError, match="squared error overflows"):
        s.update(torch.tensor([1, 2]), torch.tensor([1e20, 1.0]))
    _same(before, _snapshot(s))
    assert bool(torch.isfinite(s.predict(torch.arange(10))).all())


@pytest.mark.parametrize("method", CLASS_AWARE)
def test_label_minus_one_raises_instead_of_joining_the_last_class(method):
    y = torch.tensor([0, 1, 2, -1, 0, 1])
    with pytest.raises(ValueError, match=r"class labels must be in \[0, num_classes\); labels\[3\] = -1"):
        make_sampler(method, TensorDataset(torch.zeros(6, 1)), 2, labels=y)
    with pytest.raises(ValueError, match=r"dataset.tensors\[1\]\[3\] = -1"):
        make_sampler(method, TensorDataset(torch.zeros(6, 1), y), 2)


@pytest.mark.parametrize("method", CLASS_AWARE)
def test_label_at_or_above_num_classes_raises(method):
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"num_classes=2\); dataset.tensors\[1\]\[2\] = 2"):
        make_sampler(method, TensorDataset(torch.zeros(4, 1), y), 2, num_classes=2)
    with pytest.raises(ValueError, match=r"num_classes must be >= 1"):
        make_sampler(method, TensorDataset(torch.zeros(4, 1), y), 2, num_classes=0)


@pytest.mark.parametrize("method", CLASS_AWARE)
def test_labels_that_are_not_integers_raise_and_integral_floats_are_kept(method):
    x = torch.zeros(4, 1)
    with pytest.raises(ValueError, match=r"labels\[1\] = 1.5"):
        make_sampler(method, TensorDataset(x), 2, labels=torch.tensor([0.0, 1.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        make_sampler(method, TensorDataset(x), 2, labels=torch.tensor([0, 1, 1]))
    s = make_sampler(method, TensorDataset(x, torch.tensor([0.0, 1.0, 1.0, 0.0])), 2)
    assert s.labels.tolist() == [0, 1, 1, 0] and s.num_classes == 2


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
def test_presample_and_k_that_cannot_work_raise(method):
    ds = _ds(10)
    for bad in (float("inf"), float("nan"), True):
        with pytest.raises((ValueError, TypeError), match="presample"):
            make_sampler(method, ds, 4, presample=bad)
    with pytest.raises(ValueError, match=r"pool of 0 examples"):
        make_sampler(method, ds, 4, presample=0.1)  # used to become a pool of 1 without a word
    with pytest.raises(ValueError, match=r"pool of 167772160 examples"):
        make_sampler(method, ds, 4, presample=2**25 * 1.25)
    for bad in (float("-inf"), float("nan")):
        with pytest.raises(ValueError, match="k must be finite"):
            make_sampler(method, ds, 4, k=bad)
    for arg, bad in (("k", True), ("smoothing", True), ("ema", False), ("smoothing", "auto")):
        with pytest.raises((ValueError, TypeError), match=arg):
            make_sampler(method, ds, 4, **{arg: bad})


@pytest.mark.parametrize("method", STRATEGIES)
def test_integer_like_batch_size_is_accepted_bool_and_float_are_not(method):
    np = pytest.importorskip("numpy")
    ds = _ds(10)
    for bs in (np.int64(4), np.int32(4), torch.tensor(4)):
        s = make_sampler(method, ds, bs)
        assert s.batch_size == 4 and type(s.batch_size) is int
        assert s.sample(score_fn=lambda x, y: x.pow(2).sum(1)).indices.shape == (4,)
    for bad in (True, 4.0, np.float64(4.0)):
        with pytest.raises(TypeError, match="batch_size must be an integer"):
            make_sampler(method, ds, bad)


def test_scores_of_1e38_give_the_right_probabilities_and_weights():
    ds = TensorDataset(torch.arange(4.0))
    s = OracleSampler(ds, batch_size=400, presample=None, seed=0)
    scores = torch.tensor([1e38, 1e38, 3e38, 0.0])  # float32 sum overflows
    b = s.sample(score_fn=lambda x: scores)
    exact = scores.double() / scores.double().sum()  # [0.2, 0.2, 0.6, 0]
    assert torch.allclose(b.probs.double(), exact[b.indices], rtol=1e-6)
    assert torch.allclose(b.weights.double(), 1.0 / (4 * exact[b.indices]), rtol=1e-6)
    assert set(b.indices.tolist()) == {0, 1, 2}


def test_float64_scores_beyond_float32_are_normalized_in_float64():
    s = OracleSampler(TensorDataset(torch.arange(3.0)), batch_size=300, presample=None, seed=0)
    scores = torch.tensor([1e300, 3e300, 0.0], dtype=torch.float64)
    b = s.sample(score_fn=lambda x: scores)
    assert torch.allclose(b.probs.double(), torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64)[b.indices])
    assert b.weights.dtype == torch.float32 and bool(torch.isfinite(b.weights).all())


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_oracle_refuses_a_negative_or_non_finite_score_naming_pool_position_and_dataset_index(bad):
    s = OracleSampler(TensorDataset(torch.arange(5.0)), batch_size=3, presample=None, seed=0)
    scores = torch.tensor([1.0, 2.0, 3.0, bad, 1.0])
    before = s.generator.get_state()
    with pytest.raises(ValueError, match=r"pool position 3 \(dataset index 3\) has score") as e:
        s.sample(score_fn=lambda x: scores)
    assert "\n" not in str(e.value)
    assert s.steps_ == 0 and torch.equal(s.generator.get_state(), before)


def test_oracle_negative_score_in_a_presampled_pool_names_its_dataset_index():
    x = torch.arange(10.0)
    s = OracleSampler(TensorDataset(x), batch_size=2, presample=2.0, seed=0)
    with pytest.raises(ValueError, match=r"dataset index (\d+)\) has score -(\d+)\.0") as e:
        s.sample(score_fn=lambda xb: -xb - 1)  # score of dataset index i is -(i + 1)
    idx, score = (int(v) for v in re.search(r"dataset index (\d+)\) has score -(\d+)", str(e.value)).groups())
    assert score == idx + 1


def test_approx_predictions_all_negative_sample_uniformly_with_unit_weights():
    s = ApproxSampler(_ds(8), 4, presample=None)
    with torch.no_grad():
        for p in s.predictor.out.parameters():
            p.zero_()
        s.predictor.out.bias.fill_(-3.0)  # every prediction is -3
    b = s.sample()
    assert torch.equal(b.probs, torch.full((4,), 1 / 8))  # no positive prediction to scale a floor: uniform
    assert torch.allclose(b.weights, torch.ones(4))


def test_importance_weights_float32_overflow_is_computed_not_zeroed():
    p = torch.tensor([1e-20, 0.5])
    w = importance_weights(p, k=-2.0, n=10)  # p^k = 1e40 overflows float32; the weight 1e-41 does not
    exact = 1.0 / (10 * p.double().pow(-2.0))
    assert w.dtype == torch.float32
    assert torch.equal(w, exact.float()) and bool((w > 0).all())


def test_importance_weights_refuse_unrepresentable_weights_bad_k_and_bad_probabilities():
    with pytest.raises(ValueError, match=r"not representable in torch.float32 for probs\[0\]"):
        importance_weights(torch.tensor([1e-44]), k=1.0, n=384)  # 2.6e41
    for k in (float("-inf"), float("nan")):
        with pytest.raises(ValueError, match="k must be finite"):
            importance_weights(torch.tensor([0.5]), k=k)
    for bad in (float("nan"), 0.0, 1.5):
        with pytest.raises(ValueError, match=r"in \(0, 1\]; probs\[1\]"):
            importance_weights(torch.tensor([0.5, bad]))
    with pytest.raises(TypeError, match="n must be an integer"):
        importance_weights(torch.tensor([0.5]), n=2.0)


def test_sampling_probabilities_of_scores_whose_float32_sum_overflows():
    p = sampling_probabilities(torch.tensor([1e38, 1e38, 2e38]))
    assert p.dtype == torch.float32 and p.tolist() == [0.25, 0.25, 0.5]
    p = sampling_probabilities(torch.tensor([1e308, 1.5e308], dtype=torch.float64))
    assert torch.allclose(p, torch.tensor([0.4, 0.6], dtype=torch.float64), rtol=1e-15, atol=0)
    p = sampling_probabilities(torch.tensor([3e38, 0.0]), smoothing=3e38)  # s + c overflows alone
    assert torch.allclose(p, torch.tensor([2 / 3, 1 / 3]), rtol=1e-7, atol=0)
    with pytest.raises(TypeError, match="smoothing must be a real number"):
        sampling_probabilities(torch.tensor([1.0]), smoothing="0.1")


def test_sampling_probabilities_of_half_scores_are_float32_and_exact():
    s = torch.tensor([60000.0, 60000.0, 1e-3], dtype=torch.float16)  # the float16 sum overflows
    p = sampling_probabilities(s)
    exact = s.double() / s.double().sum()
    assert p.dtype == torch.float32 and torch.allclose(p.double(), exact, rtol=1e-6)
    assert float(p[2]) > 0


def test_draw_refuses_bad_probabilities_and_accepts_integer_like_num():
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match=r"probs must be finite; probs\[1\] = nan"):
        draw(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(ValueError, match=r"probs must be nonnegative; probs\[0\] = -1.0"):
        draw(torch.tensor([-1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="all zeros"):
        draw(torch.zeros(3), 2)
    with pytest.raises(TypeError, match="num must be an integer"):
        draw(torch.ones(2), 2.0)
    a = draw(torch.tensor([1.0, 3.0]), np.int64(50), torch.Generator().manual_seed(0))
    assert torch.equal(
        a, torch.multinomial(torch.tensor([1.0, 3.0]), 50, True, generator=torch.Generator().manual_seed(0))
    )


def test_fetch_refuses_bool_masks_floats_and_out_of_range_indices():
    from iwlab.sampling import fetch

    ds = TensorDataset(torch.arange(4.0))
    with pytest.raises(TypeError, match="integer tensor"):
        fetch(ds, torch.tensor([True, False, True, False]))  # used to select items 0 and 2
    with pytest.raises(TypeError, match="integer tensor"):
        fetch(ds, torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"indices\[1\] = -1"):
        fetch(ds, torch.tensor([0, -1]))  # used to return item 3
    with pytest.raises(ValueError, match=r"indices\[0\] = 4"):
        fetch(ListDataset(torch.arange(4.0), torch.arange(4)), torch.tensor([4]))
    # any integer dtype indexes by position (uint8 used to be read as a mask)
    assert fetch(ds, torch.tensor([3, 1], dtype=torch.uint8))[0].tolist() == [3.0, 1.0]
    assert fetch(ds, torch.tensor([3, 1], dtype=torch.int32))[0].tolist() == [3.0, 1.0]


# -- found by the bad-input hunt after the first hardening pass --------------------------------------


def _ds(n=4, classes=2):
    return TensorDataset(torch.zeros(n, 1), torch.arange(n) % classes)


def test_oracle_tiny_float64_scores_are_not_flushed_to_uniform():
    """Scores of 1e-50 become 0 in float32; they must still set the probabilities: [1, 3, 0, 0] / 4."""
    s = OracleSampler(_ds(), batch_size=4000, presample=None, seed=0)
    b = s.sample(score_fn=lambda x, y: torch.tensor([1e-50, 3e-50, 0.0, 0.0], dtype=torch.float64))
    counts = torch.bincount(b.indices, minlength=4)
    assert counts[2] == 0 and counts[3] == 0
    assert abs(counts[1].item() / 4000 - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)


def test_pcg_variance_of_large_losses_does_not_make_its_checkpoint_unloadable():
    s = PerClassGaussianSampler(_ds(), batch_size=2, presample=None, seed=0)
    s.update(torch.tensor([0, 1, 2, 3]), torch.tensor([0.0, 3e20, 0.0, 3e20]))
    assert math.isfinite(float(s.class_var_.max()))
    t = PerClassGaussianSampler(_ds(), batch_size=2, presample=None, seed=0)
    t.load_state_dict(s.state_dict())
    assert torch.equal(t.class_var_, s.class_var_) and torch.equal(t.class_mean_, s.class_mean_)


def test_batch_size_beyond_the_pool_limit_is_refused_instead_of_looping():
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 16777216\], got 1099511627776"):
        UniformSampler(_ds(20), batch_size=2**40)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64, torch.int32])
def test_integer_scores_and_losses_of_any_width_are_read(dtype):
    s = OracleSampler(_ds(), batch_size=400, presample=None, seed=0)
    b = s.sample(score_fn=lambda x, y: torch.tensor([0, 1, 0, 3]).to(dtype))
    assert set(b.indices.tolist()) <= {1, 3}
    p = PerClassGaussianSampler(_ds(), batch_size=2, presample=None, seed=0)
    p.update(torch.tensor([0, 1]), torch.tensor([2, 4]).to(dtype))
    assert p.class_mean_.tolist() == [2.0, 4.0]


def test_approx_state_with_a_float64_history_is_refused():
    s = ApproxSampler(_ds(), batch_size=2, seed=0)
    state = s.state_dict()
    state["history_"] = state["history_"].double()
    with pytest.raises(ValueError, match="history_' must be float32, got torch.float64"):
        ApproxSampler(_ds(), batch_size=2, seed=0).load_state_dict(state)


def test_negative_sampler_seed_is_refused_not_wrapped():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\), got -1"):
        UniformSampler(_ds(), batch_size=2, seed=-1)


def test_total_variation_of_an_empty_distribution_is_an_error():
    with pytest.raises(ValueError, match="probs must be a non-empty 1-D tensor"):
        total_variation_to_uniform(torch.zeros(0))
