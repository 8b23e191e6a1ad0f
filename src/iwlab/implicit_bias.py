"""Implicit-bias diagnostics (Soudry et al. 2018; Xu, Ye & Ruan 2021).

On linearly separable data, gradient descent on an exponential-tailed loss (logistic, exponential),
with or without fixed positive importance weights, converges *in direction* to the hard-margin
SVM; the weights only enter a bounded offset whose effect decays like ``1 / log t``. This module
provides the reference quantities to measure that:

* :func:`max_margin_separator` -- the exact hard-margin linear SVM (two bias conventions);
* :func:`angle` -- angle between (batches of) vectors, accurate also for tiny angles;
* :func:`normalized_margin` -- ``min_i s_i (w.x_i + b) / ||(w, b)||`` for (batches of) linear
  models;
* :func:`linear_direction` -- the vector ``(w, b)`` to compare with the ``"homogeneous"`` separator.

Labels may be given in ``{0, 1}`` (``s_i = 2 y_i - 1``) or in ``{-1, +1}`` (``s_i = y_i``).

Example:
    >>> import torch
    >>> X = torch.tensor([[2.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
    >>> w, b = max_margin_separator(X, y)  # homogeneous: min ||(w, b)||
    >>> [round(v, 6) for v in w.tolist()], round(b, 6)
    ([0.666667, -0.666667], -0.333333)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

__all__ = ["angle", "linear_direction", "max_margin_separator", "normalized_margin"]

#: The constant feature of ``bias="free"`` is ``FREE_BIAS_SCALE * max|x_ij|`` (see
#: :func:`max_margin_separator`).
FREE_BIAS_SCALE = 1e4


def _signs(y: Tensor) -> Tensor:
    """``s_i in {-1, +1}`` from labels in ``{0, 1}`` or ``{-1, +1}`` (int64)."""
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point:
        if not torch.equal(y, y.round()):
            raise ValueError("labels must be in {0, 1} or {-1, +1}")
    y = y.to(torch.int64)
    values = set(torch.unique(y).tolist())
    if values <= {0, 1}:
        return 2 * y - 1
    if values <= {-1, 1}:
        return y
    raise ValueError(f"labels must be in {{0, 1}} or {{-1, +1}}, got values {sorted(values)}")


def max_margin_separator(
    X: Tensor,
    y: Tensor,
    *,
    bias: Literal["homogeneous", "free"] = "homogeneous",
) -> tuple[Tensor, float]:
    """Exact hard-margin linear SVM ``(w, b)``, normalized so that ``min_i s_i (w.x_i + b) = 1``.

    ``s_i = 2 y_i - 1`` for labels in ``{0, 1}`` (``s_i = y_i`` for labels in ``{-1, +1}``).

    * ``bias="homogeneous"`` (default): ``min ||(w, b)||^2 s.t. s_i (w.x_i + b) >= 1``, i.e. the
      bias is an ordinary weight on a constant-1 feature. This is the direction that gradient
      descent on (importance-weighted) logistic or exponential loss *with a trained bias*
      converges to (Soudry et al. 2018; Xu, Ye & Ruan 2021): compare it with
      ``linear_direction(w_t, b_t)``.
    * ``bias="free"``: the textbook SVM, ``min ||w||^2`` with ``b`` unpenalized. It is emulated by
      giving the constant feature the value ``S = FREE_BIAS_SCALE * max|x_ij|`` (``1e4 * max|x|``),
      so that ``b = S * b'`` and the bias costs only ``b'^2 = (b / S)^2``. That residual penalty
      shifts the solution by a relative amount of order ``(b / (S ||w||))^2`` (~1e-8 or less
      for data of unit scale), but the large column makes the NNLS ill-conditioned, so the
      emulated solution is only accurate to about ``1e-6`` relative. It is therefore *polished*:
      the KKT equations of the exact free-bias SVM are solved on the support set found by the
      emulated solve (``w = sum a_i s_i x_i``, ``sum a_i s_i = 0``, ``s_i (w.x_i + b) = 1`` on
      the support), and the result is kept only if it is primal and dual feasible and not longer
      than the emulated ``w``; otherwise the emulated solution (accurate to ~1e-6) is returned.
      In the tests the free-bias answer agrees with by-hand solutions to ~1e-12 and with
      ``sklearn.svm.SVC`` to the latter's own tolerance.

    Solver: least-distance programming (LDP) ``min ||x|| s.t. G x >= h`` with rows
    ``G_i = s_i (x_i, c)`` and ``h = 1`` (``c = 1`` or ``S``), solved exactly by the Lawson-Hanson
    reduction to NNLS (:func:`scipy.optimize.nnls`): with ``E = [G^T; h^T]`` of shape
    ``(d + 2, N)`` and ``f = (0, ..., 0, 1)``, ``u = argmin_{u >= 0} ||E u - f||``,
    ``r = E u - f`` and ``x = -r[:-1] / r[-1]``. The problem is infeasible (the data are not
    linearly separable) iff ``r = 0``. ``||r||^2 = 1 / (1 + ||x||^2)``, so the test
    ``||r|| > 0`` is a margin test. The result is finally rescaled so that the smallest margin is
    exactly 1. Computation is in float64.

    Args:
        X: inputs ``(N, d)``.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``; both classes may be absent.
        bias: ``"homogeneous"`` or ``"free"`` (see above).

    Returns:
        ``(w, b)``: ``w`` a float64 tensor of shape ``(d,)``, ``b`` a Python float.

    Raises:
        ValueError: the data are not linearly separable (or bad arguments).

    Example:
        >>> X = torch.tensor([[2.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
        >>> w, b = max_margin_separator(X, y, bias="free")
        >>> [round(v, 6) for v in w.tolist()], round(b, 6)
        ([0.8, -0.4], -0.6)
        >>> w, b = max_margin_separator(X, y)  # homogeneous: the bias is penalized too
        >>> [round(v, 6) for v in w.tolist()], round(b, 6)
        ([0.666667, -0.666667], -0.333333)
    """
    if bias not in ("homogeneous", "free"):
        raise ValueError(f"bias must be 'homogeneous' or 'free', got {bias!r}")
    Xn = torch.as_tensor(X).detach().cpu().to(torch.float64).numpy()
    if Xn.ndim != 2:
        raise ValueError(f"X must have shape (N, d), got {tuple(Xn.shape)}")
    s = _signs(torch.as_tensor(y).detach().cpu()).numpy().astype(np.float64)
    if s.shape != (Xn.shape[0],):
        raise ValueError(f"y must have shape ({Xn.shape[0]},), got {tuple(s.shape)}")
    if Xn.shape[0] == 0:
        raise ValueError("X is empty")
    n, d = Xn.shape

    if bias == "homogeneous":
        c = 1.0
    else:
        scale = float(np.abs(Xn).max()) if Xn.size else 1.0
        c = FREE_BIAS_SCALE * (scale if scale > 0 else 1.0)

    Z = np.concatenate([Xn, np.full((n, 1), c)], axis=1)  # augmented inputs (N, d + 1)
    G = s[:, None] * Z  # constraints G x >= 1
    E = np.concatenate([G.T, np.ones((1, n))], axis=0)  # (d + 2, N)
    f = np.zeros(d + 2)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=max(50 * n, 1000))
    r = E @ u - f
    # ||r||^2 = -r[-1] = 1 / (1 + ||x||^2): tiny residual <=> no (or a vanishing-margin) solution.
    if not (-r[-1] > 1e-13):
        raise ValueError("data are not linearly separable (no hard-margin separator exists)")
    x = -r[:-1] / r[-1]
    margins = G @ x
    m = float(margins.min())
    if not (m > 0.5 and np.all(np.isfinite(x))):
        raise ValueError(f"data are not linearly separable (max-margin solve gave min margin {m:.3g})")
    x = x / m  # exact normalization min_i s_i (w.x_i + b) = 1
    w, b = x[:d], float(x[d] * c)
    if bias == "free":
        polished = _polish_free(Xn, s, u > 0, w)
        if polished is not None:
            w, b = polished
    w = torch.from_numpy(np.ascontiguousarray(w) + 0.0)  # "+ 0.0" turns -0.0 into 0.0
    return w, b + 0.0


def _polish_free(
    X: np.ndarray, s: np.ndarray, support: np.ndarray, w_ref: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Exact free-bias SVM on the support set found by the emulated solve, or ``None``.

    Solves the KKT equations ``w = sum_A a_i s_i x_i``, ``sum_A a_i s_i = 0``,
    ``s_i (w.x_i + b) = 1`` (``i in A``) by least squares and accepts the result only if it is
    primal feasible, dual feasible (``a >= 0``) and not longer than the emulated ``w_ref``.
    """
    if not support.any():
        return None
    XA, sA = X[support], s[support]
    k = len(sA)
    K = (sA[:, None] * sA[None, :]) * (XA @ XA.T)
    M = np.zeros((k + 1, k + 1))
    M[:k, :k] = K
    M[:k, k] = sA
    M[k, :k] = sA
    rhs = np.concatenate([np.ones(k), [0.0]])
    sol = np.linalg.lstsq(M, rhs, rcond=None)[0]
    alpha, b = sol[:k], float(sol[k])
    if not np.all(np.isfinite(sol)) or alpha.min() < -1e-8 * max(alpha.max(), 1.0):
        return None
    w = (alpha * sA) @ XA
    margins = s * (X @ w + b)
    m = float(margins.min())
    if not (abs(m - 1.0) < 1e-6 and np.abs(margins[support] - 1.0).max() < 1e-6):
        return None
    w, b = w / m, b / m
    if np.linalg.norm(w) > np.linalg.norm(w_ref) * (1 + 1e-6):
        return None
    return w, b


def angle(u: Tensor, v: Tensor) -> Tensor:
    """Angle in radians in ``[0, pi]`` between vectors along the last axis, broadcast over the rest.

    Uses Kahan's formula ``2 atan2(||a - b||, ||a + b||)`` on the unit vectors ``a = u/||u||`` and
    ``b = v/||v||``, which is accurate for tiny and near-``pi`` angles (unlike ``acos``, whose
    error near 0 is ``sqrt(eps)``) and needs no clamping; identical directions give exactly 0.
    A zero vector is treated as having an arbitrary direction orthogonal to everything
    (``pi / 2``) rather than producing NaN.

    Args:
        u: ``(..., d)``.
        v: ``(d,)`` or ``(..., d)``, broadcastable against ``u``.

    Returns:
        Tensor of the broadcast leading shape (in the promoted floating dtype).

    Example:
        >>> angle(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))  # orthogonal
        tensor(1.5708)
        >>> angle(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([-1.0, -1.0]))
        tensor([3.1416, 2.3562])
    """
    u = torch.as_tensor(u)
    v = torch.as_tensor(v)
    dtype = torch.promote_types(torch.promote_types(u.dtype, v.dtype), torch.float32)
    u, v = u.to(dtype), v.to(dtype)
    tiny = torch.finfo(dtype).tiny
    a = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(tiny)
    b = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(tiny)
    num = torch.linalg.vector_norm(a - b, dim=-1)
    den = torch.linalg.vector_norm(a + b, dim=-1)
    zero = (torch.linalg.vector_norm(a, dim=-1) == 0) | (torch.linalg.vector_norm(b, dim=-1) == 0)
    out = 2.0 * torch.atan2(num, den)
    return torch.where(zero, torch.full_like(out, torch.pi / 2), out)


def linear_direction(w: Tensor, b: Tensor | float) -> Tensor:
    """Concatenate weights ``(..., d)`` and bias ``(...)`` into ``(..., d + 1)``.

    This is the vector that gradient descent with a trained bias aligns with the
    ``bias="homogeneous"`` max-margin separator.

    Example:
        >>> linear_direction(torch.tensor([[1.0, 2.0]]), torch.tensor([3.0]))
        tensor([[1., 2., 3.]])
        >>> w_svm, b_svm = max_margin_separator(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]),
        ...                                     torch.tensor([1, 0]))
        >>> linear_direction(w_svm, b_svm)
        tensor([0.5000, 0.5000, 0.0000], dtype=torch.float64)
    """
    w = torch.as_tensor(w)
    b = torch.as_tensor(b, dtype=w.dtype if w.dtype.is_floating_point else None)
    dtype = torch.promote_types(w.dtype, b.dtype)
    b = torch.broadcast_to(b.to(dtype), w.shape[:-1])
    return torch.cat([w.to(dtype), b.unsqueeze(-1)], dim=-1)


def normalized_margin(w: Tensor, b: Tensor | float, X: Tensor, y: Tensor) -> Tensor:
    """Normalized margin ``min_i s_i (w.x_i + b) / ||(w, b)||``, batched over leading axes of ``w``.

    Negative when some training point is misclassified. For the ``"homogeneous"`` max-margin
    separator ``(w*, b*)`` this equals ``1 / ||(w*, b*)||``, the largest value any linear model
    with a bias can reach.

    Args:
        w: weights ``(..., d)``.
        b: biases ``(...)`` (or a float / 0-d tensor broadcast to ``w.shape[:-1]``).
        X: inputs ``(N, d)``.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.

    Returns:
        Tensor of shape ``w.shape[:-1]``.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]); y = torch.tensor([1, 0])
        >>> w = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
        >>> normalized_margin(w, torch.zeros(3), X, y)
        tensor([ 1.,  1., -1.])
    """
    theta = linear_direction(w, b)
    X = torch.as_tensor(X)
    dtype = torch.promote_types(torch.promote_types(theta.dtype, X.dtype), torch.float32)
    theta = theta.to(dtype)
    s = _signs(y).to(device=X.device, dtype=dtype)
    Z = torch.cat([X.to(dtype), torch.ones(X.shape[0], 1, dtype=dtype, device=X.device)], dim=1)
    scores = theta @ Z.T  # (..., N)
    m = (scores * s).amin(dim=-1)
    return m / torch.linalg.vector_norm(theta, dim=-1)
