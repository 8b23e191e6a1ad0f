"""Resampling, the alternatives to loss weighting: subsample, oversample, or draw by weight.

Byrd & Lipton compare importance weighting with these: down-weighting class ``c`` by ``w`` in the
loss versus keeping a fraction ``w`` of its examples (:func:`subsample_class`), up-weighting versus
repeating its examples (:func:`oversample_class`), and weighting versus drawing examples with
probability proportional to their weights (:func:`weighted_sampler_indices`, importance sampling).

The drawing functions return ``int64`` index tensors into the dataset and take a ``torch.Generator``,
so the same seed always gives the same indices. Every sub-sample size in iwlab comes from
:func:`kept_count`: ``round(fraction * n)`` with halves rounded up (``floor(fraction * n + 0.5)``), so
n = 100 and fraction 1/8 keep 13, wherever the sub-sampling happens (here or in
:func:`iwlab.data.cifar10_tasks.binary_task`).

Example:
    >>> y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    >>> idx = subsample_class(y, 1, 0.5, torch.Generator().manual_seed(0))
    >>> torch.bincount(y[idx]).tolist()
    [4, 2]
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from iwlab.functional.checks import check_int
from iwlab.functional.losses import check_weights
from iwlab.functional.sampling import draw

__all__ = ["kept_count", "oversample_class", "subsample_class", "weighted_sampler_indices"]


def _check_labels(y: Tensor) -> None:
    if not isinstance(y, Tensor) or y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        what = f"dtype {y.dtype}, shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y)
        raise ValueError(f"y must be a 1-D integer tensor of labels; got {what}")


def _real(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool | str)


def _class_indices(y: Tensor, cls: int) -> Tensor:
    # compare in int64: in uint8, class 256 would wrap to 0 and select class 0's examples
    return (y.long() == cls).nonzero().squeeze(1).cpu()


def kept_count(n: int, fraction: float) -> int:
    """How many of ``n`` examples a sub-sample keeps: ``floor(fraction * n + 0.5)`` (halves round up).

    Python's ``round`` would round halves to even (n = 100, fraction 1/8: 12 instead of 13, and 2.5 -> 2
    but 3.5 -> 4); this one rule is used by every sub-sampler in iwlab.

    Args:
        n: number of examples, an int >= 0.
        fraction: the kept fraction, a real number in ``(0, 1]``.

    Returns:
        An int in ``[0, n]`` (0 when ``fraction * n < 0.5``: callers decide whether that is an error).

    Raises:
        ValueError: ``fraction`` not in ``(0, 1]``, or ``n`` not an int >= 0.

    Example:
        >>> kept_count(100, 1 / 8), kept_count(5, 0.5), kept_count(20, 0.5)
        (13, 3, 10)
    """
    if isinstance(n, bool) or not hasattr(n, "__index__") or operator.index(n) < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if not (_real(fraction) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return math.floor(fraction * operator.index(n) + 0.5)


def subsample_class(y: Tensor, cls: int, fraction: float, generator: torch.Generator) -> Tensor:
    """Indices that keep every example of the other classes and ``kept_count(n, fraction)`` of ``cls``.

    ``n`` is the number of examples of class ``cls``; the kept ones are drawn without replacement
    (halves round up: see :func:`kept_count`).
    The result is sorted, so the dataset keeps its order.

    Raises:
        TypeError: ``cls`` is not an integer (a bool or float is refused).
        ValueError: ``fraction`` not in ``(0, 1]``, or no example of ``cls`` would remain.

    Example:
        >>> y = torch.tensor([0, 1, 1, 1, 1, 0])
        >>> subsample_class(y, 1, 0.5, torch.Generator().manual_seed(0)).tolist()
        [0, 1, 2, 5]
    """
    _check_labels(y)
    cls = check_int(cls, "cls")  # a bool or float class would match label 1, or nothing, without a word
    if not (_real(fraction) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    members = _class_indices(y, cls)
    n = members.numel()
    k = kept_count(n, fraction)
    if k == 0:
        raise ValueError(f"class {cls} would be left empty by subsampling (n={n}, fraction={fraction:g})")
    keep = members[torch.randperm(n, generator=generator)[:k]]
    others = (y.long() != cls).nonzero().squeeze(1).cpu()
    return torch.cat([others, keep]).sort().values


def oversample_class(y: Tensor, cls: int, factor: float, generator: torch.Generator) -> Tensor:
    """Indices in which every example of ``cls`` appears about ``factor`` times, others once.

    Each example of ``cls`` is repeated ``floor(factor)`` times; for a fractional ``factor``,
    ``round(frac(factor) * n)`` of them, drawn without replacement, get one more copy. The
    result is sorted (copies sit next to each other); shuffle it for training.

    Raises:
        TypeError: ``cls`` is not an integer (a bool or float is refused).
        ValueError: ``factor`` is not finite or below 1, or ``cls`` has no examples.

    Example:
        >>> y = torch.tensor([0, 1, 0])
        >>> oversample_class(y, 1, 3, torch.Generator().manual_seed(0)).tolist()
        [0, 1, 1, 1, 2]
    """
    _check_labels(y)
    cls = check_int(cls, "cls")  # a bool or float class would match label 1, or nothing, without a word
    if not (_real(factor) and math.isfinite(factor) and factor >= 1):
        raise ValueError(f"factor must be a finite number >= 1, got {factor}")
    members = _class_indices(y, cls)
    n = members.numel()
    if n == 0:
        raise ValueError(f"class {cls} has no examples to oversample")
    whole = int(math.floor(factor))
    extra = math.floor((factor - whole) * n + 0.5)
    parts = [torch.arange(y.numel())]
    if whole > 1:
        parts.append(members.repeat(whole - 1))
    if extra:
        parts.append(members[torch.randperm(n, generator=generator)[:extra]])
    return torch.cat(parts).sort().values


def weighted_sampler_indices(weights: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` indices drawn with replacement, index ``i`` with probability ``w_i / sum(w)``.

    This is importance *sampling*: training on ``x[idx]`` without weights has, in expectation,
    the gradient of the weighted loss (up to the constant ``sum(w) / len(w)``). The draw is
    :func:`iwlab.functional.sampling.draw` on the weights in float64: ``torch.multinomial`` up to
    2^24 examples, an exact two-stage draw above.

    Args:
        weights: (N,) finite, nonnegative, not all zero (any real dtype; any device).
        n: how many indices, an integer >= 0 (numpy and torch integers are accepted).
        generator: a CPU ``torch.Generator``.

    Returns:
        (n,) int64 indices into the dataset, on the CPU.

    Raises:
        TypeError: ``n`` is not an integer (a bool or float is refused).
        ValueError: weights that are not 1-D, or negative, NaN, infinite or all zero; ``n < 0``.

    Example:
        >>> w = torch.tensor([0.0, 1.0, 3.0])
        >>> idx = weighted_sampler_indices(w, 1000, torch.Generator().manual_seed(0))
        >>> torch.bincount(idx, minlength=3)[0].item()
        0
    """
    if not isinstance(weights, Tensor) or weights.dim() != 1:
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must be a 1-D tensor; got {shape}")
    if weights.numel() == 0:
        raise ValueError("weights is empty; there is nothing to sample from")
    check_weights(weights, name="weights")
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"n must be an int >= 0, got {type(n).__name__} {n!r}")
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    return draw(weights.detach().to("cpu", torch.float64), n, generator)
