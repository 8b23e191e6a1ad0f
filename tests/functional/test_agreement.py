"""iwlab.functional.agreement: the permutation null of Byrd & Lipton's agreement gap (issue 17).

References: :func:`iwlab.functional.metrics.agreement` (a separate, loop-free-of-permutations implementation
of the two numbers), exhaustive enumeration of every arrangement with it, and Monte Carlo over simulated
grids whose models do not depend on the weight.
"""

import itertools

import numpy as np
import pytest

from iwlab.functional.agreement import agreement_null, grid_agreement
from iwlab.functional.metrics import agreement


def null_grid(rng, W, S, N, shift=0.0):
    """Binary predictions with no weight effect (shift=0): model (w, s) = 1[z + u_s + e_ws > 0] with a shared
    per-example z, a per-seed signal u_s (same seed = same initialization across weights) and model noise.
    ``shift`` > 0 adds a per-weight offset (from -shift to +shift): a weight effect."""
    z = rng.normal(size=(1, 1, N))
    u = 0.2 * rng.normal(size=(1, S, N))
    e = 0.7 * rng.normal(size=(W, S, N))
    offset = np.linspace(-shift, shift, W)[:, None, None]
    return (z + u + e + offset > 0).astype(np.int8)


def gap(p):
    a = agreement(p)
    return a["across_weightings"] - a["across_seeds"]


def test_observed_numbers_equal_the_reference():
    rng = np.random.default_rng(0)
    grids = [
        rng.integers(0, 2, (5, 3, 40)),
        rng.choice([2, 5, 7], size=(4, 4, 30)),  # sparse labels and ties in the votes
        rng.integers(0, 2, (2, 2, 9)).astype(bool),
        rng.integers(0, 3, (17, 9, 11)).astype(np.int64),
    ]
    for p in grids:
        ref = agreement(np.asarray(p, dtype=np.int64))
        aw, a_s = grid_agreement(p)
        r = agreement_null(p, n_permutations=5)
        assert aw == pytest.approx(ref["across_weightings"], abs=1e-15)
        assert a_s == pytest.approx(ref["across_seeds"], abs=1e-15)
        assert (r.across_weightings, r.across_seeds) == (aw, a_s) and r.gap == aw - a_s


def test_without_weight_effect_the_gap_is_positive_and_the_null_reproduces_it():
    """The issue's null effect: a 5 x 3 grid gives about +0.02, a 17 x 9 one about +0.07..+0.11, with no
    weight effect at all; the permutation null's mean tracks the observed gap's mean over such grids."""
    rng = np.random.default_rng(1)
    obs, null_means = [], []
    for _ in range(60):
        p = null_grid(rng, 5, 3, 300)
        obs.append(gap(p))
        null_means.append(agreement_null(p, n_permutations=100, seed=int(rng.integers(1 << 30))).null_mean)
    obs, null_means = np.array(obs), np.array(null_means)
    se = obs.std(ddof=1) / np.sqrt(len(obs))
    assert 0.01 < obs.mean() < 0.035 and obs.mean() > 5 * se
    assert abs(null_means.mean() - obs.mean()) < 4 * se
    big = [gap(null_grid(rng, 17, 9, 300)) for _ in range(8)]
    assert 0.07 < np.mean(big) < 0.12


def test_p_values_are_uniform_without_weight_effect():
    """Under exchangeability within seed columns the test is valid: P(p <= a) is about a (at most a)."""
    rng = np.random.default_rng(2)
    n_grids, n = 300, 99
    above, below = np.empty(n_grids), np.empty(n_grids)
    for i in range(n_grids):
        r = agreement_null(null_grid(rng, 5, 3, 200), n_permutations=n, seed=i)
        above[i], below[i] = r.p_above, r.p_below
    for p in (above, below):
        for a in (0.05, 0.2, 0.5, 0.8):
            sd = np.sqrt(a * (1 - a) / n_grids)
            assert abs((p <= a).mean() - a) < 3.5 * sd, (a, (p <= a).mean())


def test_a_weight_effect_puts_the_gap_below_the_null():
    rng = np.random.default_rng(3)
    p = null_grid(rng, 5, 3, 400, shift=1.5)  # low weights say 0 more often, high weights 1
    r = agreement_null(p, n_permutations=199, seed=0)
    assert r.gap < r.null_lo <= r.null_mean <= r.null_hi
    assert r.p_below == pytest.approx(1 / 200) and r.p_above == 1.0
    assert r.null_gaps.shape == (199,) and r.n_permutations == 199 and not r.exact


@pytest.mark.parametrize("S", [2, 3])
def test_exact_mode_equals_enumerating_every_arrangement(S):
    """Every (W!)^S reassignment within seed columns, each scored by the reference agreement()."""
    rng = np.random.default_rng(10 + S)
    W, N = 3, 7
    p = rng.integers(0, 3, (W, S, N))
    gaps = []
    for perms in itertools.product(itertools.permutations(range(W)), repeat=S):
        q = np.stack([p[list(perm), j] for j, perm in enumerate(perms)], axis=1)  # (W, S, N)
        gaps.append(gap(q))
    gaps = np.array(gaps)
    obs = gap(p)
    r = agreement_null(p, exact=True, level=0.9)
    assert r.exact and r.n_permutations == 6 ** (S - 1)
    assert r.null_mean == pytest.approx(gaps.mean(), abs=1e-12)
    assert r.p_above == pytest.approx((gaps >= obs - 1e-12).mean(), abs=1e-12)
    assert r.p_below == pytest.approx((gaps <= obs + 1e-12).mean(), abs=1e-12)
    ordered = np.sort(gaps)  # empirical quantiles: the smallest gap with CDF >= 5% (and >= 95%)
    lo = ordered[int(np.ceil(0.05 * len(gaps))) - 1]
    hi = ordered[int(np.ceil(0.95 * len(gaps))) - 1]
    assert (r.null_lo, r.null_hi) == pytest.approx((lo, hi), abs=1e-12)


def test_sampled_null_converges_to_the_exact_one():
    rng = np.random.default_rng(4)
    p = rng.integers(0, 2, (3, 2, 25))
    exact = agreement_null(p, exact=True)
    n = 20_000
    r = agreement_null(p, n_permutations=n, seed=5)
    sd = exact.null_gaps.std()
    assert abs(r.null_mean - exact.null_mean) < 4 * sd / np.sqrt(n) + 1e-12
    for got, want in ((r.p_above, exact.p_above), (r.p_below, exact.p_below)):
        assert abs(got - want) < 4 * np.sqrt(want * (1 - want) / n) + 1e-4


def test_same_seed_same_draws():
    p = np.random.default_rng(6).integers(0, 2, (4, 3, 50))
    a, b, c = (agreement_null(p, 50, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.null_gaps, b.null_gaps) and a == b
    assert not np.array_equal(a.null_gaps, c.null_gaps)
    assert set(a.as_dict()) == {f for f in a.__dataclass_fields__ if f != "null_gaps"}


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"preds": np.zeros((3, 4), int)}, ValueError, "preds must have shape"),
        ({"preds": np.zeros((3, 2, 4))}, TypeError, "integer class labels, got dtype float64"),
        ({"preds": -np.ones((3, 2, 4), int)}, ValueError, "labels >= 0"),
        ({"preds": np.zeros((1, 2, 4), int)}, ValueError, "at least 2 weightings"),
        ({"preds": np.zeros((3, 2, 0), int)}, ValueError, "at least one weighting, seed and example"),
        ({"n_permutations": 0}, ValueError, "n_permutations must be an integer >= 1"),
        ({"n_permutations": True}, TypeError, "n_permutations"),
        ({"n_permutations": 10.0}, TypeError, "n_permutations"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"level": 1.0}, ValueError, r"level must be in \(0, 1\)"),
        ({"level": 0.0}, ValueError, r"level must be in \(0, 1\)"),
        ({"level": "0.9"}, TypeError, "level must be a real number"),
        ({"exact": 1}, TypeError, "exact must be True or False"),
        ({"preds": np.zeros((8, 3, 2), int), "exact": True}, ValueError, "at most 200,000"),
    ],
)
def test_bad_arguments_fail_with_one_line(kwargs, error, match):
    args = {"preds": np.zeros((3, 2, 4), int), **kwargs}
    with pytest.raises(error, match=match):
        agreement_null(**args)


def test_exact_refuses_huge_grids_at_once():
    """(W!)^(S-1) is compared in logs: a paper-size or absurd grid is refused at once, in one line."""
    import time

    for W, S in ((17, 9), (3000, 3000)):
        preds = np.zeros((W, S, 1), dtype=np.int8)
        t = time.perf_counter()
        with pytest.raises(ValueError, match=r"^exact=True would enumerate \(W!\)\^\(S-1\) ~ 10\^[0-9.]+ arrangements"):
            agreement_null(preds, exact=True)
        assert time.perf_counter() - t < 5.0


def test_exact_ignores_n_permutations():
    p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])
    assert agreement_null(p, n_permutations=0, exact=True).n_permutations == 4


def test_chunked_draws_equal_one_draw(monkeypatch):
    """Permutations are drawn chunk by chunk (bounded memory); the null is the same as with one big chunk."""
    import iwlab.functional.agreement as mod

    rng = np.random.default_rng(3)
    preds = (rng.random((4, 3, 50)) < 0.4).astype(np.int8)
    whole = agreement_null(preds, n_permutations=300, seed=7).null_gaps
    monkeypatch.setattr(mod, "CHUNK_ELEMENTS", preds.size * 7)  # chunks of 7 grids
    np.testing.assert_array_equal(agreement_null(preds, n_permutations=300, seed=7).null_gaps, whole)


def test_exact_with_one_seed_is_the_one_arrangement():
    """S = 1: (W!)^0 = 1 arrangement, found without building the W! permutations of the column."""
    preds = (np.random.default_rng(0).random((11, 1, 20)) < 0.5).astype(np.int8)
    r = agreement_null(preds, exact=True)
    assert r.n_permutations == 1 and r.null_gaps.tolist() == [r.gap] and r.p_below == 1.0
