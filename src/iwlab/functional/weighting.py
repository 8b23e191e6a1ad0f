"""Class weights from the settings the papers sweep: a weight ratio between two classes, or one
class's share of the total weight.

Byrd & Lipton (2019) sweep the ratio ``w`` of the weight of class 1 to that of class 0 (Figs 1-4, 6):
the down-weighted class gets the factor and the other keeps weight 1, so no weight exceeds 1. Their
multiclass CIFAR-10 experiment (Fig 5) gives one class the share ``rho`` of the total and splits the
rest evenly.
"""

from __future__ import annotations

import math

from iwlab.functional.checks import check_int


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
