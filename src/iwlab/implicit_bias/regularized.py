"""The L2-regularized minimizer of the importance-weighted logistic loss: prediction P7 of the notes.

With L2 of strength ``lambda > 0`` the weighted objective has a unique minimizer whose direction depends on
the weights; as ``lambda -> 0`` that direction tends to the hard-margin SVM (Rosset, Zhu & Hastie 2004,
"Margin maximizing loss functions", Thm 2.1; Xu, Ye & Ruan 2021 [I in the notes, Sec. 6, P7]). Gradient
descent with weight decay converges to it, so it is the prediction the experiment's GD runs are checked
against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from iwlab.implicit_bias._checks import as_numpy_xy, float64_weights, positive_finite, real_scalar

__all__ = ["UNDERFLOW_RTOL", "regularized_minimizer"]


#: Largest accepted bound on the relative error of ``theta`` from data terms that underflow float64 (see
#: :func:`regularized_minimizer`, "Small lambda").
UNDERFLOW_RTOL = 1e-10


def regularized_minimizer(X: Tensor, y: Tensor, weights: Tensor, weight_decay: float) -> Tensor:
    """``argmin_theta (1/N) sum_i w_i log(1 + exp(-s_i theta.x_i)) + (weight_decay / 2) ||theta||^2``.

    The objective gradient descent with coupled weight decay (``torch.optim.SGD(weight_decay=...)``, the
    gradient gains ``weight_decay * theta``) minimizes for a bias-free linear model under the trainer's
    ``"batch_size"`` normalization. Strictly convex for ``weight_decay > 0``, so the minimizer is unique.
    Solved in float64: L-BFGS (:func:`scipy.optimize.minimize`) from ``theta = 0`` as a warm start, then
    damped Newton steps on the exact Hessian ``(1/N) sum_i w_i sigma(u_i) sigma(-u_i) a_i a_i^T + lambda I``
    (``a_i = s_i x_i``, ``u_i = a_i.theta``; Boyd & Vandenberghe 2004, Sec. 9.5) until the step is at
    float64 precision relative to ``||theta||``. The result is checked for stationarity *relative* to
    ``lambda ||theta||`` plus the data term's sum of absolute values (its rounding level, which dominates on
    non-separable data): for small ``lambda`` on separable data both gradient terms are ``~ lambda ||theta||``
    (``||theta|| ~ log(1 / lambda)``), so an absolute gradient test would stop far too early.

    Small ``lambda``: the balance ``lambda theta = (1/N) sum_i w_i sigma(-u_i) a_i`` is representable as long
    as the forces that matter do not underflow. A force below float64's smallest normal number ``tiny`` moves
    ``theta`` by at most ``tiny max_i(w_i ||a_i||) / (N lambda)`` (the Hessian is ``>= lambda I``), so the
    answer is refused when that bound exceeds ``UNDERFLOW_RTOL = 1e-10`` times ``||theta||`` -- for unit-scale
    data and weights below ``lambda ~ 1e-300`` (measured: mpmath agrees to ~1e-16 relative for ``lambda``
    from 1e-3 down to 1e-300 on such data). For the ``lambda -> 0`` limit use
    :func:`iwlab.implicit_bias.hard_margin_svm`: its direction is the limit of ``theta``'s.

    Args:
        X: inputs ``(N, d)``, finite, real, ``d >= 1``.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.
        weights: ``(N,)`` finite, ``>= 0``; any real non-bool dtype (integers converted exactly to float64).
        weight_decay: ``lambda``, a real number (Python, numpy or 0-d tensor; not bool), finite and ``> 0``.

    Returns:
        ``theta`` float64 ``(d,)``.

    Raises:
        ValueError: bad shapes, ``d = 0``, non-finite entries, negative weights, ``weight_decay <= 0`` or so
            small that float64 cannot represent the balance (see "Small lambda"), or the solve did not reach
            a stationary point.
        TypeError: ``weight_decay`` not a real number; complex ``X``, ``y`` or ``weights``; bool ``weights``.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]); y = torch.tensor([1, 0])
        >>> theta = regularized_minimizer(X, y, torch.ones(2), 0.1)
        >>> round(float(theta[0]), 4), float(theta[1])  # sigmoid(-t) = 0.1 t
        (1.6335, 0.0)
        >>> round(float(regularized_minimizer(X, y, torch.ones(2), 1e-16)[0]), 4)  # sigmoid(-t) = 1e-16 t
        33.3348
    """
    lam = positive_finite(real_scalar(weight_decay, "weight_decay"), "weight_decay")
    Xn, s = as_numpy_xy(X, y)
    n, d = Xn.shape
    if d == 0:
        raise ValueError("X has no features (d = 0)")
    w = float64_weights(weights, n)
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError("weights must be finite and >= 0")
    A = s[:, None] * Xn  # (N, d): s_i x_i
    tiny = np.finfo(np.float64).tiny
    too_small = (
        f"weight_decay {lam:.3g} is too small for float64 (the data forces balancing it underflow); "
        "for lambda -> 0 use hard_margin_svm"
    )
    if lam < tiny:
        raise ValueError(too_small)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u = A @ theta  # (N,) margins
        loss = float(w @ np.logaddexp(0.0, -u)) / n + 0.5 * lam * float(theta @ theta)
        grad = -(A.T @ (w * _sigmoid(-u))) / n + lam * theta
        return loss, grad

    scale = max(float(np.abs(A).max() * w.mean()), lam)
    with np.errstate(over="ignore", invalid="ignore"):  # huge data: L-BFGS is only a warm start, checked below
        res = minimize(
            objective,
            np.zeros(d),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-12 * scale, "ftol": 0.0, "maxiter": 10_000},
        )
    theta = res.x if np.all(np.isfinite(res.x)) else np.zeros(d)
    theta = _newton(objective, A, w, lam, theta)
    u = A @ theta
    gnorm = _norm(objective(theta)[1])
    # Rounding bound of the gradient: lambda ||theta|| plus the data term's sum of absolute values.
    ref = lam * _norm(theta) + _norm(np.abs(A).T @ (w * _sigmoid(-u))) / n
    if not gnorm <= 1e-9 * ref:
        raise ValueError(f"the solve did not converge (gradient norm {gnorm:.3g}, {gnorm / ref:.3g} relative)")
    force = float((w * np.linalg.norm(A, axis=1)).max()) / n  # largest possible force per unit sigma
    if force > 0 and not tiny * force / lam <= UNDERFLOW_RTOL * _norm(theta):
        raise ValueError(too_small)
    return torch.from_numpy(theta + 0.0)


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without under- or overflow: scaled by the largest ``|v_i|`` first (1e-200 stays 1e-200)."""
    m = float(np.abs(v).max()) if v.size else 0.0
    return m * float(np.linalg.norm(v / m)) if m > 0 and np.isfinite(m) else m


def _newton(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    A: np.ndarray,
    w: np.ndarray,
    lam: float,
    theta: np.ndarray,
) -> np.ndarray:
    """Newton from ``theta`` (d,) on ``objective`` with Hessian ``A^T diag(w sigma sigma') A / N + lam I``.

    The step length comes from the directional derivative ``phi'(t) = grad(theta + t step) . step``, not from
    the objective: the objective can hold a large part that does not depend on ``theta`` (a point at
    ``x = 0``, or two identical points with opposite labels), next to which its decrease is below rounding,
    while the gradient still resolves it. ``t = 1`` is taken when ``|phi'(1)| <= |phi'(0)| / 2``; otherwise
    ``t`` is doubled while ``phi'`` stays negative (far from the optimum of a nearly separable problem a
    Newton step moves ``||theta||`` by only ~1, and ``||theta|| ~ log(1 / lam)``) and the sign change is
    bisected. Stops when the step is below float64 precision relative to ``||theta||``.

    Raises:
        ValueError: the Hessian is singular in float64 (``lam`` below the resolution of the data's curvature,
            e.g. data spanning fewer than ``d`` directions), or 500 steps did not converge.
    """
    n, d = A.shape

    def slope(t: float, step: np.ndarray) -> float:
        return float(objective(theta + t * step)[1] @ step)

    g = objective(theta)[1]
    for _ in range(500):
        u = A @ theta  # (N,)
        q = w * _sigmoid(u) * _sigmoid(-u)  # (N,) curvature weights, accurate for |u| large
        H = (A.T * q) @ A / n + lam * np.eye(d)  # (d, d), SPD in exact arithmetic
        try:
            step = -np.linalg.solve(H, g)  # (d,)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"weight_decay {lam:.3g} is below float64's resolution of these data's curvature (singular Hessian; "
                "e.g. the data span fewer directions than d); use a larger weight_decay, or hard_margin_svm"
            ) from None
        d0 = float(g @ step)
        if not d0 < 0:  # no descent left at float64 precision
            break
        d1 = slope(1.0, step)
        if abs(d1) <= 0.1 * abs(d0):  # near the optimum: the full Newton step (quadratic convergence)
            t = 1.0
        else:
            lo, hi = (1.0, 2.0) if d1 < 0 else (0.0, 1.0)
            if d1 < 0:
                while hi < 2.0**40 and slope(hi, step) < 0:
                    lo, hi = hi, 2 * hi
            for _ in range(60):  # bisect the sign change of phi'
                mid = (lo + hi) / 2
                if slope(mid, step) < 0:
                    lo = mid
                else:
                    hi = mid
                if hi - lo <= 1e-3 * hi:
                    break
            t = lo if lo > 0 else hi / 2
        theta_new = theta + t * step
        small = _norm(theta_new - theta) <= 4 * np.finfo(np.float64).eps * _norm(theta_new)
        theta, g = theta_new, objective(theta_new)[1]
        if small or not np.any(g):
            return theta
    else:
        raise ValueError("the Newton polish did not converge in 500 steps")
    return theta


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|v|``."""
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out
