"""ImportanceBatchSampler, WeightedDataset, ImportanceCollate and the pool pattern (``select``) inside a DataLoader."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from iwlab.sampling import (
    ApproxSampler,
    ImportanceBatchSampler,
    ImportanceCollate,
    IndexedDataset,
    OracleSampler,
    PerClassGaussianSampler,
    UniformSampler,
    WeightedDataset,
    WeightedIndex,
)
from iwlab.sampling.batch import WeightedItem, pool_length, take
from iwlab.sampling.collectives import stream_seed

N, D, C = 240, 4, 3


def _tensor_set(seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g))


class ListDataset(Dataset):
    """Map-style, not tensor-backed: items are (list of floats, int label, the item's own index)."""

    def __init__(self, base):
        self.rows = [(base.tensors[0][i].tolist(), int(base.tensors[1][i])) for i in range(len(base))]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        x, y = self.rows[i]
        return torch.tensor(x), y, i


SAMPLERS = {
    "uniform": lambda ds: UniformSampler(ds, batch_size=12, seed=1),
    "approx": lambda ds: ApproxSampler(ds, batch_size=12, seed=1, labels=_tensor_set().tensors[1], presample=3.0),
    "pcg": lambda ds: PerClassGaussianSampler(ds, batch_size=12, seed=1, labels=_tensor_set().tensors[1]),
}


@pytest.mark.parametrize("kind", ["tensor", "list"])
@pytest.mark.parametrize("method", ["approx", "pcg"])
def test_trains_50_steps_with_two_workers_and_weights_reach_loss_and_update(kind, method):
    base = _tensor_set()
    ds = base if kind == "tensor" else ListDataset(base)
    bs = ImportanceBatchSampler(SAMPLERS[method](ds), num_batches=25)
    torch.manual_seed(0)
    model = torch.nn.Linear(D, C)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    steps = 0
    # the DataLoader spelled out for the map-style dataset (what bs.loader builds for the tensor one)
    if kind == "list":
        loader = DataLoader(WeightedDataset(ds), batch_sampler=bs, collate_fn=ImportanceCollate(), num_workers=2)
    else:
        loader = bs.loader(num_workers=2)
    for _ in range(2):  # 2 epochs of 25 batches
        for b in loader:
            x, y = b.data[0], b.data[1]
            if kind == "list":  # the item carries its own index: the batch's indices are the items'
                assert torch.equal(b.data[2], b.indices)
            else:
                assert torch.equal(x, base.tensors[0][b.indices])
            # the weights are the sampler's 1/(P p^k), for the pool of presample * B examples
            P = bs.sampler.pool_size
            torch.testing.assert_close(
                b.weights.double(), 1.0 / (P * b.probs.double() ** bs.sampler.k), rtol=1e-6, atol=0
            )
            losses = F.cross_entropy(model(x), y, reduction="none")
            (b.weights * losses).mean().backward()
            opt.step()
            opt.zero_grad()
            bs.update(b.indices, losses.detach())
            seen.append(b.indices)
            steps += 1
    assert steps == 50 and not bs.pending_
    assert bs.sampler.steps_ == 50
    learned = bs.sampler.lengths_.sum() if method == "approx" else bs.sampler.class_seen_.sum()
    assert int(learned) > 0  # update() reached the sampler


def test_uniform_through_the_batch_sampler_is_a_permutation_per_epoch():
    ds = _tensor_set()
    bs = ImportanceBatchSampler(UniformSampler(ds, batch_size=12, seed=3))  # 20 batches = one pass
    got = []
    for b in bs.loader():
        got.append(b.indices)
        bs.update(b.indices, torch.zeros(12))
    assert sorted(torch.cat(got).tolist()) == list(range(N))
    assert torch.equal(b.weights, torch.ones(12))


def test_k1_weighted_mean_loss_is_unbiased_monte_carlo():
    # fixed per-example "losses"; the pcg sampler's class means make p far from uniform
    ds = _tensor_set()
    y = ds.tensors[1]
    loss = ds.tensors[0].pow(2).sum(1) + 3.0 * (y == 0)  # (N,)
    truth = float(loss.double().mean())
    s = PerClassGaussianSampler(ds, batch_size=16, seed=5, k=1.0, presample=4.0, labels=y)
    s.update(torch.arange(N), loss)  # class means: class 0 scores ~4x the others
    bs = ImportanceBatchSampler(s, num_batches=4000)
    est, drawn = [], []
    for b in bs:
        idx = torch.tensor([e.index for e in b])
        w = torch.tensor([e.weight for e in b], dtype=torch.float64)
        est.append(float((w * loss[idx].double()).mean()))
        drawn.append(idx)
        bs.pending_.popleft()  # no learning: the distribution stays fixed
    est = torch.tensor(est, dtype=torch.float64)
    se = float(est.std() / math.sqrt(est.numel()))
    assert abs(float(est.mean()) - truth) < 4 * se, (float(est.mean()), truth, se)
    # and the draw is far from uniform: class 0 is drawn well above its share of the data
    share = float((y == 0).double().mean())
    assert float((y[torch.cat(drawn)] == 0).double().mean()) > 1.2 * share  # class means ~7 vs ~4


def test_pool_pattern_k1_is_unbiased_monte_carlo_and_keeps_structure():
    torch.manual_seed(0)
    x = torch.randn(N, D)
    loss_of = lambda xb: xb.pow(2).sum(1) + 0.1  # noqa: E731
    truth = float(loss_of(x).double().mean())
    s = OracleSampler(TensorDataset(x), batch_size=8, k=1.0, seed=2)
    loader = DataLoader(
        IndexedDataset(TensorDataset(x)), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    est = []
    for _ in range(60):
        for pool, idx in loader:
            b = s.select(pool, indices=idx, score_fn=loss_of)
            assert torch.equal(b.data[0], x[b.indices])  # the kept rows are the dataset's rows at the indices
            est.append(float((b.weights.double() * loss_of(b.data[0]).double()).mean()))
    est = torch.tensor(est, dtype=torch.float64)
    se = float(est.std() / math.sqrt(est.numel()))
    assert abs(float(est.mean()) - truth) < 4 * se, (float(est.mean()), truth, se)


def test_select_on_dicts_with_strings_and_needs_indices_for_approx():
    pool = {"input": torch.arange(10.0).reshape(5, 2), "label": torch.tensor([0, 1, 0, 1, 0]), "text": list("abcde")}
    s = OracleSampler(_tensor_set(), batch_size=3, seed=0)
    b = s.select(pool, score_fn=lambda p: p["input"].sum(1))
    assert b.data["text"] == [list("abcde")[i] for i in b.indices.tolist()]  # no indices: pool positions
    assert torch.equal(b.data["input"], pool["input"][b.indices])
    a = ApproxSampler(_tensor_set(), batch_size=3, seed=0)
    with pytest.raises(ValueError, match="pass indices"):
        a.select(pool)
    with pytest.raises(ValueError, match="indices has 4 entries but the pool has 5"):
        a.select(pool, indices=torch.arange(4))
    b = a.select(pool, indices=torch.tensor([7, 8, 9, 10, 11]))
    assert set(b.indices.tolist()) <= {7, 8, 9, 10, 11}
    with pytest.raises(ValueError, match="differ in length"):
        s.select((torch.zeros(4, 2), torch.zeros(5)), score_fn=lambda a, b: a.sum(1))
    with pytest.raises(TypeError, match="tuple/list/dict holding them"):
        pool_length(["a", "b"])
    u = UniformSampler(_tensor_set(), batch_size=3)
    b = u.select(pool)
    assert b.data["text"] == ["a", "b", "c"] and torch.equal(b.weights, torch.ones(3))


def test_take_keeps_mapping_and_sequence_types():
    from collections import OrderedDict

    out = take(OrderedDict(a=torch.arange(3), t=("x", "y", "z")), torch.tensor([2, 0]), 3)
    assert isinstance(out, OrderedDict) and out["a"].tolist() == [2, 0] and out["t"] == ("z", "x")


def test_select_cuts_every_per_example_member_or_refuses_it():
    # hunt (issue 13): a tuple of strings (a zip(*batch) collate) and numpy arrays were kept whole (P entries)
    # next to B tensor rows, pairing examples with other examples' data
    s = OracleSampler(_tensor_set(), batch_size=4, seed=0)
    x = torch.arange(6.0)
    b = s.select((x, tuple("abcdef"), np.arange(6) * 10), score_fn=lambda x, t, a: x + 1)
    pos = b.indices.tolist()  # no indices given: pool positions
    assert b.data[1] == tuple("abcdef"[i] for i in pos) and b.data[2].tolist() == [10 * i for i in pos]
    assert torch.equal(b.data[0], x[b.indices])
    with pytest.raises(ValueError, match="could hold members or examples"):  # token lists: ambiguous
        s.select((x, [[1, 2], [3], [4], [5], [6], [7]]), score_fn=lambda x, t: x + 1)
    with pytest.raises(ValueError, match="could hold members or examples"):
        s.select((x, [[0] * 6] * 6), score_fn=lambda x, t: x + 1)
    with pytest.raises(ValueError, match=r"pool member \[1\]\[0\]\['a'\] is a int, not per-example data"):
        s.select((x, [{"a": i} for i in range(6)]), score_fn=lambda x, t: x + 1)
    with pytest.raises(ValueError, match="the pool has 0 examples"):
        UniformSampler(_tensor_set(), batch_size=3).select(torch.zeros(0, 3))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_state_dict_gives_the_uninterrupted_batches(workers):
    base = _tensor_set()
    loss_of = lambda idx: base.tensors[0][idx].pow(2).sum(1)  # noqa: E731  deterministic "losses"

    def run(bs, steps, stop=None):
        got, state = [], None
        it = iter(bs.loader(num_workers=workers))
        for t in range(steps):
            b = next(it)
            bs.update(b.indices, loss_of(b.indices))
            got.append((b.indices, b.weights))
            if stop is not None and t == stop:
                state = bs.state_dict()
                break
        return got, state

    full, _ = run(ImportanceBatchSampler(SAMPLERS["approx"](base), num_batches=30), 20)
    first, state = run(ImportanceBatchSampler(SAMPLERS["approx"](base), num_batches=30), 20, stop=8)
    if workers:
        assert len(state["pending_"]) == 4  # prefetch_factor 2 x 2 workers drawn ahead
    fresh = ImportanceBatchSampler(SAMPLERS["approx"](base), num_batches=30)
    fresh.load_state_dict(state)
    rest, _ = run(fresh, 11)
    for (i1, w1), (i2, w2) in zip(full, first + rest, strict=True):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)


def test_epochs_and_set_epoch():
    ds = _tensor_set()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    a = [list(b) for b in bs]
    for b in a:
        bs.update(torch.tensor([e.index for e in b]), torch.ones(12))
    assert bs.epoch_ == 0 and bs.drawn_ == 3
    b1 = next(iter(bs))  # the epoch is done: the next iterator starts epoch 1
    assert bs.epoch_ == 1
    bs.set_epoch(1)  # the current epoch: no reset, the drawn batch stays pending
    assert len(bs.pending_) == 1 and next(iter(bs)) == b1
    bs.set_epoch(0)  # back to epoch 0: the same stream as the first time
    assert bs.sampler.generator.initial_seed() == stream_seed(1, 0, 0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        bs.set_epoch(-1)


def test_ranks_draw_different_streams_and_world_sets_the_epoch_length():
    ds = _tensor_set()
    b0 = ImportanceBatchSampler(SAMPLERS["pcg"](ds), rank=0, num_replicas=2, sync=False)
    b1 = ImportanceBatchSampler(SAMPLERS["pcg"](ds), rank=1, num_replicas=2, sync=False)
    assert len(b0) == math.ceil(N / (12 * 2))
    assert next(iter(b0)) != next(iter(b1))


def test_bad_inputs_are_refused_with_their_names():
    ds = _tensor_set()
    with pytest.raises(TypeError, match="pool pattern"):
        ImportanceBatchSampler(OracleSampler(ds, batch_size=4))
    with pytest.raises(TypeError, match="ImportanceSampler"):
        ImportanceBatchSampler(object())
    with pytest.raises(ValueError, match="num_batches"):
        ImportanceBatchSampler(UniformSampler(ds, batch_size=4), num_batches=0)
    with pytest.raises(ValueError, match="rank"):
        ImportanceBatchSampler(UniformSampler(ds, batch_size=4), rank=2, num_replicas=2)
    with pytest.raises(TypeError, match="draw indices alone"):
        OracleSampler(ds, batch_size=4).draw_indices()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=2)
    with pytest.raises(ValueError, match="no batch pending"):
        bs.update(torch.tensor([0]), torch.ones(1))
    first = next(iter(bs))
    with pytest.raises(ValueError, match="oldest batch"):
        bs.update(torch.arange(12), torch.ones(12))
    idx = torch.tensor([e.index for e in first])
    with pytest.raises(ValueError, match="finite and >= 0"):
        bs.update(idx, torch.full((12,), float("nan")))
    assert len(bs.pending_) == 1  # the refused update retired nothing
    with pytest.raises(TypeError, match="WeightedIndex"):
        WeightedDataset(ds)[3]
    with pytest.raises(TypeError, match="WeightedItem"):
        ImportanceCollate()([ds[0]])
    state = bs.state_dict()
    other = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    with pytest.raises(ValueError, match="'num_batches' is 2"):
        other.load_state_dict(state)
    bad = {**state, "pending_": [[(N + 5, 1.0, 0.1)] + [tuple(e) for e in state["pending_"][0][1:]]]}
    with pytest.raises(ValueError, match=r"the index must be an integer in \[0, 240\)"):
        bs.load_state_dict(bad)
    with pytest.raises(ValueError, match="lacks field"):
        bs.load_state_dict({"sampler": state["sampler"]})


def test_collate_keeps_exact_weights_and_custom_collate():
    items = [
        WeightedItem({"a": torch.tensor([1.0])}, 3, 0.1234567, 0.5),
        WeightedItem({"a": torch.tensor([2.0])}, 4, 2.0, 0.25),
    ]
    b = ImportanceCollate()(items)
    assert b.indices.tolist() == [3, 4] and b.weights[0].item() == torch.tensor(0.1234567).item()
    assert b.data["a"].shape == (2, 1)
    moved = b.to("cpu")
    assert torch.equal(moved.weights, b.weights)


def test_a_refused_update_can_be_skipped_and_names_the_way_out():
    # hunt (issue 13): one refused update (an inf loss from an overflowed step) left the batch sampler stuck,
    # every later update failing with a misleading message and no way to drop the batch
    ds = _tensor_set()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    it = iter(bs)
    first, second = next(it), next(it)
    i1, i2 = (torch.tensor([e.index for e in b]) for b in (first, second))
    with pytest.raises(ValueError, match="finite"):
        bs.update(i1, torch.full((12,), float("inf")))
    with pytest.raises(ValueError, match="retired with skip"):
        bs.update(i2, torch.ones(12))
    assert bs.skip() == first
    bs.update(i2, torch.ones(12))  # the next batch updates normally
    assert not bs.pending_ and bool(bs.sampler.class_seen_.any())
    with pytest.raises(ValueError, match="no batch pending"):
        bs.skip()


def test_update_checks_losses_before_anything_and_sync_needs_a_group():
    ds = _tensor_set()
    with pytest.raises(ValueError, match="initialized torch.distributed process group"):
        ImportanceBatchSampler(SAMPLERS["pcg"](ds), sync=True)
    with pytest.raises(ValueError, match=r"num_batches must be in \[1, 2\*\*48\]"):
        ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=2**63)
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    idx = torch.tensor([e.index for e in next(iter(bs))])
    for bad, err in [
        (torch.ones(3), ValueError),
        (torch.ones(12, dtype=torch.bool), TypeError),
        ([1.0] * 12, TypeError),
    ]:
        with pytest.raises(err):
            bs.update(idx, bad)
    assert len(bs.pending_) == 1 and not bool(bs.sampler.class_seen_.any())


@pytest.mark.parametrize(
    "entry",
    [(1.7, 1.0, 0.5), (True, 1.0, 0.5), (3, float("nan"), 0.5), (3, 1e300, 0.5), (3, 1.0, float("nan")), (3, 0.0, 0.5)],
    ids=["float-index", "bool-index", "nan-weight", "weight-past-float32", "nan-prob", "zero-weight"],
)
def test_checkpoint_pending_entries_that_no_draw_gives_are_refused(entry):
    # hunt (issue 13): these were loaded and yielded (1.7 read as 1, True as 1, 1e300 became an inf weight)
    ds = _tensor_set()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    next(iter(bs))
    state = bs.state_dict()
    bad = {**state, "pending_": [[entry] + [tuple(e) for e in state["pending_"][0][1:]]]}
    fresh = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    with pytest.raises(ValueError, match="pending_' batch 0 has entry"):
        fresh.load_state_dict(bad)
    with pytest.raises(ValueError, match="batch_size=12"):
        fresh.load_state_dict({**state, "pending_": [state["pending_"][0][:5]]})
    assert fresh.drawn_ == 0 and not fresh.pending_


def test_user_trial_findings():
    # fresh-clone trial (issue 13): each of these gave a bare or misleading error, or served a batch twice
    from torch.utils.data import IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(TypeError, match="ApproxSampler needs a map-style dataset"):
        ApproxSampler(Stream(), batch_size=2)
    with pytest.raises(ValueError, match="PerClassGaussianSampler needs the class of every example"):
        PerClassGaussianSampler(ListDataset(_tensor_set()), batch_size=2)
    ds = _tensor_set()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=3)
    b = next(iter(bs.loader(collate_fn=None)))  # None means default_collate, as for DataLoader
    assert b.data[0].shape == (12, D)
    first, second = iter(bs), iter(bs)
    next(second)
    with pytest.raises(RuntimeError, match="stale: a newer one was started"):
        next(first)
    assert "num_batches=3" in repr(bs) and "PerClassGaussianSampler" in repr(bs)


def test_rehunt_pool_members_and_refusals_leave_state_unchanged():
    # second hunt (issue 13): per-example tensors in a list were cut along their own axis; a named tuple
    # crashed after the draw had moved the generator; numpy-only pools were refused
    from collections import namedtuple

    s = PerClassGaussianSampler(TensorDataset(torch.randn(8, 2), torch.arange(8) % 2), batch_size=2, seed=0)
    seqs = [torch.arange(n) + 10 * j for j, n in enumerate((4, 2, 3, 5))]  # ragged: one per example
    b = s.select({"ids": seqs, "y": torch.tensor([0, 1, 0, 1])}, indices=torch.arange(4))
    assert [t.tolist() for t in b.data["ids"]] == [seqs[i].tolist() for i in b.indices.tolist()]
    square = [torch.arange(4) + 10 * j for j in range(4)]  # 4 sequences of 4: members or examples?
    state = s.generator.get_state()
    with pytest.raises(ValueError, match="could hold members or examples"):
        s.select({"ids": square, "y": torch.tensor([0, 1, 0, 1])}, indices=torch.arange(4))
    Pool = namedtuple("Pool", "x y")
    b = s.select(Pool(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), indices=torch.arange(4))
    assert isinstance(b.data, Pool) and b.data.x.shape == (2, 2)
    assert pool_length(np.zeros((5, 3))) == 5 and pool_length({"a": np.zeros(5)}) == 5
    assert not torch.equal(s.generator.get_state(), state)  # the accepted calls drew
    before = s.generator.get_state()
    with pytest.raises(ValueError):
        s.select({"ids": square, "y": torch.tensor([0, 1, 0, 1])}, indices=torch.arange(4))
    assert torch.equal(s.generator.get_state(), before) and s.steps_ == 2


def test_rehunt_load_state_dict_and_set_epoch_make_a_live_iterator_stale():
    ds = _tensor_set()
    bs = ImportanceBatchSampler(SAMPLERS["pcg"](ds), num_batches=5)
    it = iter(bs)
    next(it)
    state = bs.state_dict()
    bs.load_state_dict(state)
    with pytest.raises(RuntimeError, match="stale"):
        next(it)
    it = iter(bs)
    assert next(it) == [WeightedIndex(*e) for e in state["pending_"][0]]  # a new iterator replays it
    bs.set_epoch(3)
    with pytest.raises(RuntimeError, match="stale"):
        next(it)


def test_a_bare_dataset_behind_the_batch_sampler_fails_naming_the_wrapper():
    # the weighted entries are neither ints nor tuples: a dataset that is not wrapped cannot be indexed by them
    bs = ImportanceBatchSampler(UniformSampler(_tensor_set(), batch_size=4), num_batches=2)
    with pytest.raises(IndexError, match="got WeightedIndex"):
        next(iter(DataLoader(_tensor_set(), batch_sampler=bs)))
    with pytest.raises(TypeError, match="wrap the dataset in iwlab.sampling.WeightedDataset"):
        next(iter(DataLoader(list(range(N)), batch_sampler=bs)))
    import pickle

    e = WeightedIndex(3, 0.5, 0.25)
    assert pickle.loads(pickle.dumps(e)) == e and tuple(e) == (3, 0.5, 0.25)


def test_bad_inputs_of_the_small_public_helpers():
    from iwlab.sampling import DistributedWeightedSampler

    s = UniformSampler(_tensor_set(), batch_size=4)
    order = s.order_.clone()
    with pytest.raises(ValueError, match="seed"):
        s.reseed(-1)  # torch would wrap -1 to 2**64 - 1 silently
    assert torch.equal(s.order_, order)  # refused: the stream is unchanged
    with pytest.raises(RuntimeError, match="needs a process group of num_replicas ranks"):
        DistributedWeightedSampler([1.0, 2.0], num_replicas=2, rank=0).check_same_on_ranks()
    DistributedWeightedSampler([1.0, 2.0]).check_same_on_ranks()  # one rank: nothing to compare
    with pytest.raises(IndexError):
        IndexedDataset(_tensor_set())[N]  # the wrapped dataset's own error, not a wrong item
    with pytest.raises(TypeError, match="tensor or array"):
        pool_length({"text": ["a", "b"]})
