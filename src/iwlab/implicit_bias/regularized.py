"""The L2-regularized minimizer of the importance-weighted logistic loss: prediction P7 of the notes.

With L2 of strength ``lambda > 0`` the weighted objective has a unique minimizer whose direction depends on
the weights; as ``lambda -> 0`` that direction tends to the hard-margin SVM (Rosset, Zhu & Hastie 2004,
"Margin maximizing loss functions", Thm 2.1; Xu, Ye & Ruan 2021 [I in the notes, Sec. 6, P7]). Gradient
descent with weight decay converges to it, so it is the prediction the experiment's GD runs are checked
against.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from iwlab.implicit_bias.geometry import _signs

__all__ = ["regularized_minimizer"]


def regularized_minimizer(X: Tensor, y: Tensor, weights: Tensor, weight_decay: float) -> Tensor:
    """``argmin_theta (1/N) sum_i w_i log(1 + exp(-s_i theta.x_i)) + (weight_decay / 2) ||theta||^2``.

    The objective gradient descent with coupled weight decay (``torch.optim.SGD(weight_decay=...)``, the
    gradient gains ``weight_decay * theta``) minimizes for a bias-free linear model under the trainer's
    ``"batch_size"`` normalization. Strictly convex for ``weight_decay > 0``, so the minimizer is unique;
    found by L-BFGS (:func:`scipy.optimize.minimize`) in float64 to a gradient norm of ``1e-12`` times the
    objective's scale, from ``theta = 0``.

    Args:
        X: inputs ``(N, d)``, finite.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.
        weights: ``(N,)`` finite, ``>= 0``.
        weight_decay: ``lambda``, finite and ``> 0``.

    Returns:
        ``theta`` float64 ``(d,)``.

    Raises:
        ValueError: bad shapes, non-finite entries, negative weights, ``weight_decay <= 0``, or the solver
            did not converge.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]); y = torch.tensor([1, 0])
        >>> theta = regularized_minimizer(X, y, torch.ones(2), 0.1)
        >>> round(float(theta[0]), 4), float(theta[1])  # sigmoid(-t) = 0.1 t
        (1.6335, 0.0)
    """
    Xn = torch.as_tensor(X).detach().cpu().to(torch.float64).numpy()
    if Xn.ndim != 2 or Xn.shape[0] == 0 or not np.all(np.isfinite(Xn)):
        raise ValueError(f"X must be a finite (N, d) tensor with N >= 1, got shape {tuple(Xn.shape)}")
    s = _signs(torch.as_tensor(y).detach().cpu()).numpy().astype(np.float64)
    w = torch.as_tensor(weights).detach().cpu().to(torch.float64).numpy()
    n = Xn.shape[0]
    if s.shape != (n,) or w.shape != (n,):
        raise ValueError(f"y and weights must have shape ({n},), got {s.shape} and {w.shape}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError("weights must be finite and >= 0")
    lam = float(weight_decay)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"weight_decay must be finite and > 0, got {weight_decay!r}")
    A = s[:, None] * Xn  # (N, d): s_i x_i

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u = A @ theta  # (N,) margins
        loss = float(w @ np.logaddexp(0.0, -u)) / n + 0.5 * lam * float(theta @ theta)
        grad = -(A.T @ (w * _sigmoid(-u))) / n + lam * theta
        return loss, grad

    scale = max(float(np.abs(A).max() * w.mean()), lam)
    res = minimize(
        objective,
        np.zeros(Xn.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12 * scale, "ftol": 0.0, "maxiter": 10_000},
    )
    gnorm = float(np.linalg.norm(objective(res.x)[1]))
    if not gnorm <= 1e-9 * scale:
        raise ValueError(f"the L-BFGS solve did not converge (gradient norm {gnorm:.3g}): {res.message}")
    return torch.from_numpy(res.x + 0.0)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|v|``."""
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out
