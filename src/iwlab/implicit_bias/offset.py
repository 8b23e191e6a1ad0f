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

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from iwlab.functional._scaling import mul_pow2
from iwlab.implicit_bias._checks import as_numpy_xy, float64_weights, positive_finite, real_scalar, real_tensor
from iwlab.implicit_bias.geometry import _pow2_normalize, _unit, angle
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
        weights: ``(N,)`` finite, ``> 0`` (a zero weight would put the offset at ``-inf``); any real
            non-bool dtype (integers are converted exactly to float64).
        lr: the GD step, a real number (Python, numpy or 0-d tensor; not bool), finite ``> 0``.
        bias: ``"none"`` (model ``theta.x``) or ``"homogeneous"`` (model ``w.x + b``, bias trained).
        svm: the precomputed ``hard_margin_svm(X, y, bias=bias)`` (computed when ``None``).

    Returns:
        :class:`Offset`.

    Raises:
        ValueError: bad ``X``, ``weights``, ``lr``, ``bias`` (``"free"`` included: GD with a trained bias
            converges to the homogeneous SVM), ``d = 0`` with ``"none"``, ``svm`` of another bias, size or
            data (its margins differ from ``s (X w + b)`` by over 1e-9 relative); degenerate data (a
            point with margin 1 within 1e-9 but ``alpha = 0``, where Soudry et al.'s strict
            complementarity fails), or inconsistent offset equations (more support vectors than the
            equations allow); or as :func:`hard_margin_svm`.
        TypeError: ``lr`` not a real number; complex ``X``, ``y`` or ``weights``; bool ``weights``.

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
    lr = positive_finite(real_scalar(lr, "lr"), "lr")
    Xn, s = as_numpy_xy(X, y)  # X's shape is checked before the weights' (which it fixes)
    n, d = Xn.shape
    if d == 0 and bias == "none":
        raise ValueError("X has no features (d = 0): without a bias there is no separator and no offset")
    wt = float64_weights(weights, n)
    if not (np.all(np.isfinite(wt)) and np.all(wt > 0)):
        raise ValueError("weights must be finite and > 0 (a zero weight puts the offset at -inf)")
    if svm is None:
        svm = hard_margin_svm(X, y, bias=bias)
    elif not isinstance(svm, SVMSolution) or svm.bias != bias or svm.alpha.shape != (n,) or svm.w.shape != (d,):
        raise ValueError(f"svm must be hard_margin_svm(X, y, bias={bias!r}) for these {n} points in {d} dimensions")
    else:  # same shapes but maybe other data or labels: its margins must be those of (X, y)
        margins = s * (Xn @ svm.w.numpy() + svm.b)  # (N,)
        if not np.all(np.abs(margins - svm.margins.numpy()) <= 1e-9 * np.maximum(np.abs(margins), 1.0)):
            raise ValueError("svm was not computed from these X and y: its margins differ from s * (X w + b)")
        # the margins can agree for other data (any points on the same margin lines): w must also be the
        # dual combination sum_i alpha_i s_i z_i of these points (and b its bias part)
        Zc = Xn if bias == "none" else np.c_[Xn, np.ones(n)]
        combo = (svm.alpha.numpy() * s) @ Zc  # (D,)
        target = svm.w.numpy() if bias == "none" else np.r_[svm.w.numpy(), svm.b]
        if not np.all(np.abs(combo - target) <= 1e-9 * max(float(np.abs(target).max()), 1e-300)):
            raise ValueError("svm was not computed from these X and y: its w is not sum_i alpha_i s_i x_i here")
    weak = np.flatnonzero((svm.margins.numpy() <= 1 + 1e-9) & ~svm.support.numpy())
    if len(weak):  # alpha is then not unique and GD's offset is not given by these equations
        raise ValueError(f"degenerate data: points {weak.tolist()} have margin 1 but alpha = 0; no offset equations")
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


def _exponent(x: Tensor) -> Tensor:
    """int ``e`` with ``max |x| = m 2**e``, ``m`` in [0.5, 1) (0 for a zero ``x``), as a 0-d tensor."""
    return torch.frexp(x.abs().max()).exponent


def _perp_parts(svm_direction: Tensor, rho: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """float64 ``theta_hat``, ``rho``, ``u = theta_hat / ||theta_hat||``, ``||theta_hat||`` and ``||P_perp rho||``.

    Norms are taken of the vectors scaled by a power of two (exact) and scaled back, so entries of
    1e-170 or 1e170 neither underflow nor overflow the squares; in the normal range the numbers are
    bitwise those of the direct formulas.
    """
    th = real_tensor(svm_direction, "svm_direction", allow_bool=False).to(torch.float64)
    rho = real_tensor(rho, "rho", allow_bool=False).to(torch.float64)
    if th.dim() != 1 or rho.shape != th.shape or th.numel() == 0:
        raise ValueError(
            f"svm_direction and rho must have one shape (D,) with D >= 1, got {tuple(th.shape)} and {tuple(rho.shape)}"
        )
    if not (torch.isfinite(th).all() and torch.isfinite(rho).all()) or not th.abs().max() > 0:
        raise ValueError("svm_direction must be finite and nonzero, rho finite")
    u = _unit(th)  # (D,)
    th_norm = mul_pow2(torch.linalg.vector_norm(_pow2_normalize(th)), _exponent(th))
    k = _exponent(rho)
    r = mul_pow2(rho, -k)  # (D,), max |r| in [0.5, 1)
    return th, rho, u, th_norm, mul_pow2(torch.linalg.vector_norm(r - (r @ u) * u), k)


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

    Scale-invariant (``C(c theta_hat, c rho) = C(theta_hat, rho)``) and computed with power-of-two scaling, so
    entries of 1e-170 or 1e170 give the right value; only a ``C`` beyond float64's range is ``inf`` (or 0).

    Raises:
        ValueError: shapes differ or are not 1-d, non-finite entries, or ``theta_hat = 0``.
        TypeError: complex or bool ``svm_direction`` or ``rho``.

    Example:
        >>> asymptotic_constant(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0]))  # sqrt(2) / sqrt(2)
        tensor(1., dtype=torch.float64)
    """
    _, _, _, th_norm, perp = _perp_parts(svm_direction, rho)
    return perp / th_norm


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

    Directions are computed from ``theta_hat`` and ``rho`` scaled by a power of two (exact), so entries of
    1e-170 or 1e170 neither underflow nor overflow.

    Raises:
        ValueError: bad shapes, ``t < 2`` or non-finite, unknown ``kind``, or (``"tangent"``) a
            denominator ``<= 0`` (``t`` too small for the first-order form).
        TypeError: complex or bool ``svm_direction`` or ``rho``.

    Example:
        >>> import math
        >>> theta_hat, rho = torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])
        >>> predicted_direction_error(torch.tensor([math.e**2]), theta_hat, rho, kind="tangent")  # 1 / 2
        tensor([0.5000], dtype=torch.float64)
    """
    if kind not in ("chord", "angle", "tangent"):
        raise ValueError(f"kind must be 'chord', 'angle' or 'tangent', got {kind!r}")
    th, rho, u, th_norm, perp = _perp_parts(svm_direction, rho)
    t = torch.as_tensor(t).detach()
    if t.dim() != 1 or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"t must be a real tensor of shape (T,), got {t.dtype} {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not (torch.isfinite(t).all() and (t >= 2).all()):
        raise ValueError("t must be finite and >= 2")
    log_t = torch.log(t)  # (T,)
    if kind == "tangent":
        den = th_norm * log_t + rho @ u  # (T,)
        if not (den > 0).all():
            raise ValueError("t too small for kind='tangent': ||theta_hat|| log t + rho.u <= 0; use 'chord'")
        return perp / den
    # v's direction, from theta_hat and rho scaled by one power of two (exact): v cannot overflow.
    k = torch.maximum(_exponent(th), _exponent(rho))
    v = log_t[:, None] * mul_pow2(th, -k) + mul_pow2(rho, -k)  # (T, D)
    if kind == "angle":
        return angle(v, u)
    return torch.linalg.vector_norm(_unit(v) - u, dim=-1)
