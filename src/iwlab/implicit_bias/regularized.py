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
    gnorm = float(np.linalg.norm(objective(theta)[1]))
    # Rounding bound of the gradient: lambda ||theta|| plus the data term's sum of absolute values.
    ref = lam * float(np.linalg.norm(theta)) + float(np.linalg.norm(np.abs(A).T @ (w * _sigmoid(-u)))) / n
    if not gnorm <= 1e-9 * ref:
        raise ValueError(f"the solve did not converge (gradient norm {gnorm:.3g}, {gnorm / ref:.3g} relative)")
    force = float((w * np.linalg.norm(A, axis=1)).max()) / n  # largest possible force per unit sigma
    if force > 0 and not tiny * force / lam <= UNDERFLOW_RTOL * float(np.linalg.norm(theta)):
        raise ValueError(too_small)
    return torch.from_numpy(theta + 0.0)


def _newton(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    A: np.ndarray,
    w: np.ndarray,
    lam: float,
    theta: np.ndarray,
) -> np.ndarray:
    """Damped Newton from ``theta`` (d,) on ``objective`` with Hessian ``A^T diag(w sigma sigma') A / N + lam I``.

    Backtracking (Armijo) line search that also tries doubled steps while they keep decreasing the
    objective: far from the optimum of a nearly separable problem a Newton step of the logistic loss
    moves ``||theta||`` by only ~1, and ``||theta||`` is ``~ log(1 / lam)``. Stops when the step is below
    float64 precision relative to ``||theta||``; near the optimum, where the objective's decrease is below
    its rounding, full steps are taken (quadratic convergence).
    """
    n, d = A.shape
    f, g = objective(theta)
    for _ in range(500):
        u = A @ theta  # (N,)
        q = w * _sigmoid(u) * _sigmoid(-u)  # (N,) curvature weights, accurate for |u| large
        H = (A.T * q) @ A / n + lam * np.eye(d)  # (d, d), SPD
        step = -np.linalg.solve(H, g)  # (d,)
        decrease = -float(g @ step)  # Newton decrement squared: the predicted decrease is half of it
        if not decrease > 64 * np.finfo(np.float64).eps * abs(f):  # below f's rounding: full step
            theta_new = theta + step
            f_new, g_new = objective(theta_new)
        else:
            t, theta_new = 1.0, theta + step
            f_new, g_new = objective(theta_new)
            while not f_new <= f - 1e-4 * t * decrease and t > 1e-10:  # backtrack
                t /= 2
                theta_new = theta + t * step
                f_new, g_new = objective(theta_new)
            while t == 1.0 or (t > 1.0 and t < 2.0**40):  # extrapolate while doubling still helps
                cand = theta + 2 * t * step
                f_c, g_c = objective(cand)
                if not f_c <= f_new - 1e-4 * t * decrease:
                    break
                t, theta_new, f_new, g_new = 2 * t, cand, f_c, g_c
        small = np.linalg.norm(theta_new - theta) <= 4 * np.finfo(np.float64).eps * np.linalg.norm(theta_new)
        theta, f, g = theta_new, f_new, g_new
        if small or not np.any(g):
            break
    return theta


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|v|``."""
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out
