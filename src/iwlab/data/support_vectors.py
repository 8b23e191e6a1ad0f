"""Two-dimensional separable data with a known hard-margin SVM: the implicit-bias experiment's default.

Xu, Ye & Ruan's predictions (notes Sec. 6) are about the bias-free linear model ``f(x) = theta.x`` trained by
gradient descent: ``theta(t) = theta_hat log t + rho(w) + r(t)``. How fast ``r(t)`` vanishes depends on the
data, and two features decide it:

* the margins of the non-support points: their gradient terms decay like ``t**-(m_i - 1)`` for a normalized
  margin ``m_i > 1`` (``theta_hat.x_i s_i = m_i``), so points with ``m_i`` close to 1 make ``r(t)`` fade
  slowly; here every non-support point has ``m_i >= min_margin`` (2.5: ``r`` falls like ``1 / t``);
* the spread of the support vectors across ``theta_hat``: linearizing the dynamics, the component of ``r``
  across ``theta_hat`` decays like ``t**-lambda`` with ``lambda = sum_S alpha_i (s_i x_i.e_perp)**2`` (0.07
  for two support vectors 15 degrees either side of ``theta_hat``, 2.4 for the pair here).

So the two support vectors are fixed, :data:`SUPPORT_VECTORS`, one per class; their SVM (both constraints
active) is ``theta_hat = (1, 0)`` with dual coefficients ``alpha = (0.375, 0.625)`` (majority, minority:
unequal, so uniform weights leave an offset across ``theta_hat``). The other points are drawn from a
Gaussian per class and kept only if their margin under ``theta_hat`` is at least ``min_margin``; a point
that satisfies every constraint of the two-point SVM cannot change it, so the SVM of the whole set is
the two-point one, for every seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional.checks import check_int, check_real, check_seed

__all__ = ["SUPPORT_VECTORS", "make_two_support_vectors"]

#: ``(majority point, label 0), (minority point, label 1)``: the data's two support vectors.
SUPPORT_VECTORS: tuple[tuple[tuple[float, float], int], ...] = (((-1.0, 2.0), 0), ((1.0, 1.2), 1))
#: The SVM of :data:`SUPPORT_VECTORS` (bias-free): ``s_i theta.x_i = 1`` for both.
SVM_DIRECTION = (1.0, 0.0)
CLUSTER_MEANS = {0: (-2.5, 0.0), 1: (2.5, 0.5)}
CLUSTER_STD = 0.8
MAX_TRIES_PER_POINT = 10_000  # at min_margin 5 about 1 draw in 100 is kept; at 6, 1 in 10**6


def make_two_support_vectors(
    n_majority: int = 40, n_minority: int = 8, seed: int = 0, min_margin: float = 2.5
) -> tuple[Tensor, Tensor]:
    """Separable 2-D data, class 0 the majority, whose bias-free hard-margin SVM has exactly two support vectors.

    The first row is the majority support vector, rows ``1 .. n_majority - 1`` the other majority points, then
    the minority support vector and the other minority points (see the module docstring for the geometry).

    Args:
        n_majority: points of class 0 (>= 1), the support vector included.
        n_minority: points of class 1 (>= 1), the support vector included.
        seed: the ``torch.Generator`` seed of the non-support points.
        min_margin: the smallest margin ``s_i theta_hat.x_i`` of a non-support point (> 1).

    Returns:
        ``X`` float64 ``(n_majority + n_minority, 2)`` and ``y`` int64 ``(n_majority + n_minority,)`` in ``{0, 1}``.

    Raises:
        ValueError: a count below 1, ``min_margin`` not a finite number > 1 or so large that the clusters
            almost never reach it (more than 10,000 draws per point; 5 is fine).
        TypeError: ``seed`` not an integer (see :func:`~iwlab.functional.checks.check_seed`).

    Example:
        >>> X, y = make_two_support_vectors(5, 3)
        >>> X.shape, y.tolist()
        (torch.Size([8, 2]), [0, 0, 0, 0, 0, 1, 1, 1])
        >>> ((2 * y - 1) * X[:, 0]).min().item()  # theta_hat = (1, 0): the support vectors have margin 1
        1.0
    """
    n_majority = check_int(n_majority, "n_majority", minimum=1)
    n_minority = check_int(n_minority, "n_minority", minimum=1)
    min_margin = check_real(min_margin, "min_margin")
    if not (1.0 < min_margin < float("inf")):
        raise ValueError(f"min_margin must be a finite number > 1, got {min_margin}")
    g = torch.Generator().manual_seed(check_seed(seed, "seed"))
    theta = torch.tensor(SVM_DIRECTION, dtype=torch.float64)
    parts, labels = [], []
    for (sv, label), n in zip(SUPPORT_VECTORS, (n_majority, n_minority), strict=True):
        sign = 2.0 * label - 1.0
        kept = [torch.tensor(sv, dtype=torch.float64)]
        mean = torch.tensor(CLUSTER_MEANS[label], dtype=torch.float64)
        tries = 0
        while len(kept) < n:  # rejection: only points that leave the two-point SVM unchanged
            x = mean + CLUSTER_STD * torch.randn(2, generator=g, dtype=torch.float64)
            if sign * float(x @ theta) >= min_margin:
                kept.append(x)
            tries += 1
            if tries > MAX_TRIES_PER_POINT * n:  # min_margin so far out in the cluster's tail that it never ends
                raise ValueError(f"min_margin={min_margin} is too large: the clusters almost never reach it (use <= 5)")
        parts.append(torch.stack(kept))
        labels.append(torch.full((n,), label, dtype=torch.int64))
    return torch.cat(parts), torch.cat(labels)
