"""A permutation null for Byrd & Lipton's agreement comparison (2019, Sec. 4.1).

Byrd & Lipton compare how often differently-weighted models agree (82% on the test set) with how often
differently-seeded models agree (78%) and read the difference as "the weights do not change which
examples a model gets right". The two numbers are not built alike: the first compares *majority votes*
over S seeds, the second single models with their weighting's vote. Votes are less noisy than single
models, and in a weights x seeds grid where the same seed means the same initialization, the votes of
different weightings are votes over correlated models. So the gap "across weightings - across seeds"
is positive even when the weights have no effect at all (about +0.02 for a 5 x 3 grid of models that
agree ~82% of the time, more for the paper's 17 x 9).

:func:`agreement_null` calibrates the gap against that construction: it reassigns the models to
weightings at random *within each seed column* (every model keeps its seed, so models that share an
initialization stay in one column; only which weighting each one is attributed to is permuted) and
recomputes the gap. With no weight effect the grid is exchangeable within seed columns, so the
observed gap is one draw from this null distribution; the result holds the null's mean, its central
interval and one-sided p-values for both directions.

Which direction means what: a weight effect on *which* examples are predicted makes models that share
a weight agree with each other more than with models of other weights, so across seeds rises, the
weightings' votes disagree more and the gap falls *below* the null (small ``p_below``). A gap above the
null (small ``p_above``) would mean models that share a weight are *less* alike than random regroupings
of the same models.

Example:
    >>> rng = np.random.default_rng(0)
    >>> preds = (rng.random((5, 3, 200)) < 0.5).astype(np.int8)  # no weight effect: every model random
    >>> r = agreement_null(preds, n_permutations=200, seed=0)
    >>> r.null_lo <= r.gap <= r.null_hi, 0 < r.p_above <= 1
    (True, True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from iwlab.functional.checks import check_int, check_real, check_seed

__all__ = ["AgreementNull", "agreement_null", "grid_agreement"]

# (W!)^(S-1) arrangements enumerated at most by exact=True
MAX_EXACT = 200_000
# elements of one chunk of permuted grids (P, W, S, N): keeps a chunk near 4 MiB of int8
CHUNK_ELEMENTS = 2**22
# ties: gaps are differences of rationals computed by the same integer sums, so equal arrangements give
# equal floats; the tolerance only guards against a future change of the arithmetic
TIE_TOL = 1e-12


@dataclass(frozen=True)
class AgreementNull:
    """The observed agreement numbers and their permutation null (:func:`agreement_null`).

    Attributes:
        across_weightings: Byrd & Lipton's agreement across weightings (:func:`iwlab.functional.metrics.agreement`).
        across_seeds: their agreement across seeds.
        gap: ``across_weightings - across_seeds``.
        null_mean: mean gap over the permuted grids.
        null_lo: lower end of the null's central ``level`` interval (empirical percentile ``100 (1 - level) / 2``).
        null_hi: upper end (empirical percentile ``100 (1 + level) / 2``).
        p_above: one-sided p-value for a gap above the null: ``(1 + #{null >= gap}) / (1 + n)`` (sampled), or
            ``#{null >= gap} / n`` when every arrangement is enumerated (``exact``; the identity is one of them).
        p_below: the same for a gap below the null (``null <= gap``): small when the weights have an effect.
        level: the interval's coverage.
        n_permutations: how many permuted grids (exact: the number of distinct arrangements).
        exact: whether every arrangement was enumerated.
        null_gaps: ``(n_permutations,)`` float64, the null gaps themselves.
    """

    across_weightings: float
    across_seeds: float
    gap: float
    null_mean: float
    null_lo: float
    null_hi: float
    p_above: float
    p_below: float
    level: float
    n_permutations: int
    exact: bool
    null_gaps: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        """The numbers without ``null_gaps``, as plain floats (ints and bools kept).

        Example:
            >>> r = agreement_null(np.array([[[0, 1]], [[1, 1]]]), exact=True)  # W=2, S=1: one arrangement
            >>> {k: r.as_dict()[k] for k in ("gap", "null_mean", "p_above", "n_permutations")}
            {'gap': -0.25, 'null_mean': -0.25, 'p_above': 1.0, 'n_permutations': 1}
        """
        return {k: v for k, v in self.__dict__.items() if k != "null_gaps"}


def _compact(preds: object) -> tuple[np.ndarray, int]:
    """Validated ``(W, S, N)`` labels renumbered 0..K-1 in increasing order (ties still go to the smallest)."""
    p = np.asarray(preds)
    if p.ndim != 3:
        raise ValueError(f"preds must have shape (weightings, seeds, examples), got {p.shape}")
    if not (np.issubdtype(p.dtype, np.integer) or p.dtype == np.bool_):
        raise TypeError(f"preds must hold integer class labels, got dtype {p.dtype}")
    if 0 in p.shape:
        raise ValueError(f"preds must have at least one weighting, seed and example, got shape {p.shape}")
    if p.dtype != np.bool_ and int(p.min()) < 0:
        raise ValueError(f"preds must hold class labels >= 0, got {int(p.min())}")
    values, inverse = np.unique(p, return_inverse=True)
    dtype = np.int8 if len(values) <= 127 else np.int64
    return inverse.reshape(p.shape).astype(dtype), len(values)


def _grid_agreement(g: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(across_weightings (P,), across_seeds (P,))`` of P grids ``g (P, W, S, N)`` holding labels 0..K-1."""
    P, W, S, N = g.shape
    counts = [(g == k).sum(2, dtype=np.int32) for k in range(n_labels - 1)]  # K-1 x (P, W, N)
    counts.append(S - sum(counts, np.zeros((P, W, N), np.int32)))  # the last label: what the others leave
    counts_ = np.stack(counts)  # (K, P, W, N) seeds per label
    majority = counts_.argmax(0)  # (P, W, N) each weighting's vote over seeds; ties -> smallest label
    seeds_agreeing = np.take_along_axis(counts_, majority[None], 0)[0]  # (P, W, N)
    across_seeds = seeds_agreeing.sum((1, 2)) / (W * S * N)
    votes = np.stack([(majority == k).sum(1) for k in range(n_labels)])  # (K, P, N) weightings per label
    modal = votes.argmax(0)  # (P, N)
    across_weightings = np.take_along_axis(votes, modal[None], 0)[0].sum(1) / (W * N)
    return across_weightings, across_seeds


def grid_agreement(preds: np.ndarray) -> tuple[float, float]:
    """``(across_weightings, across_seeds)`` of one grid, by the vectorized code :func:`agreement_null` uses.

    The same numbers as :func:`iwlab.functional.metrics.agreement` (Byrd & Lipton 2019, Sec. 4.1), which
    the tests use as the reference.

    Args:
        preds: ``(W, S, N)`` integer (or bool) class labels >= 0.

    Returns:
        ``(across_weightings, across_seeds)``, fractions in [0, 1].

    Raises:
        ValueError: ``preds`` not 3-D, empty, or with a negative label.
        TypeError: ``preds`` not integer or bool.

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
        >>> tuple(round(v, 3) for v in grid_agreement(p))
        (0.75, 0.833)
    """
    g, k = _compact(preds)
    aw, a_s = _grid_agreement(g[None], k)
    return float(aw[0]), float(a_s[0])


def _arrangements(W: int, S: int, n: int, rng: np.random.Generator, exact: bool) -> np.ndarray:
    """``(n, S, W)``: per arrangement and seed column, which model (row) goes to each weighting."""
    if exact:
        # the statistic does not change when the weightings are relabelled (the same permutation in every
        # column), so column 0 stays fixed and each of the (W!)^(S-1) arrangements stands for W! equally
        # likely ones: the exact null distribution
        if S == 1:  # one column, held fixed: the one arrangement (never build the W! permutations)
            return np.arange(W, dtype=np.int64).reshape(1, 1, W)
        rows = list(itertools.permutations(range(W)))
        combos = itertools.product(rows, repeat=S - 1)
        return np.array([[tuple(range(W)), *c] for c in combos], dtype=np.int64).reshape(-1, S, W)
    return rng.random((n, S, W)).argsort(-1)  # independent uniform permutations per column


def agreement_null(
    preds: np.ndarray, n_permutations: int = 1000, seed: int = 0, level: float = 0.95, *, exact: bool = False
) -> AgreementNull:
    """Byrd & Lipton's agreement gap (across weightings - across seeds) against a permutation null.

    The null reassigns the models to weightings at random within each seed column of the weights x seeds
    grid: every model keeps its seed (the same seed is the same initialization across weights, so models
    sharing a seed are correlated and must stay together), only which weighting it is attributed to is
    permuted, independently per column. With no weight effect the grid is exchangeable within columns and
    the observed gap is a draw from this distribution. Direction: see the module docstring (a weight effect
    gives a gap *below* the null, ``p_below`` small).

    Args:
        preds: ``(W, S, N)`` integer (or bool) class labels >= 0: W >= 2 weightings, S seeds, N examples.
        n_permutations: permuted grids drawn (>= 1; drawn and evaluated in chunks of about 4 MiB); ignored with
            ``exact=True``.
        seed: seed of the permutations (numpy ``default_rng``), so a report is reproducible.
        level: coverage of the central null interval, in (0, 1).
        exact: enumerate every arrangement ((W!)^(S-1) of them, at most :data:`MAX_EXACT`) instead of sampling.

    Returns:
        :class:`AgreementNull`.

    Raises:
        ValueError: ``preds`` not 3-D, empty, with a negative label or fewer than 2 weightings;
            ``n_permutations < 1``; ``level`` outside (0, 1); too many arrangements for ``exact``.
        TypeError: ``preds`` not integer or bool; ``n_permutations``, ``seed`` or ``exact`` of the wrong type.

    Source:
        Byrd & Lipton (2019), Sec. 4.1 (the two agreement numbers); the permutation test: Good (2005),
        *Permutation, Parametric and Bootstrap Tests of Hypotheses*, 3rd ed., Ch. 3; the ``+1`` in the
        sampled p-value: Phipson & Smyth (2010), "Permutation p-values should never be zero", SAGMB 9(1).

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
        >>> r = agreement_null(p, exact=True)
        >>> round(r.gap, 3), r.n_permutations, round(r.p_below, 3)
        (-0.083, 4, 0.5)
    """
    g, n_labels = _compact(preds)
    W, S, N = g.shape
    if W < 2:
        raise ValueError(f"preds must have at least 2 weightings for a permutation null, got {W}")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False, got {exact!r}")
    # ignored with exact=True (any count is fine there); sampled grids are drawn chunk by chunk, so memory
    # stays bounded however many are asked for
    n = check_int(n_permutations, "n_permutations", minimum=0 if exact else 1)
    rng = np.random.default_rng(check_seed(seed))
    level = check_real(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if exact:
        # compare in logs first: (W!)^(S-1) of a paper-size grid has over a hundred digits
        log10_n = (S - 1) * math.lgamma(W + 1) / math.log(10)
        if log10_n > math.log10(MAX_EXACT) + 1e-9:
            raise ValueError(
                f"exact=True would enumerate (W!)^(S-1) ~ 10^{log10_n:.1f} arrangements (at most {MAX_EXACT:,}); "
                "sample with exact=False"
            )
        n = math.factorial(W) ** (S - 1)
    aw, a_s = _grid_agreement(g[None], n_labels)
    gap = float(aw[0] - a_s[0])
    order = _arrangements(W, S, n, rng, exact) if exact else None  # (n, S, W)
    cols = np.arange(S)[None, None, :]  # (1, 1, S)
    chunk = max(1, CHUNK_ELEMENTS // g.size)
    null = np.empty(n)
    for lo in range(0, n, chunk):
        # sampled: each chunk's permutations drawn as it is needed (the same stream as drawing all at once)
        part = order[lo : lo + chunk] if order is not None else _arrangements(W, S, min(chunk, n - lo), rng, False)
        rows = part.transpose(0, 2, 1)  # (p, W, S): the model each (weighting, seed) gets
        w_p, s_p = _grid_agreement(g[rows, cols], n_labels)  # g[rows, cols]: (p, W, S, N)
        null[lo : lo + chunk] = w_p - s_p
    above, below = int((null >= gap - TIE_TOL).sum()), int((null <= gap + TIE_TOL).sum())
    extra = 0 if exact else 1  # sampled: the observed grid counts as one more draw (Phipson & Smyth)
    # the empirical quantiles themselves (no interpolation): endpoints are gaps the null produced, and an
    # enumeration that counts each arrangement W! times gives the same ones
    lo_q, hi_q = np.percentile(null, [50 * (1 - level), 50 * (1 + level)], method="inverted_cdf")
    return AgreementNull(
        across_weightings=float(aw[0]),
        across_seeds=float(a_s[0]),
        gap=gap,
        null_mean=float(null.mean()),
        null_lo=float(lo_q),
        null_hi=float(hi_q),
        p_above=(above + extra) / (n + extra),
        p_below=(below + extra) / (n + extra),
        level=level,
        n_permutations=n,
        exact=exact,
        null_gaps=null,
    )
