"""Importance samplers under DDP (gloo, 2 CPU processes): a stream per rank, learned state all-gathered, resume."""

import torch
from gloo_ranks import run_ranks
from torch.utils.data import TensorDataset

from iwlab.sampling import ApproxSampler, ImportanceBatchSampler, PerClassGaussianSampler

N, B = 200, 8


def _dataset():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(N, 3, generator=g), torch.randint(0, 4, (N,), generator=g))


def _make(method):
    ds = _dataset()
    cls = ApproxSampler if method == "approx" else PerClassGaussianSampler
    # the same seed on every rank: the batch sampler derives each rank's own stream from it
    return ImportanceBatchSampler(cls(ds, batch_size=B, seed=4), num_batches=10), ds


def _steps(bs, ds, n):
    """n training-free steps (losses a fixed function of the example); the batches' indices and weights."""
    out = []
    it = iter(bs.loader())  # no workers: the ranks are daemon processes, which cannot start any
    for _ in range(n):
        b = next(it)
        bs.update(b.indices, ds.tensors[0][b.indices].pow(2).sum(1))
        out.append((b.indices.clone(), b.weights.clone()))
    return out


def _ranks_check(rank, world, method):
    bs, ds = _make(method)
    assert bs.rank == rank and bs.num_replicas == world and bs.sync  # read from torch.distributed
    full = _steps(bs, ds, 8)
    s = bs.sampler
    if method == "approx":
        learned = [s.history_, s.lengths_, *[p.detach() for p in s.predictor.parameters()]]
    else:
        learned = [s.class_mean_, s.class_var_, s.class_seen_]
    # resume: stop after 3 steps (state_dict), continue in a fresh sampler; 5 more steps
    first, ds2 = _make(method)
    _steps(first, ds2, 3)
    state = first.state_dict()
    resumed, _ = _make(method)
    resumed.load_state_dict(state)
    rest = _steps(resumed, ds2, 5)
    return {"full": full, "learned": learned, "ema": s.ema_loss_, "rest": rest}


def _check(method):
    r0, r1 = run_ranks(_ranks_check, 2, method, timeout=120)
    # each rank draws its own batches
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(r0["full"], r1["full"], strict=True))
    # ... but learns from both ranks' losses: the learned state is the same on every rank
    for a, b in zip(r0["learned"], r1["learned"], strict=True):
        assert torch.equal(a, b)
    assert r0["ema"] == r1["ema"]
    for r in (r0, r1):
        # a resumed run continues with exactly the uninterrupted run's batches, on every rank
        for (i1, w1), (i2, w2) in zip(r["full"][3:], r["rest"], strict=True):
            assert torch.equal(i1, i2) and torch.equal(w1, w2)


def test_approx_under_ddp_ranks_differ_state_is_shared_and_resumes():
    _check("approx")


def test_per_class_gaussian_under_ddp_shares_class_statistics():
    _check("pcg")


def _refusal_on_one_rank(rank, world):
    bs, ds = _make("pcg")
    it = iter(bs.loader())
    b = next(it)
    good = ds.tensors[0][b.indices].pow(2).sum(1)
    bad = good.clone()
    bad[0] = float("nan")
    try:  # rank 1's loss is NaN: both ranks must refuse (no rank left waiting in the gather)
        bs.update(b.indices, bad if rank == 1 else good)
        raised = None
    except ValueError as e:
        raised = str(e)
    seen_after_refusal = bool(bs.sampler.class_seen_.any())
    bs.update(b.indices, good)  # then a valid update goes through on both
    short = None
    try:  # a short losses tensor was zero-padded by the gather before any check
        b2 = next(it)
        bs.update(b2.indices, good[:3] if rank == 0 else ds.tensors[0][b2.indices].pow(2).sum(1))
    except ValueError as e:
        short = str(e)
    # sync gathers over the whole group: a batch sampler that calls itself rank 0 of 1 must not sync
    try:
        ImportanceBatchSampler(PerClassGaussianSampler(ds, batch_size=B), num_replicas=1, rank=0, sync=True)
        mismatch = None
    except ValueError as e:
        mismatch = str(e)
    alone = ImportanceBatchSampler(PerClassGaussianSampler(ds, batch_size=B), num_replicas=1, rank=0).sync
    return raised, seen_after_refusal, bs.sampler.class_mean_.clone(), short, mismatch, alone


def test_a_refusal_on_one_rank_raises_on_every_rank_and_changes_nothing():
    (r0, seen0, m0, s0, x0, a0), (r1, seen1, m1, s1, x1, a1) = run_ranks(_refusal_on_one_rank, 2, timeout=120)
    assert "this batch sampler is rank 0 of 1" in x0 and "rank 0 of 1" in x1 and not a0 and not a1
    assert "finite" in r1 and "rank(s) [1] refused" in r0
    assert not seen0 and not seen1  # nothing learned from the refused step on either rank
    assert torch.equal(m0, m1)
    assert "must match" in s0 and "rank(s) [0] refused" in s1
