"""draw above torch.multinomial's 2^24-category limit (two stages, exact), and unchanged below it."""

import math

import pytest
import torch
from scipy.stats import chi2

from iwlab.functional.sampling import MULTINOMIAL_MAX_CATEGORIES, draw

N = 2**24 + 1  # one past torch.multinomial's limit


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [5, 1000, MULTINOMIAL_MAX_CATEGORIES])
def test_draw_up_to_2_24_is_torch_multinomial_with_the_same_generator_consumption(size, dtype):
    probs = torch.rand(size, generator=_gen(size), dtype=dtype)
    g1, g2 = _gen(3), _gen(3)
    got = draw(probs, 64, g1)
    ref = torch.multinomial(probs, 64, replacement=True, generator=g2)
    assert torch.equal(got, ref)
    assert torch.equal(g1.get_state(), g2.get_state())  # the next draws are the same too


def test_draw_past_2_24_all_mass_on_the_last_index_gives_only_it():
    probs = torch.zeros(N)
    probs[-1] = 0.5  # need not be normalized
    idx = draw(probs, 1000, _gen(0))
    assert idx.dtype == torch.long and idx.shape == (1000,)
    assert idx.eq(N - 1).all()


def test_draw_past_2_24_two_point_mass_is_binomial():
    probs = torch.zeros(N, dtype=torch.float64)
    probs[0], probs[-1] = 0.3, 0.7
    num = 100_000
    idx = draw(probs, num, _gen(1))
    assert set(idx.unique().tolist()) == {0, N - 1}
    freq = float(idx.eq(N - 1).double().mean())
    se = math.sqrt(0.7 * 0.3 / num)
    assert abs(freq - 0.7) < 5 * se


def test_draw_past_2_24_follows_the_mass_of_a_coarse_partition():
    probs = torch.rand(N, generator=_gen(2))  # float32 mass on every index
    num = 200_000
    idx = draw(probs, num, _gen(3))
    assert int(idx.min()) >= 0 and int(idx.max()) < N
    cells = 16
    edges = torch.linspace(0, N, cells + 1).round().long()
    mass = torch.stack([probs[a:b].double().sum() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    expected = num * mass / mass.sum()
    observed = torch.bucketize(idx, edges[1:-1], right=True).bincount(minlength=cells).double()
    stat = float(((observed - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-6, cells - 1), stat


def test_draw_past_2_24_within_block_probabilities_are_exact():
    # mass on 9 indices straddling the last block boundary (2^24): both stages matter
    probs = torch.zeros(N, dtype=torch.float64)
    where = torch.arange(N - 9, N)
    probs[where] = torch.arange(1.0, 10.0, dtype=torch.float64)
    num = 90_000
    idx = draw(probs, num, _gen(4))
    assert bool(((idx >= N - 9) & (idx < N)).all())
    observed = (idx - (N - 9)).bincount(minlength=9).double()
    expected = num * probs[where] / probs[where].sum()
    stat = float(((observed - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-6, 8), stat


def test_draw_past_2_24_is_seeded():
    probs = torch.rand(N, generator=_gen(5))
    a = draw(probs, 50, _gen(6))
    assert torch.equal(a, draw(probs, 50, _gen(6)))
    assert not torch.equal(a, draw(probs, 50, _gen(7)))
