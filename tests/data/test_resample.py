"""iwlab.data.resample: class proportions, seeding and errors of the resampling alternatives."""

import pytest
import torch

from iwlab.data.resample import kept_count, oversample_class, subsample_class, weighted_sampler_indices


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _labels(n0=512, n1=512, n2=0):
    y = torch.cat([torch.zeros(n0), torch.ones(n1), torch.full((n2,), 2)]).long()
    return y[torch.randperm(y.numel(), generator=_gen(123))]


# -- kept_count: the one rounding rule of every sub-sampler ----------------------------------------


@pytest.mark.parametrize("n, fraction, kept", [(100, 1 / 8, 13), (5, 0.5, 3), (7, 0.5, 4), (20, 0.5, 10), (3, 0.1, 0)])
def test_kept_count_rounds_halves_up(n, fraction, kept):
    assert kept_count(n, fraction) == kept


def test_kept_count_agrees_with_subsample_class():
    y = torch.tensor([0] * 4 + [1] * 100)
    assert torch.bincount(y[subsample_class(y, 1, 1 / 8, _gen())]).tolist() == [4, kept_count(100, 1 / 8)]


@pytest.mark.parametrize("n, fraction", [(10, 0.0), (10, 1.5), (10, float("nan")), (-1, 0.5), (2.5, 0.5), (True, 0.5)])
def test_kept_count_refuses_bad_values(n, fraction):
    with pytest.raises(ValueError):
        kept_count(n, fraction)


# -- subsample_class -------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction, kept", [(1.0, 512), (0.5, 256), (1 / 256, 2), (0.3, 154)])
def test_subsample_proportions(fraction, kept):
    y = _labels()
    idx = subsample_class(y, 1, fraction, _gen())
    counts = torch.bincount(y[idx], minlength=2).tolist()
    assert counts == [512, kept]
    assert idx.dtype == torch.long
    assert torch.equal(idx, idx.sort().values) and idx.unique().numel() == idx.numel()
    # every example of the other class is kept, in order
    assert torch.equal(idx[y[idx] == 0], (y == 0).nonzero().squeeze(1))


def test_subsample_seeding():
    y = _labels()
    a = subsample_class(y, 0, 0.25, _gen(1))
    assert torch.equal(a, subsample_class(y, 0, 0.25, _gen(1)))
    assert not torch.equal(a, subsample_class(y, 0, 0.25, _gen(2)))


def test_subsample_multiclass_only_touches_cls():
    y = _labels(100, 100, 100)
    idx = subsample_class(y, 2, 0.1, _gen())
    assert torch.bincount(y[idx]).tolist() == [100, 100, 10]


def test_subsample_errors():
    y = _labels(10, 10)
    with pytest.raises(ValueError, match=r"class 1 would be left empty by subsampling \(n=10, fraction=0.01\)"):
        subsample_class(y, 1, 0.01, _gen())
    with pytest.raises(ValueError, match=r"class 5 would be left empty by subsampling \(n=0"):
        subsample_class(y, 5, 0.5, _gen())
    for bad in (0, -0.5, 1.5, float("nan"), "half", None):
        with pytest.raises(ValueError, match="fraction must be in"):
            subsample_class(y, 1, bad, _gen())
    with pytest.raises(ValueError, match="1-D integer tensor"):
        subsample_class(y.float(), 1, 0.5, _gen())


# -- oversample_class ------------------------------------------------------------------------------


@pytest.mark.parametrize("factor, n1", [(1, 50), (2, 100), (4, 200), (2.5, 125), (1.02, 51)])
def test_oversample_proportions(factor, n1):
    y = _labels(100, 50)
    idx = oversample_class(y, 1, factor, _gen())
    assert torch.bincount(y[idx], minlength=2).tolist() == [100, n1]
    assert torch.equal(idx, idx.sort().values)
    # every example appears; class-0 examples exactly once
    assert torch.equal(idx.unique(), torch.arange(150))
    assert torch.bincount(idx, minlength=150)[y == 0].eq(1).all()
    reps = torch.bincount(idx, minlength=150)[y == 1]
    assert int(reps.min()) >= int(factor) and int(reps.max()) <= int(factor) + 1


def test_oversample_seeding():
    y = _labels(100, 50)
    a = oversample_class(y, 1, 1.5, _gen(3))
    assert torch.equal(a, oversample_class(y, 1, 1.5, _gen(3)))
    assert not torch.equal(a, oversample_class(y, 1, 1.5, _gen(4)))


def test_oversample_errors():
    y = _labels(10, 10)
    for bad in (0.5, 0, -1, float("inf"), float("nan"), "2"):
        with pytest.raises(ValueError, match="factor must be a finite number >= 1"):
            oversample_class(y, 1, bad, _gen())
    with pytest.raises(ValueError, match="class 3 has no examples to oversample"):
        oversample_class(y, 3, 2, _gen())


# -- weighted_sampler_indices ----------------------------------------------------------------------


def test_weighted_sampler_proportions():
    w = torch.tensor([1.0, 0.0, 3.0, 4.0])
    idx = weighted_sampler_indices(w, 40_000, _gen())
    assert idx.shape == (40_000,) and idx.dtype == torch.long
    freq = torch.bincount(idx, minlength=4).double() / idx.numel()
    assert freq[1] == 0
    assert torch.allclose(freq, (w / w.sum()).double(), atol=0.01)


def test_weighted_sampler_class_weights_match_expected_class_mix():
    # per-example weights from class weights (1, 1/4): class 1 drawn 1/5 as often as class 0
    y = _labels(500, 500)
    w = torch.where(y == 1, 0.25, 1.0)
    idx = weighted_sampler_indices(w, 20_000, _gen(5))
    frac1 = (y[idx] == 1).double().mean().item()
    assert abs(frac1 - 0.2) < 0.015


def test_weighted_sampler_seeding_and_zero_n():
    w = torch.rand(20, generator=_gen(0))
    a = weighted_sampler_indices(w, 100, _gen(7))
    assert torch.equal(a, weighted_sampler_indices(w, 100, _gen(7)))
    assert not torch.equal(a, weighted_sampler_indices(w, 100, _gen(8)))
    assert weighted_sampler_indices(w, 0, _gen()).numel() == 0


@pytest.mark.parametrize(
    "w, msg",
    [
        (torch.tensor([1.0, -1.0]), "negative entry"),
        (torch.tensor([1.0, float("nan")]), "NaN entry"),
        (torch.tensor([1.0, float("inf")]), "infinite entry"),
        (torch.zeros(3), "all zeros"),
        (torch.ones(2, 2), "1-D tensor"),
        (torch.ones(0), "empty"),
    ],
)
def test_weighted_sampler_errors(w, msg):
    with pytest.raises(ValueError, match=msg) as e:
        weighted_sampler_indices(w, 10, _gen())
    assert "\n" not in str(e.value)


def test_weighted_sampler_bad_n():
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        weighted_sampler_indices(torch.ones(3), -1, _gen())


# -- issue 10: integer-like n, more than 2^24 examples, huge weights -------------------------------


def test_weighted_sampler_is_torch_multinomial_below_2_24():
    w = torch.rand(1000, generator=_gen(0))
    ref = torch.multinomial(w.double(), 300, replacement=True, generator=_gen(9))
    assert torch.equal(weighted_sampler_indices(w, 300, _gen(9)), ref)


def test_weighted_sampler_accepts_integer_like_n_and_refuses_bool_and_float():
    np = pytest.importorskip("numpy")
    w = torch.tensor([1.0, 3.0])
    ref = weighted_sampler_indices(w, 7, _gen(1))
    for n in (np.int64(7), np.int32(7), torch.tensor(7)):
        assert torch.equal(weighted_sampler_indices(w, n, _gen(1)), ref)
    for bad in (True, 7.0):
        with pytest.raises(TypeError, match="n must be an int"):
            weighted_sampler_indices(w, bad, _gen())


def test_weighted_sampler_more_than_2_24_examples():
    n = 2**24 + 1
    w = torch.zeros(n)
    w[0], w[-1] = 1.0, 3.0
    idx = weighted_sampler_indices(w, 40_000, _gen(2))
    assert set(idx.unique().tolist()) == {0, n - 1}
    freq = float(idx.eq(n - 1).double().mean())
    assert abs(freq - 0.75) < 5 * (0.75 * 0.25 / 40_000) ** 0.5


def test_weighted_sampler_weights_whose_float64_sum_overflows():
    w = torch.tensor([1e308, 1e308, 0.0], dtype=torch.float64)
    idx = weighted_sampler_indices(w, 20_000, _gen(3))
    counts = torch.bincount(idx, minlength=3)
    assert counts[2] == 0
    assert abs(float(counts[0]) / 20_000 - 0.5) < 5 * (0.25 / 20_000) ** 0.5


def test_subsample_and_oversample_refuse_a_bool_or_float_class():
    y = _labels(10, 10)
    for bad in (True, 1.0):
        with pytest.raises(TypeError, match="cls must be an integer"):
            subsample_class(y, bad, 0.5, _gen())
        with pytest.raises(TypeError, match="cls must be an integer"):
            oversample_class(y, bad, 2, _gen())
    np = pytest.importorskip("numpy")
    assert torch.equal(subsample_class(y, np.int64(1), 0.5, _gen(4)), subsample_class(y, 1, 0.5, _gen(4)))


def test_class_outside_the_label_dtype_is_not_wrapped_onto_another_class():
    """In uint8, class 256 == 0: the old comparison halved (or tripled) class 0."""
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="class 256 would be left empty"):
        subsample_class(y, 256, 0.5, g)
    with pytest.raises(ValueError, match="class 256 has no examples"):
        oversample_class(y, 256, 3, g)
    assert torch.equal(subsample_class(y, 1, 0.5, g).sort().values[:4], torch.arange(4))  # class 0 kept whole
