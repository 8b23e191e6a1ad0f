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

Example:
    >>> import torch
    >>> p = sampling_probabilities(torch.tensor([1.0, 3.0]))
    >>> p.tolist()
    [0.25, 0.75]
    >>> [round(a, 4) for a in importance_weights(p, k=1.0).tolist()]  # 1 / (2 p)
    [2.0, 0.6667]
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["draw", "importance_weights", "sampling_probabilities", "total_variation_to_uniform"]


def _check_scores(scores: Tensor, name: str = "scores") -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 1 or scores.numel() == 0:
        shape = tuple(scores.shape)
        raise ValueError(f"{name} must be a non-empty 1-D tensor (one score per example), got shape {shape}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {scores.dtype}")
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name} must be finite; {name}[{i}] = {scores[i].item()}")
    neg = scores < 0
    if bool(neg.any()):
        i = int(neg.nonzero()[0])
        raise ValueError(f"{name} must be nonnegative (losses); {name}[{i}] = {scores[i].item()}")


def sampling_probabilities(scores: Tensor, smoothing: float = 0.0, *, validate: bool = True) -> Tensor:
    """Probabilities proportional to ``scores + smoothing`` (paper eq. 10 and §3.3.1).

    ``scores`` (P,) are nonnegative importances (losses). ``smoothing`` c >= 0 is added to every
    score, pulling the distribution toward uniform (c -> inf gives uniform). If every smoothed score
    is zero the distribution is uniform.

    Example:
        >>> sampling_probabilities(torch.tensor([0.0, 2.0]), smoothing=1.0).tolist()
        [0.25, 0.75]
    """
    if validate:
        _check_scores(scores)
        if not (smoothing >= 0 and smoothing < float("inf")):
            raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing}")
    s = scores + smoothing  # (P,)
    total = s.sum()
    if not bool(total > 0):
        return torch.full_like(scores, 1.0 / scores.numel())
    return s / total


def importance_weights(probs: Tensor, k: float = 1.0, n: int | None = None) -> Tensor:
    """Loss weights ``alpha = 1 / (n p^k)`` for examples drawn with probabilities ``probs``.

    ``n`` is the size of the set the distribution is over (default ``len(probs)``); pass the pool
    size when ``probs`` holds only the drawn examples' probabilities. ``k = 1`` is unbiased,
    ``k < 1`` biases toward high-loss examples (eq. 12), ``k = 0`` gives alpha = 1/n for all.

    Example:
        >>> importance_weights(torch.tensor([0.5, 0.25]), k=0.5, n=4).tolist()
        [0.3535533845424652, 0.5]
    """
    if not k <= 1.0:
        raise ValueError(f"k must be in (-inf, 1] (k = 1 is unbiased), got {k}")
    if bool((probs <= 0).any()):
        raise ValueError("probabilities of drawn examples must be > 0")
    n = probs.numel() if n is None else n
    return 1.0 / (n * probs.pow(k))


def draw(probs: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """``num`` indices drawn with replacement from ``probs`` (a multinomial minibatch, paper §4).

    Example:
        >>> draw(torch.tensor([0.0, 1.0]), 3).tolist()
        [1, 1, 1]
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    return torch.multinomial(probs, num, replacement=True, generator=generator)


def total_variation_to_uniform(probs: Tensor) -> float:
    """Total-variation distance between ``probs`` and the uniform distribution (0 = uniform).

    Example:
        >>> total_variation_to_uniform(torch.tensor([0.5, 0.5]))
        0.0
    """
    return float(0.5 * (probs - 1.0 / probs.numel()).abs().sum())
