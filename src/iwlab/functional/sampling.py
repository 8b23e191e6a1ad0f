"""Pure functions of loss-based importance sampling (Katharopoulos & Fleuret, 2017).

Given nonnegative importance scores ``s`` over a pool of P examples (exact losses for the oracle,
predicted losses for the approximation), sampling draws examples with probabilities

    p_i = (s_i + c) / sum_j (s_j + c)                         (eq. 10, with additive smoothing c, §3.3.1)

and weights their losses by

    alpha_i = 1 / (P * p_i ** k),  k in (-inf, 1]             (eq. 11 for k = 1, eq. 12 otherwise)

With k = 1 the weighted minibatch mean ``(1/B) sum_b alpha_b L_b`` is an unbiased estimate of the pool
mean ``(1/P) sum_i L_i`` (and, for a uniformly drawn pool, of the dataset mean). With k < 1 and
``p ∝ L`` its expectation is ``C' (1/P) sum_i grad L_i^(2-k)`` (eq. 13-16): a smooth max-loss.

Normalization: ``P`` is the number of examples the distribution is over (the pre-sampled pool, or the
whole dataset without pre-sampling), so the weights are those of eq. 11-12 for that set.

Precision: float64 inputs are computed in float64; float32 inputs in float32 unless that overflows
(a sum of scores beyond 3.4e38, a weight beyond float32), in which case the value is computed in
float64 and rounded once to float32; float16/bfloat16 inputs are computed in float64 and returned as
float32. A value that float32 cannot represent raises instead of becoming 0 or inf.

Example:
    >>> import torch
    >>> p = sampling_probabilities(torch.tensor([1.0, 3.0]))
    >>> p.tolist()
    [0.25, 0.75]
    >>> [round(a, 4) for a in importance_weights(p, k=1.0).tolist()]  # 1 / (2 p)
    [2.0, 0.6667]
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iwlab.functional.checks import check_int, check_real

__all__ = [
    "draw",
    "floored_scores",
    "importance_weights",
    "per_example_grad_norms",
    "rank_correlation",
    "sampling_probabilities",
    "total_variation_to_uniform",
]

# torch.multinomial refuses more categories than this; above it ``draw`` samples in two stages
MULTINOMIAL_MAX_CATEGORIES = 2**24
_MIN_BLOCK = 2**12


def _first(mask: Tensor, values: Tensor, name: str) -> str:
    """``name[i] = v`` for the first True entry of ``mask`` (1-D), plus how many more there are."""
    pos = mask.nonzero().reshape(-1)
    i = int(pos[0])
    more = f" (and {pos.numel() - 1} more)" if pos.numel() > 1 else ""
    return f"{name}[{i}] = {values[i].item()}{more}"


def _check_scores(scores: Tensor, name: str = "scores", what: str = " (losses)", *, nonneg: bool = True) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 1 or scores.numel() == 0:
        shape = tuple(scores.shape)
        raise ValueError(f"{name} must be a non-empty 1-D tensor (one score per example), got shape {shape}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {scores.dtype}")
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite; {_first(bad, scores, name)}")
    neg = scores < 0
    if nonneg and bool(neg.any()):
        raise ValueError(f"{name} must be nonnegative{what}; {_first(neg, scores, name)}")


def _check_smoothing(smoothing: object) -> float:
    c = check_real(smoothing, "smoothing")
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing}")
    return c


def _scaled_probabilities(scores: Tensor, smoothing: float) -> Tensor:
    """``(s + c) / sum(s + c)`` in float64, with s and c divided by their maximum first so no sum overflows."""
    s = scores.to(torch.float64)  # (P,)
    top = max(float(s.max()), smoothing)
    if not top > 0:
        return torch.full_like(s, 1.0 / s.numel())
    s = s / top + smoothing / top  # every entry in [0, 2]: the sum is at most 2P
    return s / s.sum()


def sampling_probabilities(scores: Tensor, smoothing: float = 0.0, *, validate: bool = True) -> Tensor:
    """Probabilities proportional to ``scores + smoothing`` (paper eq. 10 and §3.3.1).

    If every smoothed score is zero the distribution is uniform.

    Args:
        scores: (P,) floating, finite, nonnegative importances (losses).
        smoothing: c >= 0, finite, added to every score; pulls the distribution toward uniform
            (c -> inf gives uniform).
        validate: check ``scores`` and ``smoothing`` (skip only for inputs already checked).

    Returns:
        (P,) probabilities summing to 1: float64 for float64 scores, else float32. Float32 scores
        whose sum overflows (e.g. 1e38 each) are normalized in float64 (scaled by their maximum),
        so any finite nonnegative scores give the right probabilities.

    Raises:
        TypeError: ``scores`` is not a floating tensor, or ``smoothing`` is not a real number.
        ValueError: ``scores`` is not a non-empty 1-D tensor, has a non-finite or negative entry
            (named with its index), or ``smoothing`` is negative or not finite.

    Example:
        >>> sampling_probabilities(torch.tensor([0.0, 2.0]), smoothing=1.0).tolist()
        [0.25, 0.75]
    """
    if validate:
        _check_scores(scores)
        smoothing = _check_smoothing(smoothing)
    if scores.dtype not in (torch.float32, torch.float64):
        # float16/bfloat16 would overflow the sum (65504) and round small probabilities to 0
        return _scaled_probabilities(scores, float(smoothing)).to(torch.float32)
    s = scores + smoothing  # (P,)
    total = s.sum()
    if not bool(torch.isfinite(total)):
        return _scaled_probabilities(scores, float(smoothing)).to(scores.dtype)
    if not bool(total > 0):
        return torch.full_like(scores, 1.0 / scores.numel())
    return s / total


def _check_probs(probs: Tensor, name: str = "probs") -> None:
    if not isinstance(probs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(probs).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {probs.dtype}")
    flat = probs.detach().reshape(-1)
    bad = ~((flat > 0) & (flat <= 1))  # NaN fails both comparisons
    if bool(bad.any()):
        raise ValueError(f"probabilities of drawn examples must be in (0, 1]; {_first(bad, flat, name)}")


def importance_weights(
    probs: Tensor, k: float = 1.0, n: int | None = None, *, match_unbiased_sum: bool = False
) -> Tensor:
    """Loss weights ``alpha = 1 / (n p^k)`` for examples drawn with probabilities ``probs`` (eq. 11-12).

    ``k = 1`` is unbiased, ``k < 1`` biases toward high-loss examples (eq. 12), ``k = 0`` gives
    alpha = 1/n for all.

    For k < 1 the weights' scale differs from k = 1 (alpha ~ n^(k-1) on average) and varies from batch
    to batch, which under plain SGD changes the effective learning rate. ``match_unbiased_sum=True``
    rescales the batch the way the authors' code does (``BiasedReweightingPolicy`` in
    idiap/importance-sampling): by t with ``sum_b t alpha_b s_b = sum_b s_b / (n p_b)``, the sum the
    unbiased weights give, where s_b ∝ p_b are the drawn examples' scores. That is
    ``t = B / sum_b p_b^(1-k)``; for k = 1, t = 1.

    Args:
        probs: (...) floating probabilities of the drawn examples, each in (0, 1].
        k: the bias exponent, finite and <= 1.
        n: size of the set the distribution is over, an integer >= 1 (default ``probs.numel()``);
            pass the pool size when ``probs`` holds only the drawn examples' probabilities.
        match_unbiased_sum: rescale the weights of ``probs`` (one minibatch) so that their
            score-weighted sum equals the unbiased (k = 1) weights' (see above); default off, the
            paper's eq. 12 as written.

    Returns:
        (...) positive finite weights, float64 for float64 ``probs``, else float32 (computed in
        float64 when float32 would overflow or underflow on the way).

    Raises:
        TypeError: ``probs`` not a floating tensor, ``k`` not a real number, ``n`` not an integer.
        ValueError: a probability outside (0, 1] (named with its index), ``k`` > 1 or not finite,
            ``n`` < 1, or a weight that the output dtype cannot represent (overflow to inf or
            underflow to 0).

    Example:
        >>> importance_weights(torch.tensor([0.5, 0.25]), k=0.5, n=4).tolist()
        [0.3535533845424652, 0.5]
        >>> w = importance_weights(torch.tensor([0.5, 0.25]), k=0.5, n=4, match_unbiased_sum=True)
        >>> round(float((w * torch.tensor([0.5, 0.25])).sum()), 6)  # = sum_b p_b / (n p_b) = B / n
        0.5
    """
    if not isinstance(match_unbiased_sum, bool):  # "no" would be truthy
        raise TypeError(f"match_unbiased_sum must be True or False, got {match_unbiased_sum!r}")
    # for k = 1 the factor is exactly 1: skip it, so the weights are bit-for-bit the unscaled ones
    return _importance_weights(probs, k, n, rescale=match_unbiased_sum and k != 1)


def _importance_weights(probs: Tensor, k: float, n: int | None, *, rescale: bool = False) -> Tensor:
    kk = check_real(k, "k")
    if not (kk <= 1.0 and math.isfinite(kk)):
        raise ValueError(f"k must be finite and in (-inf, 1] (k = 1 is unbiased), got {k}")
    _check_probs(probs)
    n = probs.numel() if n is None else check_int(n, "n")
    if n < 1:
        raise ValueError(f"n (the size of the set sampled from) must be >= 1, got {n}")
    out_dtype = probs.dtype if probs.dtype in (torch.float32, torch.float64) else torch.float32
    if probs.dtype in (torch.float32, torch.float64) and not rescale:
        w = 1.0 / (n * probs.pow(kk))
        ok = torch.isfinite(w) & (w > 0)
        if bool(ok.all()):
            return w
    # in log space, in float64, rounded once: n * p^k over/underflowed in the input dtype, or the batch
    # is rescaled (the unscaled weights may leave float32's range where the rescaled ones do not)
    logp = torch.log(probs.detach().to(torch.float64))  # (...,)
    logw = -(math.log(n) + kk * logp)
    if rescale:
        # t = B / sum_b p_b^(1-k), as a log-sum-exp so that p^(1-k) cannot underflow
        logw = logw + math.log(logp.numel()) - torch.logsumexp((1.0 - kk) * logp.reshape(-1), 0)
    w = torch.exp(logw).to(out_dtype)
    bad = ~(torch.isfinite(w) & (w > 0))
    if bool(bad.any()):
        flat = probs.detach().reshape(-1)
        what = "rescaled to the unbiased sum" if rescale else "1 / (n p^k)"
        raise ValueError(
            f"importance weight {what} with n={n}, k={kk} is not representable in {out_dtype} for "
            f"{_first(bad.reshape(-1), flat, 'probs')}"
        )
    return w


def _finite_total(p: Tensor) -> Tensor:
    """``p``, divided by its maximum in float64 if its sum overflows (multinomial normalizes by the sum)."""
    if bool(torch.isfinite(p.sum())):
        return p
    p64 = p.to(torch.float64)
    return p64 / p64.max()


def floored_scores(predicted: Tensor, floor: float = 0.1, *, validate: bool = True) -> Tensor:
    """Positive scores from predicted losses of any sign: ``s_i = max(l_i, f * mean_j max(l_j, 0))``.

    The approx sampler's scores are a model's predictions (:class:`~iwlab.sampling.LossPredictor`),
    which can be <= 0 or far too small. Sampling ``p ∝ s`` keeps the paper's ``p ∝ predicted loss``
    (eq. 10, §3.3) for every example predicted above the floor, a fraction f of the pool's mean
    positive prediction, and lifts the rest to that floor. So every example keeps ``p > 0`` (it is
    still drawn, its loss still observed, and the k = 1 estimate stays unbiased), and its weight is
    bounded: with ``m = mean_j max(l_j, 0)``, ``sum_j s_j <= P m (1 + f)``, so
    ``p_i >= f / (P (1 + f))`` and ``alpha_i = 1/(P p_i) <= (1 + f) / f`` (11 for f = 0.1). Paper
    §3.3.1 names the failure this bounds: an example predicted far too low gets a huge weight. A
    pool whose predictions are all <= 0 is scored uniformly (every s_i = 1).

    Args:
        predicted: (P,) floating predictions, finite (any sign).
        floor: f in (0, 1], the floor as a fraction of the pool's mean positive prediction.
        validate: check the inputs (a host sync on a GPU); the sampler's hot path checks ``floor``
            once at construction and the result's finiteness where it copies it to the host anyway.

    Returns:
        (P,) positive scores, in ``predicted``'s dtype and device; the floor is never below the dtype's
        smallest normal number (so f * m cannot underflow to a score of 0). With ``validate=False`` a
        non-finite prediction gives NaN in its entry (for the caller to refuse) instead of an error.

    Raises:
        TypeError: ``predicted`` is not a floating tensor.
        ValueError: ``predicted`` is not a non-empty 1-D tensor or has a non-finite entry, or
            ``floor`` is outside (0, 1].

    Example:
        >>> floored_scores(torch.tensor([-1.0, 0.0, 2.0, 6.0]), floor=0.5).tolist()  # mean positive 2, floor 1
        [1.0, 1.0, 2.0, 6.0]
    """
    if validate:
        _check_scores(predicted, "predicted", nonneg=False)
        f = check_real(floor, "floor")
        if not 0 < f <= 1:
            raise ValueError(f"floor must be in (0, 1] (a fraction of the pool's mean prediction), got {floor}")
        floor = f
    pos = predicted.clamp(min=0)  # (P,)
    top = pos.max()
    # the mean positive part, scaled by the maximum so predictions near float32's limit cannot overflow
    # the sum; NaN (0/0) when nothing is predicted positive
    m = top * (pos / top).mean()
    # never below the dtype's smallest normal number: f * m can underflow to 0 (subnormal predictions, a
    # floor of 1e-50), and a score of 0 is p = 0, the starvation the floor exists to prevent
    lo = (floor * m).clamp(min=torch.finfo(pos.dtype).tiny)
    # all predictions <= 0: no scale to take a floor from, so every example scores the same
    s = torch.where(m > 0, torch.maximum(pos, lo), torch.ones_like(pos))
    # a NaN or infinite prediction stays NaN (inf - inf) in its own entry, so the caller's finiteness
    # check names it; the where() above would otherwise turn the pool silently uniform
    return s + (predicted - predicted)


def draw(probs: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """``num`` indices drawn i.i.d. with replacement, index i with probability ``probs[i] / sum(probs)``.

    A multinomial minibatch (paper §4). Up to ``2^24`` categories this is exactly
    ``torch.multinomial(probs, num, replacement=True, generator=generator)`` (same draws, same
    generator consumption). Above, where torch.multinomial refuses, it draws in two stages with
    exact probabilities, in float64: a block of consecutive indices by its total mass, then an
    index within that block by its probability (for each drawn block, one multinomial over its
    entries). Memory: one float64 copy of ``probs`` (128 MiB at 2^24 entries).

    Args:
        probs: (N,) floating, finite, nonnegative, not all zero; need not sum to 1.
        num: how many indices to draw, an integer >= 1 (numpy and torch integers are accepted).
        generator: the ``torch.Generator`` to draw from (on ``probs``' device), or the global one.

    Returns:
        (num,) int64 indices in [0, N), on ``probs``' device.

    Raises:
        TypeError: ``probs`` not a floating tensor; ``num`` not an integer.
        ValueError: ``probs`` not non-empty 1-D, with a non-finite or negative entry (named), or
            all zero; ``num`` < 1; N above 2^48.

    Example:
        >>> draw(torch.tensor([0.0, 1.0]), 3).tolist()
        [1, 1, 1]
    """
    num = check_int(num, "num")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    _check_scores(probs, "probs", what="")
    if not bool((probs > 0).any()):
        raise ValueError(f"probs is all zeros (shape {tuple(probs.shape)}); at least one must be positive")
    p = _finite_total(probs.detach())
    N = p.numel()
    if N <= MULTINOMIAL_MAX_CATEGORIES:
        return torch.multinomial(p, num, replacement=True, generator=generator)
    return _draw_two_stage(p, num, generator)


def _draw_two_stage(probs: Tensor, num: int, generator: torch.Generator | None) -> Tensor:
    N = probs.numel()
    block = max(_MIN_BLOCK, -(-N // MULTINOMIAL_MAX_CATEGORIES))
    if block > MULTINOMIAL_MAX_CATEGORIES:
        raise ValueError(f"probs has {N} entries; draw supports at most 2^48")
    p = probs.to(torch.float64)  # (N,)
    full = N // block
    mass = p[: full * block].reshape(full, block).sum(1)  # (K,) mass of each whole block
    if full * block < N:
        mass = torch.cat([mass, p[full * block :].sum().reshape(1)])
    blocks = torch.multinomial(mass, num, replacement=True, generator=generator)  # (num,)
    # P(i) = P(block of i) * P(i | block) = mass_b * p_i / mass_b: exact, i.i.d. across draws
    order = torch.argsort(blocks, stable=True)  # draws grouped by block, in draw order within a block
    uniq, counts = torch.unique_consecutive(blocks[order], return_counts=True)
    out = torch.empty(num, dtype=torch.long, device=p.device)
    start = 0
    for b, c in zip(uniq.tolist(), counts.tolist(), strict=True):
        lo = b * block
        within = torch.multinomial(p[lo : min(lo + block, N)], c, replacement=True, generator=generator)
        out[order[start : start + c]] = within + lo
        start += c
    return out


def total_variation_to_uniform(probs: Tensor) -> float:
    """Total-variation distance between ``probs`` (N,) and the uniform distribution (0 = uniform).

    Example:
        >>> total_variation_to_uniform(torch.tensor([0.5, 0.5]))
        0.0

    Raises:
        ValueError: ``probs`` is not a non-empty 1-D tensor.
    """
    if not isinstance(probs, Tensor) or probs.dim() != 1 or probs.numel() == 0:
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"probs must be a non-empty 1-D tensor of probabilities, got {shape}")
    return float(0.5 * (probs - 1.0 / probs.numel()).abs().sum())


# ---- the premise of loss-based sampling: the loss ranks examples as the gradient norm does (Appendix A.2) ----


def per_example_grad_norms(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-example gradient norms of the cross-entropy w.r.t. all trainable parameters, one backward each.

    The norm the optimal sampling distribution is proportional to (Katharopoulos & Fleuret 2017, eq. 5);
    the paper's Appendix A.2 correlates it with the loss, the score loss-based sampling uses instead. The
    model is used in whatever mode it is in (call ``model.eval()`` first for deterministic norms).

    Args:
        model: maps ``x[i : i + 1]`` to logits (1, C).
        x: (N, ...) inputs, on the model's device.
        y: (N,) int64 class labels in ``[0, C)``.

    Returns:
        (N,) float32 norms on the CPU (squares summed in float64).

    Raises:
        RuntimeError: from torch, when ``x`` does not fit the model or ``y`` holds a class outside ``[0, C)``.

    Example:
        >>> per_example_grad_norms(torch.nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).shape
        torch.Size([3])
    """
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        out.append(torch.sqrt(sum((g.double() ** 2).sum() for g in gs if g is not None)))
    return torch.stack(out).float().cpu()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (n,) arrays: the Pearson correlation of their ranks.

    Ties get distinct ranks in the order ``argsort`` puts them (no average ranks); NaN for n < 2.

    Args:
        a: (n,) numbers.
        b: (n,) numbers.

    Returns:
        The correlation in [-1, 1] (float), or NaN when n < 2.

    Raises:
        ValueError: ``a`` and ``b`` differ in length (from numpy).

    Example:
        >>> rank_correlation(np.array([1.0, 5.0, 2.0]), np.array([0.1, 9.0, 0.3]))
        1.0
    """
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else float("nan")
