"""The weight-dependent offset of gradient descent on separable data, and the direction error it predicts.

On linearly separable data, GD with step ``lr`` on ``L(theta) = sum_i weights_i l(s_i theta.z_i)``
(``l`` exponential or logistic) follows ``theta(t) = theta_hat log t + rho + r(t)``, ``r(t) -> 0``,
where ``theta_hat`` is the hard-margin SVM (:func:`iwlab.implicit_bias.hard_margin_svm`) and the
importance weights enter only through the offset ``rho`` (Soudry et al. 2018, Thm 3, for unit
weights; Xu, Ye & Ruan 2021 [I in the notes, sec. 2]). So the direction error decays like
``1 / log t`` with a weight-dependent constant (predictions P2, P3 of the notes, sec. 6).

Example:
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
    >>> off = offset(X, y, torch.tensor([1.0, 4.0]), lr=0.5)  # rho = (log 0.5, -log 2), by hand
    >>> [round(v, 6) for v in off.rho.tolist()], off.determined
    ([-0.693147, -0.693147], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from iwlab.implicit_bias.geometry import _signs, angle
from iwlab.implicit_bias.svm import SVMSolution, hard_margin_svm

__all__ = ["Offset", "asymptotic_constant", "offset", "predicted_direction_error"]


@dataclass(frozen=True, eq=False)
class Offset:
    """The GD offset ``rho``: the output of :func:`offset`.

    Attributes:
        rho: ``(D,)`` float64, the minimum-norm solution of the offset equations (``D = d``, or
            ``d + 1`` for ``bias="homogeneous"``, the bias last).
        determined: whether the support vectors span ``R^D`` (then ``rho`` is unique).
        free_basis: ``(D, k)`` float64, orthonormal basis of the directions the equations leave free
            (``k = D - rank``; ``k = 0`` when determined). ``rho`` is orthogonal to it.
        svm: the :class:`~iwlab.implicit_bias.SVMSolution` it was computed from.
    """

    rho: Tensor
    determined: bool
    free_basis: Tensor
    svm: SVMSolution


def offset(
    X: Tensor,
    y: Tensor,
    weights: Tensor,
    lr: float,
    *,
    bias: Literal["none", "homogeneous"] = "none",
    svm: SVMSolution | None = None,
) -> Offset:
    """Offset ``rho`` of GD on importance-weighted exponential-tailed loss on separable data.

    Equation (Xu, Ye & Ruan 2021, weighted form of Soudry et al. 2018, Thm 3, ``eta exp(-x_n.w~) =
    alpha_n``; [I in the notes, sec. 2]): GD ``theta <- theta - lr grad L`` on ``L(theta) = sum_i
    weights_i l(s_i theta.z_i)`` has ``theta(t) = theta_hat log t + rho + r(t)`` with ``r -> 0`` and

        ``s_i z_i.rho = log(lr * weights_i / alpha_i)`` for every support vector ``i``,

    ``theta_hat = sum_i alpha_i s_i z_i`` the SVM, ``z_i = x_i`` ("none") or ``(x_i, 1)``
    ("homogeneous"). Solved by least squares on the support rows; the minimum-norm solution is
    returned. When the support vectors do not span ``R^D`` (``determined=False``) the component of
    ``theta(t)`` in ``span(free_basis)`` is not fixed by these equations: it depends on the
    initialization and on the transient, where all weights act, including those of non-support vectors
    (P5 of the notes); ``rho`` then gives only the determined part.

    Normalization: the weights multiply the per-example losses of a *sum*. For the mean form
    ``(1/N) sum_i w_i l_i`` (iwlab's ``normalization="batch_size"``, full batch) pass ``weights / N``;
    scaling all weights by ``c`` is the same as scaling ``lr`` by ``c`` (P4).

    Args:
        X: inputs ``(N, d)``.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.
        weights: ``(N,)`` finite, ``> 0`` (a zero weight would put the offset at ``-inf``).
        lr: the GD step, finite ``> 0``.
        bias: ``"none"`` (model ``theta.x``) or ``"homogeneous"`` (model ``w.x + b``, bias trained).
        svm: the precomputed ``hard_margin_svm(X, y, bias=bias)`` (computed when ``None``).

    Returns:
        :class:`Offset`.

    Raises:
        ValueError: bad ``weights``, ``lr``, ``bias`` (``"free"`` included: GD with a trained bias
            converges to the homogeneous SVM), ``svm`` of another bias or size; degenerate data (a
            point with margin 1 within 1e-9 but ``alpha = 0``, where Soudry et al.'s strict
            complementarity fails), or inconsistent offset equations (more support vectors than the
            equations allow); or as :func:`hard_margin_svm`.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [2.0, 2.0]]); y = torch.tensor([1, 1])  # one support vector
        >>> off = offset(X, y, torch.ones(2), lr=1.0)
        >>> off.determined, off.free_basis.shape
        (False, torch.Size([2, 1]))
    """
    if bias == "free":
        raise ValueError("bias='free' has no GD offset: GD with a trained bias converges to the homogeneous SVM")
    if bias not in ("none", "homogeneous"):
        raise ValueError(f"bias must be 'none' or 'homogeneous', got {bias!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    Xn = torch.as_tensor(X).detach().cpu().to(torch.float64).numpy()
    n = Xn.shape[0] if Xn.ndim == 2 else -1
    wt = torch.as_tensor(weights).detach().cpu()
    if wt.shape != (n,) or not wt.dtype.is_floating_point:
        raise ValueError(f"weights must be a float tensor of shape ({n},), got {wt.dtype} {tuple(wt.shape)}")
    wt = wt.to(torch.float64).numpy()
    if not (np.all(np.isfinite(wt)) and np.all(wt > 0)):
        raise ValueError("weights must be finite and > 0 (a zero weight puts the offset at -inf)")
    if svm is None:
        svm = hard_margin_svm(X, y, bias=bias)
    elif not isinstance(svm, SVMSolution) or svm.bias != bias or svm.alpha.shape != (n,):
        raise ValueError(f"svm must be hard_margin_svm(X, y, bias={bias!r}) for these {n} points")
    weak = np.flatnonzero((svm.margins.numpy() <= 1 + 1e-9) & ~svm.support.numpy())
    if len(weak):  # alpha is then not unique and GD's offset is not given by these equations
        raise ValueError(f"degenerate data: points {weak.tolist()} have margin 1 but alpha = 0; no offset equations")
    s = _signs(torch.as_tensor(y).detach().cpu()).numpy().astype(np.float64)  # (N,)
    Z = Xn if bias == "none" else np.c_[Xn, np.ones(n)]  # (N, D)
    S = svm.support.numpy()
    A = s[S, None] * Z[S]  # (k, D) support rows
    h = np.log(lr) + np.log(wt[S]) - np.log(svm.alpha.numpy()[S])  # (k,)
    U, sig, Vt = np.linalg.svd(A, full_matrices=True)
    rank = int(np.sum(sig > sig.max() * max(A.shape) * np.finfo(np.float64).eps))
    rho = Vt[:rank].T @ ((U[:, :rank].T @ h) / sig[:rank])  # minimum-norm least squares
    res = float(np.linalg.norm(A @ rho - h))
    if res > 1e-8 * max(1.0, float(np.linalg.norm(h))):
        raise ValueError(f"offset equations are inconsistent on the {len(h)} support vectors (residual {res:.3g})")
    return Offset(
        rho=torch.from_numpy(rho + 0.0),
        determined=rank == Z.shape[1],
        free_basis=torch.from_numpy(np.ascontiguousarray(Vt[rank:].T)),
        svm=svm,
    )


def _perp_parts(svm_direction: Tensor, rho: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """float64 ``theta_hat``, ``rho``, ``u = theta_hat / ||theta_hat||`` and ``||P_perp rho||``."""
    th = torch.as_tensor(svm_direction).detach().to(torch.float64)
    rho = torch.as_tensor(rho).detach().to(torch.float64)
    if th.dim() != 1 or rho.shape != th.shape:
        raise ValueError(
            f"svm_direction and rho must have one shape (D,), got {tuple(th.shape)} and {tuple(rho.shape)}"
        )
    if not (torch.isfinite(th).all() and torch.isfinite(rho).all()) or not th.abs().max() > 0:
        raise ValueError("svm_direction must be finite and nonzero, rho finite")
    u = th / torch.linalg.vector_norm(th)
    return th, rho, u, torch.linalg.vector_norm(rho - (rho @ u) * u)


def asymptotic_constant(svm_direction: Tensor, rho: Tensor) -> Tensor:
    """``C = ||P_perp rho|| / ||theta_hat||``, the limit of ``dir_err(t) * log t``.

    ``P_perp`` projects onto the orthogonal complement of ``theta_hat``. Xu, Ye & Ruan 2021 [I, notes
    sec. 6, P3: ``C(w)``]; the first-order expansion of :func:`predicted_direction_error` for
    ``t -> inf``. Approached slowly when ``rho`` is large (notes, practical note).

    Args:
        svm_direction: ``theta_hat`` ``(D,)`` (e.g. ``SVMSolution.direction``), nonzero.
        rho: ``(D,)`` (``Offset.rho``).

    Returns:
        0-d float64 tensor.

    Raises:
        ValueError: shapes differ or are not 1-d, non-finite entries, or ``theta_hat = 0``.

    Example:
        >>> asymptotic_constant(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0]))  # sqrt(2) / sqrt(2)
        tensor(1., dtype=torch.float64)
    """
    th, _, _, perp = _perp_parts(svm_direction, rho)
    return perp / torch.linalg.vector_norm(th)


def predicted_direction_error(
    t: Tensor,
    svm_direction: Tensor,
    rho: Tensor,
    *,
    kind: Literal["chord", "angle", "tangent"] = "chord",
) -> Tensor:
    """Direction error of the predicted GD parameter ``v(t) = theta_hat log t + rho`` vs ``theta_hat``'s direction.

    ``u = theta_hat / ||theta_hat||``.

    Xu, Ye & Ruan 2021 [I, notes sec. 2 and sec. 6, P3] (Soudry et al. 2018, Thm 3, for unit weights):
    ``theta(t) = v(t) + r(t)`` with ``r -> 0``, so this predicts the measured direction error of GD.

    * ``"chord"``: ``||v / ||v|| - u||`` (exact);
    * ``"angle"``: the angle between ``v`` and ``u`` in radians (:func:`iwlab.implicit_bias.angle`);
    * ``"tangent"``: the notes' first-order form ``||P_perp rho|| / (||theta_hat|| log t + rho.u)``,
      which is ``tan(angle)``; defined only where the denominator is positive.

    Args:
        t: steps ``(T,)``, every ``t >= 2``, real (computed in float64).
        svm_direction: ``theta_hat`` ``(D,)`` (``SVMSolution.direction``), nonzero.
        rho: ``(D,)`` (``Offset.rho``).
        kind: ``"chord"``, ``"angle"`` or ``"tangent"``.

    Returns:
        ``(T,)`` float64.

    Raises:
        ValueError: bad shapes, ``t < 2`` or non-finite, unknown ``kind``, or (``"tangent"``) a
            denominator ``<= 0`` (``t`` too small for the first-order form).

    Example:
        >>> theta_hat, rho = torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])
        >>> predicted_direction_error(torch.tensor([math.e**2]), theta_hat, rho, kind="tangent")  # 1 / 2
        tensor([0.5000], dtype=torch.float64)
    """
    if kind not in ("chord", "angle", "tangent"):
        raise ValueError(f"kind must be 'chord', 'angle' or 'tangent', got {kind!r}")
    th, rho, u, perp = _perp_parts(svm_direction, rho)
    t = torch.as_tensor(t).detach()
    if t.dim() != 1 or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"t must be a real tensor of shape (T,), got {t.dtype} {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not (torch.isfinite(t).all() and (t >= 2).all()):
        raise ValueError("t must be finite and >= 2")
    log_t = torch.log(t)  # (T,)
    if kind == "tangent":
        den = torch.linalg.vector_norm(th) * log_t + rho @ u  # (T,)
        if not (den > 0).all():
            raise ValueError("t too small for kind='tangent': ||theta_hat|| log t + rho.u <= 0; use 'chord'")
        return perp / den
    v = log_t[:, None] * th + rho  # (T, D)
    if kind == "angle":
        return angle(v, u)
    return torch.linalg.vector_norm(v / torch.linalg.vector_norm(v, dim=-1, keepdim=True) - u, dim=-1)
