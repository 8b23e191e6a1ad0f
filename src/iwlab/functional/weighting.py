"""Class weights from the settings the papers sweep: a weight ratio between two classes, or one
class's share of the total weight.

Byrd & Lipton (2019) sweep the ratio ``w`` of the weight of class 1 to that of class 0 (Figs 1-4, 6):
the down-weighted class gets the factor and the other keeps weight 1, so no weight exceeds 1. Their
multiclass CIFAR-10 experiment (Fig 5) gives one class the share ``rho`` of the total and splits the
rest evenly. Cui et al. (2019) weight each class by the inverse of its effective number of samples
(:func:`class_balanced_weights`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from iwlab.functional.checks import check_int, check_real


def class_weights_from_ratio(ratio: float) -> tuple[float, float]:
    """Two-class weights ``(w_0, w_1)`` with ``w_1 / w_0 = ratio`` and ``max(w_0, w_1) = 1``.

    Args:
        ratio: the weight ratio ``w_1 / w_0``, finite and > 0 (Byrd & Lipton's ``w``).

    Returns:
        ``(min(1, 1/ratio), min(1, ratio))`` as Python floats.

    Raises:
        ValueError: ``ratio`` is not a finite number > 0.

    Example:
        >>> class_weights_from_ratio(0.25), class_weights_from_ratio(4.0), class_weights_from_ratio(1.0)
        ((1.0, 0.25), (0.25, 1.0), (1.0, 1.0))
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a finite number > 0, got {ratio!r}")
    return (min(1.0, 1.0 / ratio), min(1.0, float(ratio)))


def one_class_share_weights(share: float, k: int, n_classes: int = 10) -> tuple[float, ...]:
    """Class ``k`` weighted by ``share``, each other class by ``(1 - share) / (n_classes - 1)``.

    Byrd & Lipton (2019), Sec. 4.2 / Fig 5 (their ``rho``); ``share = 1 / n_classes`` is unweighted.

    Args:
        share: class ``k``'s share of the total weight, in (0, 1).
        k: the weighted class, in ``[0, n_classes)``.
        n_classes: number of classes, >= 2.

    Returns:
        ``n_classes`` floats summing to 1.

    Raises:
        ValueError: ``share`` outside (0, 1), ``k`` outside ``[0, n_classes)`` or ``n_classes < 2``.
        TypeError: ``k`` or ``n_classes`` is not an integer.

    Example:
        >>> [round(v, 3) for v in one_class_share_weights(0.5, 2, 5)]
        [0.125, 0.125, 0.5, 0.125, 0.125]
    """
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    k = check_int(k, "k", minimum=0)
    if k >= n_classes:
        raise ValueError(f"k must be in [0, n_classes={n_classes}), got {k}")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share!r}")
    rest = (1.0 - share) / (n_classes - 1)
    return tuple(share if c == k else rest for c in range(n_classes))


def check_class_counts(class_counts: Tensor | Sequence[int], *, values: bool = True) -> Tensor:
    """``class_counts`` as a float64 ``(C,)`` tensor of positive integer counts, on the device it came on.

    Shared by :func:`class_balanced_weights` and the losses that take the label distribution
    (:mod:`iwlab.functional.losses_remedies`). Every count must be positive: a class without examples
    has no prior ``pi_c``, margin or weight (each is ``log 0`` or ``0**(-1/4)``).

    Args:
        class_counts: ``(C,)`` tensor (integer, or floating with integer values; not bool or complex)
            or a sequence of counts, ``C >= 1``.
        values: check the values (finite, integer, ``> 0``). A tensor's values are read back (a device
            sync); ``values=False`` checks only the type and shape (a loss's ``validate=False``).

    Returns:
        ``(C,)`` float64, exact for counts below ``2**53``; a tensor stays on its device, a sequence
        becomes a CPU tensor.

    Raises:
        TypeError: not a tensor or sequence of numbers (a bool count included).
        ValueError: empty or not 1-d; with ``values``, a NaN, infinite, fractional, negative or zero count.

    Example:
        >>> check_class_counts([5000, 500, 50])
        tensor([5000.,  500.,   50.], dtype=torch.float64)
        >>> check_class_counts([5, 0])
        Traceback (most recent call last):
        ...
        ValueError: class_counts[1] is 0: class 1 has no examples, so its prior, margin or weight is undefined; drop the class or give it a count
    """  # noqa: E501
    if isinstance(class_counts, Tensor):
        t = class_counts.detach()
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"class_counts must be a real tensor of counts; got dtype {t.dtype}")
    else:
        if isinstance(class_counts, str | bytes) or not isinstance(class_counts, Sequence):
            raise TypeError(
                f"class_counts must be a 1-d tensor or a sequence of counts; got {type(class_counts).__name__}"
            )
        for c, n in enumerate(class_counts):
            scalar = isinstance(n, Tensor) and n.numel() == 1 and n.dtype != torch.bool and not n.is_complex()
            if isinstance(n, bool) or not (isinstance(n, numbers.Real) or scalar):  # True is not a count
                raise TypeError(f"class_counts[{c}] must be an integer count; got {type(n).__name__} {n!r}")
        try:
            t = torch.as_tensor(class_counts, dtype=torch.float64)
        except (OverflowError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"class_counts must be a sequence of counts; {e}") from None
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-d sequence of counts, one per class; got shape {tuple(t.shape)}"
        )
    n = t.to(torch.float64)  # (C,) exact for integer counts below 2**53
    if not values:
        return n
    if t.is_floating_point():
        bad = ~torch.isfinite(n) | (n != n.round())  # NaN, inf and fractions such as 2.5
        if bool(bad.any()):
            c = int(bad.nonzero()[0])
            raise ValueError(f"class_counts[{c}] is {float(n[c])!r}; counts must be finite integers")
    if t.dtype.is_signed or t.is_floating_point():
        neg = n < 0
        if bool(neg.any()):
            c = int(neg.nonzero()[0])
            raise ValueError(f"class_counts[{c}] is {int(n[c])}; counts must be >= 0")
    zero = n == 0
    if bool(zero.any()):
        c = int(zero.nonzero()[0])
        raise ValueError(
            f"class_counts[{c}] is 0: class {c} has no examples, so its prior, margin or weight is undefined; "
            "drop the class or give it a count"
        )
    return n


def class_balanced_weights(
    class_counts: Tensor | Sequence[int], beta: float = 0.9999, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Class weights from the effective number of samples: ``w_c = (1 - beta) / (1 - beta^n_c)``, summing to ``C``.

    The effective number of ``n`` samples is ``E_n = (1 - beta^n) / (1 - beta)`` and class ``c`` is
    weighted by ``1 / E_{n_c}``, rescaled so that the ``C`` weights sum to ``C`` (as Cui et al. do, so
    the loss keeps roughly the scale of the unweighted one). ``beta = 0`` gives all ones (``E_n = 1``);
    as ``beta -> 1``, ``E_n -> n`` and the weights tend to the inverse class frequencies ``C (1/n_c) /
    sum_k (1/n_k)``. Computed in float64 as ``1 - beta^n = -expm1(n log beta)``, with ``log beta =
    log1p(-(1 - beta))`` for ``beta >= 0.5`` (``1 - beta`` is then exact), which keeps the relative
    precision when ``beta^n`` is close to 1; the numerator ``1 - beta`` cancels in the rescaling.

    Args:
        class_counts: ``(C,)`` tensor (integer, or floating with integer values) or sequence of
            non-negative integer counts, ``C >= 1``; every count must be positive.
        beta: in ``[0, 1)``; Cui et al. use 0.9, 0.99, 0.999 or 0.9999.
        dtype: dtype of the result (float64 by default); the computation is float64 whatever it is.

    Returns:
        ``(C,)`` weights in ``dtype``, summing to ``C`` (up to rounding), largest for the rarest class.

    Raises:
        TypeError: ``class_counts`` is not a tensor or sequence of numbers (bool included); ``beta`` is
            not a real number (bool included); ``dtype`` is not a floating-point dtype.
        ValueError: ``class_counts`` empty or not 1-d, or with a negative, non-integer, NaN or infinite
            count, or a zero count (that class's weight would be infinite); ``beta`` outside ``[0, 1)``.

    Source:
        Cui, Jia, Lin, Song & Belongie (2019), "Class-Balanced Loss Based on Effective Number of
        Samples", CVPR: Sec. 3, Proposition 1 (``E_n``), and Sec. 4 (weights ``1 / E_{n_y}``
        normalized to sum to ``C``).

    Example:
        >>> class_balanced_weights([5000, 500, 50], beta=0.999)
        tensor([0.1256, 0.3170, 2.5574], dtype=torch.float64)
        >>> class_balanced_weights([10, 1], beta=0.0)
        tensor([1., 1.], dtype=torch.float64)
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
    n = check_class_counts(class_counts)  # (C,) positive: a zero count's weight would be infinite
    b = check_real(beta, "beta")
    if not 0.0 <= b < 1.0:
        raise ValueError(f"beta must be in [0, 1); got {b!r}")
    # log beta: log1p(-(1 - beta)) is exact-input for beta >= 0.5 (Sterbenz), log(beta) below; log(0) = -inf
    log_beta = math.log1p(-(1.0 - b)) if b >= 0.5 else (math.log(b) if b > 0 else -math.inf)
    one_minus_beta_n = -torch.expm1(n * log_beta)  # (C,) 1 - beta^n_c, in (0, 1] for n_c >= 1
    inv = 1.0 / one_minus_beta_n  # (C,) proportional to 1 / E_{n_c}; the factor 1 - beta cancels below
    return (inv * (n.numel() / inv.sum())).to(dtype)
