"""Implicit-bias diagnostics (Soudry et al. 2018; Xu, Ye & Ruan 2021).

On linearly separable data, gradient descent on an exponential-tailed loss (logistic, exponential),
with or without fixed positive importance weights, converges *in direction* to the hard-margin
SVM; the weights only enter a bounded offset whose effect decays like ``1 / log t``. This module
provides the reference quantities to measure that:

* :func:`max_margin_separator` -- the exact hard-margin linear SVM (two bias conventions);
* :func:`max_margin_direction` -- the homogeneous separator as one vector ``(w*, b*)``, the limit direction;
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

from iwlab.functional._scaling import mul_pow2

__all__ = ["angle", "linear_direction", "max_margin_direction", "max_margin_separator", "normalized_margin"]

#: The constant feature of ``bias="free"`` is ``FREE_BIAS_SCALE * max|x_ij|`` (see
#: :func:`max_margin_separator`).
FREE_BIAS_SCALE = 1e4

#: Data whose largest ``|x_ij|`` has a binary exponent outside this range (``frexp``: ``|x| = m 2**e``
#: with ``m`` in [0.5, 1)), i.e. lies outside ``[2**-5, 2**4)``, are rescaled by ``2**-e`` before
#: the solve (see :func:`max_margin_separator`). Inside it the solver runs on the data as given, so
#: results there are bitwise those of earlier versions.
DATA_EXPONENT_RANGE = (-4, 4)


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
    * ``bias="free"``: the textbook SVM, ``min ||w||^2`` with ``b`` unpenalized, emulated by the
      constant feature ``S = FREE_BIAS_SCALE * max|x_ij|`` (the bias then costs ``(b / S)^2``; the
      emulation is accurate to ~1e-6 relative, the NNLS being ill-conditioned) and *polished*: the KKT
      equations of the exact SVM (``w = sum a_i s_i x_i``, ``sum a_i s_i = 0``, ``s_i (w.x_i + b) = 1``)
      are solved on the emulated support, and kept if primal and dual feasible and not longer than the
      emulated ``w``. In the tests it agrees with by-hand solutions to ~1e-12 and with ``sklearn.svm.SVC``
      to the latter's tolerance.

    Scale: the free-bias separator is equivariant (data ``c X`` give ``(w / c, b)``); the
    homogeneous one is not, but it is the LDP with constant feature ``1 / c`` on ``X``. The
    tolerances are for unit-scale data, so data whose largest ``|x_ij|`` lies outside
    ``[2**-5, 2**4)`` are divided by the power of two ``2**e`` (exact) that brings it into
    ``[0.5, 1)``, solved there and mapped back (``w / 2**e``, ``b``). For the homogeneous
    separator of such data the LDP runs with the constant feature clipped to ``[1e-4, 1e4] *
    max|x|`` (rescaled units) to decide separability and find the support, and the KKT polish
    (with active-set corrections) solves the exact problem; if it fails for large data, an error
    is raised rather than the clipped problem's answer. In the tests the homogeneous answer meets
    the KKT conditions to ~1e-13 for data scaled by ``2**-40`` to ``2**40``. Separability is
    relative: a margin below ~``3e-7`` times the largest ``|x_ij|`` counts as not separable.

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
        ValueError: the data are not linearly separable; ``X`` has a NaN or infinite entry, is
            empty or not 2-d; ``y`` has the wrong shape or labels; ``bias`` is unknown; or the
            homogeneous problem of very large data could not be solved accurately (see Scale).

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
    if not np.all(np.isfinite(Xn)):
        raise ValueError("X has a NaN or infinite entry")
    n, d = Xn.shape

    amax = float(np.abs(Xn).max()) if Xn.size else 0.0
    e = int(np.frexp(amax)[1])  # amax = m 2**e, m in [0.5, 1)
    if amax == 0 or DATA_EXPONENT_RANGE[0] <= e <= DATA_EXPONENT_RANGE[1]:
        e = 0
    unit = np.ldexp(1.0, e)  # exact power of two: dividing by it only moves exponents
    Xn = Xn / unit  # (N, d), max |x| in [0.5, 1) when rescaled
    # In these units the problem is min ||w'||^2 + gamma b^2 s.t. s_i (w'.x'_i + b) >= 1, solved as
    # the LDP with constant feature c = gamma**-0.5 (w = w' / unit afterwards).
    c_free = FREE_BIAS_SCALE * (amax / unit if amax > 0 else 1.0)
    if bias == "homogeneous":
        gamma = unit * unit
        # The true feature 1 / unit is huge for tiny data (the bias is nearly free) and tiny for
        # large data (the bias is nearly forbidden). Beyond [c_free / FREE_BIAS_SCALE**2, c_free]
        # it would only ruin the NNLS's conditioning (and, when tiny, its separability test), so the
        # LDP runs with the clipped feature: it decides separability (which does not depend on
        # gamma) and finds a support, and the KKT polish below restores the exact gamma.
        c = min(max(1.0 / unit, c_free / FREE_BIAS_SCALE**2), c_free)
    else:
        gamma = 0.0
        c = c_free

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
    if bias == "free" or e != 0:
        # (homogeneous data of unit scale keep the plain LDP answer, bitwise as before)
        polished = _polish_free(Xn, s, u > 0, w, b, gamma)
        if polished is not None:
            w, b = polished
        elif bias == "homogeneous" and c > 1.0 / unit:
            # The LDP answer is for a far cheaper bias than the data's; returning it would be a
            # wrong separator. (Clipping from above only makes an almost free bias freer: that
            # answer is within ~1e-6 of the exact one, like the free-bias fallback.)
            raise ValueError(
                f"could not solve the homogeneous max-margin problem accurately for data of scale {amax:.3g}; "
                "rescale X towards unit scale, or use bias='free'"
            )
    w = w / unit  # back to the caller's scale; b is scale-free: w.x + b = (w unit).(x / unit) + b
    w = torch.from_numpy(np.ascontiguousarray(w) + 0.0)  # "+ 0.0" turns -0.0 into 0.0
    return w, b + 0.0


def max_margin_direction(X: Tensor, y: Tensor) -> Tensor:
    """The direction ``(w*, b*)``, float64 ``(d + 1,)``, that gradient descent with a trained bias converges to.

    :func:`max_margin_separator` of ``X (N, d)``, ``y (N,)`` with ``bias="homogeneous"``, as one vector:
    on separable data ``(w_t, b_t) / ||(w_t, b_t)||`` of (importance-weighted) logistic or exponential
    loss tends to it whatever the fixed positive weights (Soudry et al. 2018, Theorem 3; Xu, Ye & Ruan 2021).

    Raises:
        ValueError: the data are not linearly separable, or as :func:`max_margin_separator`.

    Example:
        >>> max_margin_direction(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.tensor([1, 0]))
        tensor([0.5000, 0.5000, 0.0000], dtype=torch.float64)
    """
    w, b = max_margin_separator(X, y, bias="homogeneous")
    return linear_direction(w, torch.tensor(b, dtype=w.dtype))


def _polish_free(
    X: np.ndarray,
    s: np.ndarray,
    support: np.ndarray,
    w_ref: np.ndarray,
    b_ref: float = 0.0,
    gamma: float = 0.0,
) -> tuple[np.ndarray, float] | None:
    """Exact SVM ``min ||w||^2 + gamma b^2`` from the support set found by the LDP solve, or ``None``.

    ``gamma = 0`` is the free-bias SVM, ``gamma > 0`` the homogeneous one in rescaled units (see
    :func:`max_margin_separator`). Solves the KKT equations ``w = sum_A a_i s_i x_i``,
    ``sum_A a_i s_i = gamma b``, ``s_i (w.x_i + b) = 1`` (``i in A``) by least squares. If the
    LDP's support ``A`` is not exactly the active set (its solve is inexact when the problem is
    badly scaled, e.g. ``gamma`` ~ 1e12), ``A`` is corrected by active-set steps: drop the most
    negative multiplier, or add the most violated constraint, and solve again. The result is
    accepted only if it is primal feasible, dual feasible (``a >= 0``) and its objective is not
    above that of the LDP answer ``(w_ref, b_ref)``. When the LDP's support is right (the usual
    case) the first solve is taken, as in earlier versions.

    ``X`` is of unit scale here (rescaled by :func:`max_margin_separator` when it is not): the
    multipliers ``a`` scale like ``1 / scale**2``, so the dual-feasibility tolerance
    ``-1e-8 * max(a.max(), 1)`` and ``lstsq``'s cutoff on the ``[[K, s], [s^T, -gamma]]`` matrix
    are only meaningful for such data. For ``gamma > 1`` (homogeneous, large data) the multipliers
    grow like ``gamma``; the primal least-norm form is solved instead.
    """
    active = support.copy()
    for _ in range(2 * len(s) + 2):  # active-set steps; a cycle ends in None
        if not active.any():
            return None
        XA, sA = X[active], s[active]
        k = len(sA)
        if gamma <= 1:
            # KKT saddle system [[K, s], [s^T, -gamma]] (a, b) = (1, 0): entries of order 1.
            K = (sA[:, None] * sA[None, :]) * (XA @ XA.T)
            M = np.zeros((k + 1, k + 1))
            M[:k, :k] = K
            M[:k, k] = sA
            M[k, :k] = sA
            if gamma > 0:
                M[k, k] = -gamma
            rhs = np.concatenate([np.ones(k), [0.0]])
            sol = np.linalg.lstsq(M, rhs, rcond=None)[0]
            alpha, b = sol[:k], float(sol[k])
            w = (alpha * sA) @ XA
        else:
            # The bias is expensive (large data): the multipliers grow like gamma and w = sum a s x
            # would cancel, so solve the primal instead: the least-norm v = (w, sqrt(gamma) b) with
            # s_i (w.x_i + b) = 1 on the active set, and the multipliers from A^T a = v.
            A = sA[:, None] * np.concatenate([XA, np.full((k, 1), gamma**-0.5)], axis=1)  # (k, d + 1)
            v = np.linalg.lstsq(A, np.ones(k), rcond=None)[0]
            alpha = np.linalg.lstsq(A.T, v, rcond=None)[0]
            sol = np.concatenate([v, alpha])
            w, b = v[:-1], float(v[-1]) * gamma**-0.5
        if not np.all(np.isfinite(sol)):
            return None
        if alpha.min() < -1e-8 * max(alpha.max(), 1.0):
            active[np.flatnonzero(active)[np.argmin(alpha)]] = False
            continue
        margins = s * (X @ w + b)
        m = float(margins.min())
        if m < 1.0 - 1e-6:
            active[np.argmin(margins)] = True
            continue
        if not (abs(m - 1.0) < 1e-6 and np.abs(margins[active] - 1.0).max() < 1e-6):
            return None
        break
    else:
        return None
    w, b = w / m, b / m
    if gamma == 0:
        longer = np.linalg.norm(w) > np.linalg.norm(w_ref) * (1 + 1e-6)
    else:
        longer = w @ w + gamma * b * b > (w_ref @ w_ref + gamma * b_ref * b_ref) * (1 + 1e-6) ** 2
    if longer:
        return None
    return w, b


def angle(u: Tensor, v: Tensor) -> Tensor:
    """Angle in radians in ``[0, pi]`` between vectors along the last axis, broadcast over the rest.

    The angle of ``(w_t, b_t)`` to the max-margin direction falls like ``1 / log t`` (Soudry et al.
    2018, Theorem 3; with importance weights Xu, Ye & Ruan 2021). Uses Kahan's (2006, "How Futile are
    Mindless Assessments of Roundoff") ``2 atan2(||a - b||, ||a + b||)`` on the unit vectors
    ``a = u/||u||`` and ``b = v/||v||``, which is accurate for tiny and near-``pi`` angles (unlike ``acos``, whose
    error near 0 is ``sqrt(eps)``) and needs no clamping; identical directions give exactly 0.
    Each vector is first scaled by the power of two that brings its largest ``|entry|`` into
    ``[0.5, 1)`` (exact), so the angle is scale-invariant: the norm can neither overflow
    (entries of 1e20 in float32) nor underflow (1e-40). A zero vector (or ``d = 0``) is treated as
    having an arbitrary direction orthogonal to everything (``pi / 2``) rather than producing NaN.

    Args:
        u: ``(..., d)``.
        v: ``(d,)`` or ``(..., d)``, broadcastable against ``u``.

    Returns:
        Tensor of the broadcast leading shape (in the promoted floating dtype: at least float32).

    Raises:
        TypeError: complex inputs.

    Example:
        >>> angle(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))  # orthogonal
        tensor(1.5708)
        >>> angle(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([-1.0, -1.0]))
        tensor([3.1416, 2.3562])
    """
    u = torch.as_tensor(u)
    v = torch.as_tensor(v)
    dtype = torch.promote_types(torch.promote_types(u.dtype, v.dtype), torch.float32)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"angle needs real vectors; got dtypes {u.dtype} and {v.dtype}")
    u, v = u.to(dtype), v.to(dtype)
    if u.shape[-1] == 0 or v.shape[-1] == 0:
        shape = torch.broadcast_shapes(u.shape, v.shape)[:-1]
        return torch.full(shape, torch.pi / 2, dtype=dtype, device=u.device)
    a, b = _unit(u), _unit(v)
    num = torch.linalg.vector_norm(a - b, dim=-1)
    den = torch.linalg.vector_norm(a + b, dim=-1)
    zero = (torch.linalg.vector_norm(a, dim=-1) == 0) | (torch.linalg.vector_norm(b, dim=-1) == 0)
    out = 2.0 * torch.atan2(num, den)
    return torch.where(zero, torch.full_like(out, torch.pi / 2), out)


def _pow2_normalize(x: Tensor) -> Tensor:
    """``x`` (..., d) times the power of two that brings ``max |x_j|`` into [0.5, 1) (exact).

    Norms of the result can neither overflow nor underflow, and ``x / ||x||`` computed from it is
    bitwise the same as from ``x`` whenever that did not over- or underflow. Zero vectors stay 0.
    """
    e = torch.frexp(x.abs().amax(-1, keepdim=True)).exponent  # (..., 1); 0 for a zero vector
    return mul_pow2(x, -e)


def _unit(x: Tensor) -> Tensor:
    """``x / ||x||`` along the last axis, scale-invariant; 0 for a zero vector."""
    x = _pow2_normalize(x)
    # ||x|| >= 0.5 for a nonzero x after the rescaling, so the floor only turns 0/0 into 0.
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def linear_direction(w: Tensor, b: Tensor | float) -> Tensor:
    """Concatenate weights ``(..., d)`` and bias ``(...)`` into ``(..., d + 1)``.

    This is the vector that gradient descent with a trained bias aligns with the
    ``bias="homogeneous"`` max-margin separator (Soudry et al. 2018). ``b`` may be a float or 0-d
    tensor (broadcast); the result has the promoted dtype of ``w`` and ``b``.

    Raises:
        RuntimeError: ``b`` does not broadcast to ``w.shape[:-1]``.

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

    The quantity gradient descent on separable data drives up to its maximum (Soudry et al. 2018; for
    homogeneous networks Lyu & Li 2020; with importance weights Xu, Ye & Ruan 2021, Sec. 3).

    Negative when some training point is misclassified. For the ``"homogeneous"`` max-margin
    separator ``(w*, b*)`` this equals ``1 / ||(w*, b*)||``, the largest value any linear model
    with a bias can reach. It is invariant to the scale of ``(w, b)``: ``(w, b)`` is first scaled
    by the power of two that brings its largest ``|entry|`` into [0.5, 1) (exact), so parameters
    of 1e20 or 1e-30 in float32 neither overflow nor underflow the norm. Units: those of ``X``.
    ``(w, b) = 0`` gives NaN.

    Args:
        w: weights ``(..., d)``.
        b: biases ``(...)`` (or a float / 0-d tensor broadcast to ``w.shape[:-1]``).
        X: inputs ``(N, d)``.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.

    Returns:
        Tensor of shape ``w.shape[:-1]``, in the promoted dtype of ``w``, ``b`` and ``X`` (at
        least float32).

    Raises:
        ValueError: ``X`` is empty, or labels not in ``{0, 1}`` / ``{-1, +1}``.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]); y = torch.tensor([1, 0])
        >>> w = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
        >>> normalized_margin(w, torch.zeros(3), X, y)
        tensor([ 1.,  1., -1.])
    """
    theta = linear_direction(w, b)
    X = torch.as_tensor(X)
    if X.dim() != 2 or X.shape[0] == 0:
        raise ValueError(f"X must have shape (N, d) with N >= 1; got {tuple(X.shape)}")
    dtype = torch.promote_types(torch.promote_types(theta.dtype, X.dtype), torch.float32)
    theta = _pow2_normalize(theta.to(dtype))  # (..., d + 1)
    s = _signs(y).to(device=X.device, dtype=dtype)
    Z = torch.cat([X.to(dtype), torch.ones(X.shape[0], 1, dtype=dtype, device=X.device)], dim=1)
    scores = theta @ Z.T  # (..., N)
    m = (scores * s).amin(dim=-1)
    return m / torch.linalg.vector_norm(theta, dim=-1)
