"""The KKT polish of the hard-margin SVM solvers (internal to :mod:`iwlab.implicit_bias.svm`).

Moved unchanged from :mod:`iwlab.implicit_bias.svm` (which imports it, so patching
``iwlab.implicit_bias.svm._polish_free`` still reaches the solver).
"""

from __future__ import annotations

import numpy as np

__all__ = ["_polish_free"]


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
    if gamma == 0 or gamma == np.inf:  # (inf: bias "none", b = 0)
        longer = np.linalg.norm(w) > np.linalg.norm(w_ref) * (1 + 1e-6)
    else:
        longer = w @ w + gamma * b * b > (w_ref @ w_ref + gamma * b_ref * b_ref) * (1 + 1e-6) ** 2
    if longer:
        return None
    return w, b
