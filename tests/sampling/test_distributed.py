"""DistributedWeightedSampler (issue 13): one weighted global draw per epoch, sharded over gloo ranks.

The multi-process checks share one spawn of 2 CPU ranks (``_ddp_checks``, module-scoped fixture); the
rest run in this process with explicit ``num_replicas`` / ``rank``.
"""

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.distributed as dist
from gloo_ranks import RankFailed, run_ranks
from scipy.stats import chisquare
from torch.utils.data import DataLoader

from iwlab.sampling.distributed import DistributedWeightedSampler as DWS

WORLD = 2
W_WITH = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # index 0 has weight 0
NUM_WITH = 20_001  # odd: per_rank = 10_001, one extra draw in total, no repeated index
N_WITHOUT = 1000
RESUME_AT = 3  # batches of 4 done before the checkpoint


def _without_weights():
    w = torch.arange(N_WITHOUT, dtype=torch.float64) % 7  # every 7th weight is 0
    return w


def _ddp_checks(rank, world_size):
    """Everything the 2-rank tests need, from one spawn (each costs seconds of imports)."""
    out = {}

    def gathered(t):
        got = [None] * world_size
        dist.all_gather_object(got, t.tolist())
        return got

    # with replacement; num_replicas and rank from the process group
    s = DWS(W_WITH, NUM_WITH, seed=7)
    out["defaults"] = (s.num_replicas, s.rank, len(s))
    out["with_shard"] = list(s)
    out["with_global"] = gathered(s.global_indices())
    s.set_epoch(1)
    out["with_global_epoch1"] = gathered(s.global_indices())

    # without replacement, 600 of 1000 (142 zero weights)
    s = DWS(_without_weights(), 600, replacement=False, seed=7)
    out["without_shard"] = list(s)
    out["without_global"] = gathered(s.global_indices())

    # resume mid-epoch through a DataLoader (which prefetches nothing with num_workers=0, but the
    # recipe passes consumed= anyway), for both kinds of draw
    for replacement in (True, False):
        key = "resume_with" if replacement else "resume_without"
        w = _without_weights()

        def make(seed=7, w=w, replacement=replacement):
            return DWS(w, 101, replacement=replacement, seed=seed)

        full = make()
        full.set_epoch(2)
        uninterrupted = list(full)
        full.set_epoch(3)
        next_epoch = list(full)

        a = make()
        a.set_epoch(2)
        loader = iter(DataLoader(range(N_WITHOUT), sampler=a, batch_size=4))
        done = [next(loader).tolist() for _ in range(RESUME_AT)]
        state = a.state_dict(consumed=RESUME_AT * 4)

        b = make(seed=0)  # the seed comes from the checkpoint
        b.load_state_dict(state)
        b.set_epoch(2)  # the usual loop calls set_epoch for the resumed epoch too: the resume survives
        rest = [i for batch in DataLoader(range(N_WITHOUT), sampler=b, batch_size=4) for i in batch.tolist()]
        b.set_epoch(3)
        out[key] = {
            "uninterrupted": uninterrupted,
            "done": [i for batch in done for i in batch],
            "rest": rest,
            "next_epoch": next_epoch,
            "resumed_next_epoch": list(b),
        }
    # weights that differ between ranks (e.g. unseeded random ones) are refused on every rank
    # (built alike-or-not without any collective: a sampler built on some ranks only must not block)
    out["differing"] = []
    for make in (
        lambda: DWS(torch.rand(50, generator=torch.Generator().manual_seed(rank)), 20),
        lambda: DWS(torch.ones(8), seed=rank, replacement=False),
        lambda: DWS(torch.ones(8), num_samples=8 - 2 * rank),
    ):
        try:
            make().check_same_on_ranks()
            out["differing"].append(None)
        except ValueError as e:
            out["differing"].append(str(e))
    DWS(torch.ones(8), seed=3).check_same_on_ranks()  # built alike: passes
    return out


@pytest.fixture(scope="module")
def ranks():
    return run_ranks(_ddp_checks, WORLD, timeout=120)


# -- two gloo ranks ------------------------------------------------------------------------------


def test_weights_that_differ_between_ranks_are_refused_on_every_rank(ranks):
    # fresh-clone trial (issue 13): unseeded torch.rand weights silently gave overlapping shards
    for r in ranks:
        weights, seed, size = r["differing"]
        assert "weights differs between ranks (rank(s) [1]" in weights
        assert seed.startswith("seed differs") and size.startswith("num_samples differs")


def test_ranks_take_their_defaults_from_the_process_group(ranks):
    per_rank = math.ceil(NUM_WITH / WORLD)
    assert [r["defaults"] for r in ranks] == [(WORLD, 0, per_rank), (WORLD, 1, per_rank)]


def test_every_rank_computes_the_same_global_draw_and_epochs_differ(ranks):
    for key in ("with_global", "without_global", "with_global_epoch1"):
        draws = [g for r in ranks for g in r[key]]  # every rank's view of every rank's draw
        assert all(d == draws[0] for d in draws), key
    assert ranks[0]["with_global"][0] != ranks[0]["with_global_epoch1"][0]
    # each rank's shard is its slice r::R of the global draw
    for r, res in enumerate(ranks):
        assert res["with_shard"] == res["with_global"][0][r::WORLD]
        assert res["without_shard"] == res["without_global"][0][r::WORLD]


def test_union_of_the_shards_with_replacement_follows_the_weights(ranks):
    union = ranks[0]["with_shard"] + ranks[1]["with_shard"]
    assert len(union) == 2 * math.ceil(NUM_WITH / WORLD)
    counts = Counter(union)
    assert counts[0] == 0  # weight 0: never drawn
    w = np.array(W_WITH[1:])
    observed = np.array([counts[i] for i in range(1, len(W_WITH))])
    expected = len(union) * w / w.sum()
    assert chisquare(observed, expected).pvalue > 1e-3


def test_without_replacement_no_index_is_on_two_ranks_and_none_repeats(ranks):
    a, b = ranks[0]["without_shard"], ranks[1]["without_shard"]
    assert len(a) == len(b) == 300
    assert not set(a) & set(b)
    union = a + b
    assert len(set(union)) == len(union) == 600
    w = _without_weights()
    assert bool((w[torch.tensor(union)] > 0).all())


@pytest.mark.parametrize("key", ["resume_with", "resume_without"])
def test_resume_mid_epoch_yields_exactly_the_rest_of_each_ranks_shard(ranks, key):
    for res in ranks:
        r = res[key]
        assert len(r["uninterrupted"]) == 51  # ceil(101 / 2)
        assert r["done"] == r["uninterrupted"][: RESUME_AT * 4]
        assert r["rest"] == r["uninterrupted"][RESUME_AT * 4 :]
        assert r["resumed_next_epoch"] == r["next_epoch"]  # then a fresh epoch
    # the two ranks' shards of the resumed epoch are still disjoint without replacement
    if key == "resume_without":
        assert not set(ranks[0][key]["uninterrupted"]) & set(ranks[1][key]["uninterrupted"])


def _rank_one_fails(rank, world_size):
    if rank == 1:
        raise KeyError("rank one broke")
    dist.barrier()  # rank 0 waits for a peer that never comes: the harness must not hang


def test_harness_reraises_a_ranks_failure_with_its_traceback_without_hanging():
    with pytest.raises(RankFailed, match=r"(?s)rank 1 .*KeyError: 'rank one broke'"):
        run_ranks(_rank_one_fails, WORLD, timeout=60)


# -- one process ---------------------------------------------------------------------------------


def test_len_is_ceil_num_samples_over_replicas_and_shards_tile_the_global_draw():
    shards = [DWS([1.0, 2.0, 3.0], 10, num_replicas=3, rank=r, seed=1) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    glob = shards[0].global_indices()
    assert glob.shape == (12,) and glob.dtype == torch.int64
    interleaved = torch.stack([torch.tensor(list(s)) for s in shards], 1).reshape(-1)  # (12,)
    assert torch.equal(interleaved, glob)


def test_defaults_without_a_process_group_are_one_replica_rank_zero_and_num_samples_n():
    s = DWS(torch.ones(5))
    assert (s.num_replicas, s.rank, s.num_samples, len(s)) == (1, 0, 5, 5)


def test_same_seed_and_epoch_give_the_same_draw_and_others_differ():
    w = torch.rand(50, generator=torch.Generator().manual_seed(0))
    for replacement in (True, False):
        kw = {"num_samples": 20, "replacement": replacement}
        a, b = DWS(w, seed=1, **kw), DWS(w, seed=1, **kw)
        assert list(a) == list(b) == list(a)  # an epoch repeats until set_epoch
        draws = set()
        for seed, epoch in [(1, 0), (1, 1), (2, 0), (0, 1), (1, 2)]:  # (0, 1) vs (1, 0): no seed+epoch alias
            s = DWS(w, seed=seed, **kw)
            s.set_epoch(epoch)
            draws.add(tuple(s))
        assert len(draws) == 5


def test_zero_weights_are_never_drawn_and_without_replacement_can_take_every_positive_one():
    w = torch.tensor([0.0, 1e-320, 0.0, 5.0, 0.0], dtype=torch.float64)  # 1 / 1e-320 overflows: still drawn
    s = DWS(w, 2000, seed=0)
    assert set(s) == {1, 3} or set(s) == {3}
    s = DWS(w, 2, replacement=False, num_replicas=2, rank=0)
    both = list(s) + list(DWS(w, 2, replacement=False, num_replicas=2, rank=1))
    assert sorted(both) == [1, 3]


def test_weights_are_copied_and_any_real_dtype_or_sequence_is_accepted():
    w = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    s = DWS(w, 50)
    w[1] = 1e9  # a later change of the caller's tensor does not reach the sampler
    assert 1 not in set(s)
    ref = list(DWS([1, 0, 1], 50))  # integer list
    assert list(DWS(np.array([1, 0, 1]), 50)) == ref
    assert list(DWS(torch.tensor([1, 0, 1], dtype=torch.int32), 50)) == ref
    assert list(DWS(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float16), 50)) == ref


def test_without_replacement_is_successive_weighted_sampling():
    # ordered pairs (i, j) of a 2-of-4 draw: P = p_i * p_j / (1 - p_i) (hand formula), over epochs
    w = [1.0, 2.0, 3.0, 4.0]
    p = np.array(w) / sum(w)
    s = DWS(w, 2, replacement=False, seed=3)
    epochs = 6000
    counts = Counter()
    for e in range(epochs):
        s.set_epoch(e)
        counts[tuple(s)] += 1
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    observed = np.array([counts[ij] for ij in pairs])
    assert observed.sum() == epochs
    expected = epochs * np.array([p[i] * p[j] / (1 - p[i]) for i, j in pairs])
    assert chisquare(observed, expected).pvalue > 1e-3


BIG = 2**24 + 3  # past torch.multinomial's 2^24 categories


def test_more_than_2_24_examples_with_and_without_replacement():
    w = torch.zeros(BIG)
    far = [3, BIG - 2, BIG - 1]
    w[torch.tensor(far)] = torch.tensor([1.0, 2.0, 5.0])
    # with replacement: only the positive weights, in proportion
    union = [i for r in range(2) for i in DWS(w, 4000, num_replicas=2, rank=r, seed=0)]
    counts = Counter(union)
    assert set(counts) <= set(far)
    assert chisquare([counts[i] for i in far], [4000 * 1 / 8, 4000 * 2 / 8, 4000 * 5 / 8]).pvalue > 1e-3
    # without replacement: all three positive ones, once each; a fourth does not exist
    assert sorted(DWS(w, 3, replacement=False, seed=0)) == far
    with pytest.raises(ValueError, match="num_samples=3 needs 4 distinct"):
        DWS(w, 3, replacement=False, num_replicas=2, rank=0)
    # dense weights: distinct across ranks and in range
    w = torch.rand(BIG, generator=torch.Generator().manual_seed(1))
    shards = [list(DWS(w, 1000, replacement=False, num_replicas=2, rank=r, seed=0)) for r in range(2)]
    union = shards[0] + shards[1]
    assert len(set(union)) == 1000 and 0 <= min(union) and max(union) < BIG


# -- resume and checkpoints, one process ---------------------------------------------------------


def test_resume_from_the_iterators_own_count_and_set_epoch_semantics():
    w = torch.arange(1.0, 21.0)
    a = DWS(w, 20, replacement=False, num_replicas=2, rank=1, seed=4)
    a.set_epoch(5)
    it = iter(a)
    head = [next(it) for _ in range(4)]
    state = a.state_dict()
    assert state["consumed"] == 4 and state["epoch"] == 5 and state["n"] == 20
    b = DWS(w, 20, replacement=False, num_replicas=2, rank=1)
    b.load_state_dict(state)
    assert b.state_dict()["consumed"] == 4  # before iterating, the loaded position
    tail = list(b)
    assert head + tail == list(a)
    assert list(b) == list(a)  # the resume applied to one iterator; the epoch then repeats in full
    b.load_state_dict(state)
    b.set_epoch(6)  # another epoch drops the resume
    a.set_epoch(6)
    assert list(b) == list(a)
    b.load_state_dict({**state, "consumed": 10})  # the whole shard used: nothing left
    assert list(b) == []


def _state():
    return DWS([1.0, 2.0, 3.0], 6, num_replicas=2, rank=1, seed=2).state_dict()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"n": 4}, "'n' is 4"),
        ({"num_replicas": 3}, "'num_replicas' is 3"),
        ({"rank": 0}, "'rank' is 0"),
        ({"replacement": False}, "'replacement' is False"),
        ({"num_samples": 8}, "'num_samples' is 8"),
        ({"consumed": 4}, "'consumed' is 4"),
        ({"consumed": -1}, "'consumed' is -1"),
        ({"consumed": 1.5}, "'consumed'"),
        ({"epoch": -1}, "'epoch' must be >= 0"),
        ({"seed": -1}, "'seed' must be in"),
        ({"seed": "1"}, "'seed'"),
        ({"replacement": 1}, "'replacement' must be True or False"),
        ({"method": "uniform"}, "'method'"),
        ({"rank": None}, "'rank'"),
    ],
)
def test_load_state_dict_refuses_a_field_that_does_not_fit_and_changes_nothing(change, match):
    s = DWS([1.0, 2.0, 3.0], 6, num_replicas=2, rank=1, seed=9)
    before = s.state_dict()
    with pytest.raises(ValueError, match=match):
        s.load_state_dict({**_state(), **change})
    assert s.state_dict() == before


def test_load_state_dict_refuses_a_missing_field_or_a_non_dict():
    s = DWS([1.0, 2.0, 3.0], 6, num_replicas=2, rank=1)
    state = _state()
    del state["consumed"]
    with pytest.raises(ValueError, match="lacks field.*consumed"):
        s.load_state_dict(state)
    with pytest.raises(TypeError, match="state must be a dict"):
        s.load_state_dict([1])


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, kw, err, match",
    [
        ([1.0, -1.0], {}, ValueError, r"weights\[1\] = -1.0"),
        ([1.0, float("nan")], {}, ValueError, r"weights\[1\] = nan"),
        ([float("inf"), 1.0], {}, ValueError, r"weights\[0\] = inf"),
        ([0.0, 0.0], {}, ValueError, "all zero"),
        ([], {}, ValueError, "non-empty 1-D"),
        ([[1.0, 2.0]], {}, ValueError, "non-empty 1-D"),
        (torch.tensor([True, False]), {}, TypeError, "real numbers"),
        (torch.tensor([1 + 1j]), {}, TypeError, "real numbers"),
        (["a", "b"], {}, TypeError, "weights must be"),
        ([1.0, 2.0], {"num_samples": 0}, ValueError, "num_samples must be an integer >= 1"),
        ([1.0, 2.0], {"num_samples": 2.5}, TypeError, "num_samples"),
        ([1.0, 2.0], {"num_samples": True}, TypeError, "num_samples"),
        ([1.0, 2.0], {"num_replicas": 0}, ValueError, "num_replicas must be an integer >= 1"),
        ([1.0, 2.0], {"num_replicas": 2, "rank": 2}, ValueError, r"rank must be in \[0, num_replicas\)"),
        ([1.0, 2.0], {"num_replicas": 2, "rank": -1}, ValueError, "rank must be in"),
        ([1.0, 2.0], {"rank": 1}, ValueError, "rank must be in"),  # no process group: one replica
        ([1.0, 2.0], {"replacement": "no"}, TypeError, "replacement must be True or False"),
        ([1.0, 2.0], {"seed": -1}, ValueError, "seed"),
        ([1.0, 2.0], {"seed": 1.5}, TypeError, "seed"),
        ([1.0, 0.0, 2.0], {"replacement": False}, ValueError, "num_samples=3 needs 3 distinct.*num_samples <= 2"),
        ([1.0, 2.0, 3.0], {"replacement": False, "num_replicas": 2, "rank": 0}, ValueError, "num_samples <= 2"),
    ],
)
def test_bad_arguments_raise_naming_them(weights, kw, err, match):
    with pytest.raises(err, match=match):
        DWS(weights, **kw)


def test_set_epoch_and_state_dict_validate_their_arguments():
    s = DWS([1.0, 2.0], 4)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        s.set_epoch(-1)
    with pytest.raises(TypeError, match="epoch"):
        s.set_epoch(1.0)
    with pytest.raises(ValueError, match=r"consumed must be in \[0, per_rank\] = \[0, 4\]"):
        s.state_dict(consumed=5)
    with pytest.raises(TypeError, match="consumed"):
        s.state_dict(consumed=True)


def test_resume_with_other_weights_of_the_same_length_is_refused():
    a = DWS([1.0, 2.0, 3.0], num_samples=6, seed=3)
    b = DWS([3.0, 2.0, 1.0], num_samples=6, seed=3)
    with pytest.raises(ValueError, match="weights_digest"):
        b.load_state_dict(a.state_dict())
    # the same weights (another tensor) load
    DWS(torch.tensor([1.0, 2.0, 3.0]), num_samples=6).load_state_dict(a.state_dict())


def test_sequence_weights_are_read_in_float64_not_float32():
    # hunt (issue 13): a list went through float32, so 1e-50 became 0 (never drawn) and 1e39 became inf
    s = DWS([1.0, 1e-50], num_samples=2, replacement=False)
    assert sorted(s) == [0, 1]
    assert DWS([1e39, 1.0], num_samples=2).weights[0].item() == 1e39
    same = DWS(torch.tensor([1.0, 1e-50], dtype=torch.float64), num_samples=2, replacement=False)
    same.load_state_dict(s.state_dict())  # a list and a float64 tensor of the same values: the same digest
    with pytest.raises(TypeError, match="bools"):
        DWS([True, False])
    with pytest.raises(ValueError, match="at most 2\\*\\*40"):
        DWS([1.0, 2.0], num_samples=2**41)
