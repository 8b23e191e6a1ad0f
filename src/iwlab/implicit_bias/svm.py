"""Exact hard-margin linear SVMs (three bias conventions) and their dual coefficients.

:func:`max_margin_separator` and :func:`max_margin_direction` are moved unchanged from the former
single-file ``iwlab.implicit_bias`` (bitwise the same numbers). New: the convention ``bias="none"``
(no bias at all) and :func:`hard_margin_svm`, which also returns the dual coefficients ``alpha`` that
the offset of gradient descent depends on (:func:`iwlab.implicit_bias.offset`).

Example:
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
    >>> sol = hard_margin_svm(X, y)  # bias="none": min ||w|| s.t. s_i w.x_i >= 1
    >>> sol.w.tolist(), sol.alpha.tolist(), sol.b
    ([1.0, -1.0], [1.0, 1.0], 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from iwlab.implicit_bias._checks import as_numpy_xy
from iwlab.implicit_bias._kkt import _polish_free
from iwlab.implicit_bias.geometry import linear_direction

__all__ = ["SVMSolution", "hard_margin_svm", "max_margin_direction", "max_margin_separator"]

#: The constant feature of ``bias="free"`` is ``FREE_BIAS_SCALE * max|x_ij|`` (see
#: :func:`max_margin_separator`).
FREE_BIAS_SCALE = 1e4

#: Data whose largest ``|x_ij|`` has a binary exponent outside this range (``frexp``: ``|x| = m 2**e``
#: with ``m`` in [0.5, 1)), i.e. lies outside ``[2**-5, 2**4)``, are rescaled by ``2**-e`` before
#: the solve (see :func:`max_margin_separator`). Inside it the solver runs on the data as given, so
#: results there are bitwise those of earlier versions.
DATA_EXPONENT_RANGE = (-4, 4)

#: Dual coefficients ``alpha_i <= SUPPORT_RTOL * max_j alpha_j`` count as zero (not a support vector).
SUPPORT_RTOL = 1e-8


def _data_exponent(amax: float) -> int:
    """``e`` with ``amax = m 2**e``, ``m`` in [0.5, 1); 0 when ``amax`` is 0 or inside :data:`DATA_EXPONENT_RANGE`."""
    e = int(np.frexp(amax)[1])
    if amax == 0 or DATA_EXPONENT_RANGE[0] <= e <= DATA_EXPONENT_RANGE[1]:
        e = 0
    return e


def _ldp(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = argmin ||x|| s.t. G x >= 1`` for ``G (N, D)``, scaled so ``min (G x) = 1``, and NNLS's ``u (N,)``.

    Lawson & Hanson (1974), LDP via NNLS (see :func:`max_margin_separator`). ``u > 0`` marks the support.

    Raises:
        ValueError: no ``x`` with ``G x > 0`` exists (the data are not linearly separable).
    """
    n, D = G.shape
    E = np.concatenate([G.T, np.ones((1, n))], axis=0)  # (D + 1, N)
    f = np.zeros(D + 1)
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
    return x / m, u  # exact normalization min_i s_i (w.x_i + b) = 1


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
    Xn, s = as_numpy_xy(X, y)
    n, d = Xn.shape

    amax = float(np.abs(Xn).max()) if Xn.size else 0.0
    e = _data_exponent(amax)  # amax = m 2**e, m in [0.5, 1)
    unit = np.ldexp(1.0, e)  # exact power of two: dividing by it only moves exponents
    Xn = Xn / unit  # (N, d), max |x| in [0.5, 1) when rescaled
    # In these units the problem is min ||w'||^2 + gamma b^2 s.t. s_i (w'.x'_i + b) >= 1, solved as
    # the LDP with constant feature c = gamma**-0.5 (w = w' / unit afterwards).
    c_free = FREE_BIAS_SCALE * (amax / unit if amax > 0 else 1.0)
    if bias == "homogeneous":
        with np.errstate(over="ignore"):  # inf for data beyond ~1e154: the bias is then forbidden (c = 0)
            gamma = unit * unit
        # The true feature 1 / unit is huge for tiny data (the bias is nearly free) and tiny for
        # large data (the bias is nearly forbidden). Beyond [c_free / FREE_BIAS_SCALE**2, c_free]
        # it would only ruin the NNLS's conditioning (and, when tiny, its separability test), so the
        # LDP runs with the clipped feature: it decides separability (which does not depend on
        # gamma) and finds a support, and the KKT polish below restores the exact gamma.
        with np.errstate(over="ignore", divide="ignore"):  # 1 / unit is inf for subnormal data: clipped here
            c = min(max(1.0 / unit, c_free / FREE_BIAS_SCALE**2), c_free)
    else:
        gamma = 0.0
        c = c_free

    Z = np.concatenate([Xn, np.full((n, 1), c)], axis=1)  # augmented inputs (N, d + 1)
    G = s[:, None] * Z  # constraints G x >= 1
    x, u = _ldp(G)
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
    with np.errstate(over="ignore"):  # checked next: w ~ 1 / scale overflows for data below ~1e-308
        w = w / unit  # back to the caller's scale; b is scale-free: w.x + b = (w unit).(x / unit) + b
    _check_finite_w(w, amax)
    w = torch.from_numpy(np.ascontiguousarray(w) + 0.0)  # "+ 0.0" turns -0.0 into 0.0
    return w, b + 0.0


def _check_finite_w(w: np.ndarray, amax: float) -> None:
    """ValueError when the caller-scale ``w`` (which grows like ``1 / scale`` of the data) overflowed."""
    if not np.all(np.isfinite(w)):
        raise ValueError(f"the SVM's w (~ 1 / scale) overflows float64 for data of scale {amax:.3g}; rescale X")


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


def _separator_none(Xn: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``w (d,)`` of ``min ||w|| s.t. s_i w.x_i >= 1`` (caller's scale; data ``c X`` give ``w / c`` exactly).

    The LDP with rows ``s_i x_i`` (no constant column) on the data divided by ``2**e``
    (:func:`_data_exponent`), then the KKT polish with ``gamma = inf`` (``b = 0``; LDP answer if it fails).
    """
    amax = float(np.abs(Xn).max())
    unit = np.ldexp(1.0, _data_exponent(amax))
    Xs = Xn / unit  # (N, d), exact
    w, u = _ldp(s[:, None] * Xs)
    polished = _polish_free(Xs, s, u > 0, w, 0.0, np.inf)
    if polished is not None:
        w = polished[0]
    with np.errstate(over="ignore"):
        w = w / unit
    _check_finite_w(w, amax)
    return w


def _dual_coefficients(Xn: np.ndarray, s: np.ndarray, w: np.ndarray, b: float, bias: str) -> np.ndarray:
    """Dual ``alpha (N,)`` of the SVM ``(w, b)`` (caller's scale) from the KKT equations; ValueError if unsolved.

    On the active set ``A = {i: s_i (w.x_i + b) <= 1 + 1e-7}``, NNLS for ``alpha_A >= 0`` in
    ``sum_A alpha_i s_i z_i = target``, ``(z_i, target)`` = ``(x_i, w)`` ("none"), ``((x_i, 1), (w, 0))``
    ("free") or ``((x_i, 1), (w, b))`` ("homogeneous"); ``alpha = 0`` off ``A``. Solved on the data
    divided by ``2**e`` (:func:`_data_exponent`; ``alpha' = 2**(2e) alpha``), the homogeneous bias row
    weighted by ``min(1, 2**-e)`` (same solution, balanced rows).
    """
    amax = float(np.abs(Xn).max()) if Xn.size else 0.0  # d = 0 (homogeneous, one class): unit 1
    e = _data_exponent(amax)
    unit = np.ldexp(1.0, e)
    Xs, ws = Xn / unit, w * unit  # w.x = ws.xs: margins unchanged
    active = s * (Xs @ ws + b) <= 1 + 1e-7  # (N,)
    n = len(s)
    if bias == "none":
        Z, target = Xs, ws
    elif bias == "free":
        Z, target = np.c_[Xs, np.ones(n)], np.r_[ws, 0.0]
    else:  # rescaled: (ws, unit**2 b) = sum a s (xs, 1); the bias row times min(1, 1 / unit) balances the rows
        omega = min(1.0, 1.0 / unit)
        Z, target = np.c_[Xs, np.full(n, omega)], np.r_[ws, omega * unit * unit * b]
    A = s[active, None] * Z[active]  # (|A|, D)
    a, res = nnls(A.T, target, maxiter=max(50 * n, 1000))
    # Relative to the larger of the target and the sum's terms, so a target ~ 0 is not an absolute test.
    scale = max(float(np.linalg.norm(target)), float(np.linalg.norm(np.abs(A.T) @ a)))
    if not res <= 1e-6 * scale:
        raise ValueError(f"could not solve the SVM's KKT equations for alpha (relative residual {res / scale:.3g})")
    # alpha = alpha' / unit**2 (alpha' = a, rescaled units) by ldexp: exact, and inf / subnormal only where the
    # caller-scale alpha itself over- or underflows (unit * unit alone would underflow first).
    with np.errstate(over="ignore", under="ignore"):
        alpha_sv = np.ldexp(a[a > SUPPORT_RTOL * a.max()], -2 * e) if a.size and a.max() > 0 else np.ones(1)
        alpha = np.zeros(n)
        alpha[active] = np.ldexp(a, -2 * e)
    if not (np.all(np.isfinite(alpha_sv)) and alpha_sv.min() >= np.finfo(np.float64).tiny):
        raise ValueError(
            f"alpha (~ 1 / scale**2) over- or underflows float64 for data of scale {amax:.3g}; rescale X towards 1"
        )
    return alpha


@dataclass(frozen=True, eq=False)
class SVMSolution:
    """A hard-margin linear SVM with its dual: the output of :func:`hard_margin_svm`.

    Attributes:
        w: weights ``(d,)`` float64.
        b: bias, a float (``0.0`` for ``bias="none"``).
        alpha: dual coefficients ``(N,)`` float64, ``>= 0``: ``w = sum_i alpha_i s_i x_i``, and
            ``b = sum_i alpha_i s_i`` ("homogeneous") or ``sum_i alpha_i s_i = 0`` ("free").
        support: ``(N,)`` bool, ``alpha_i > SUPPORT_RTOL * max_j alpha_j`` (``SUPPORT_RTOL = 1e-8``).
        margins: ``(N,)`` float64, ``s_i (w.x_i + b)``: ``>= 1``, ``= 1`` on the support.
        bias: ``"none"``, ``"homogeneous"`` or ``"free"``.
    """

    w: Tensor
    b: float
    alpha: Tensor
    support: Tensor
    margins: Tensor
    bias: str

    @property
    def direction(self) -> Tensor:
        """The limit direction of GD's parameters, float64: ``w`` ("none"), ``(w, b)`` ("homogeneous"), ``w`` ("free").

        Soudry et al. 2018, Thm 3; Xu, Ye & Ruan 2021 [I in the notes, sec. 2]. For ``"free"`` this is
        only the weight part of the textbook SVM: GD does **not** converge to the free-bias SVM (a
        trained bias is an ordinary weight on a constant feature, so GD converges to the
        ``"homogeneous"`` one).
        """
        return linear_direction(self.w, self.b) if self.bias == "homogeneous" else self.w


def hard_margin_svm(
    X: Tensor,
    y: Tensor,
    *,
    bias: Literal["none", "homogeneous", "free"] = "none",
) -> SVMSolution:
    """Exact hard-margin linear SVM and its dual coefficients.

    ``s_i = 2 y_i - 1`` for labels in ``{0, 1}`` (``s_i = y_i`` for ``{-1, +1}``). The primal problems:

    * ``"none"``: ``min ||w||^2 s.t. s_i w.x_i >= 1`` (the LDP of :func:`max_margin_separator` without
      the constant column, polished with ``b = 0``); the limit of GD without bias (Soudry et al. 2018, Thm 3).
    * ``"homogeneous"``: ``min ||(w, b)||^2 s.t. s_i (w.x_i + b) >= 1`` (a trained bias is a weight on
      a constant-1 feature); ``(w, b)`` are exactly those of ``max_margin_separator(X, y)``.
    * ``"free"``: ``min ||w||^2``, ``b`` unpenalized (the textbook SVM); ``max_margin_separator(X, y,
      bias="free")``.

    Dual (KKT multipliers, Boyd & Vandenberghe 2004, Sec. 8.6.1): ``w = sum_i alpha_i s_i x_i``,
    ``alpha >= 0``, ``alpha_i = 0`` where ``s_i (w.x_i + b) > 1``, and ``b = sum_i alpha_i s_i``
    ("homogeneous") or ``sum_i alpha_i s_i = 0`` ("free"); solved by NNLS on the active set (unique when
    the support vectors are linearly independent, else one nonnegative solution). Caller's scale: data
    ``c X`` give ``alpha / c**2`` ("none", "free"). The GD offset (Soudry et al. 2018, Thm 3, ``eta
    exp(-x_n.w~) = alpha_n``; weighted: Xu, Ye & Ruan 2021 [I in the notes, sec. 2]) is in this ``alpha``.

    Args:
        X: inputs ``(N, d)``, any real dtype (computed in float64).
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.
        bias: ``"none"`` (default), ``"homogeneous"`` or ``"free"``.

    Returns:
        :class:`SVMSolution` (float64 tensors; ``support`` bool).

    One class with ``"free"`` (also ``N = 1``): ``w = 0`` and any ``b`` with ``s b >= 1`` is optimal; returned is
    ``w = 0``, ``b = s``, ``alpha = 0``, no support vector. ``d = 0`` (no features): ``"none"`` is refused; with
    a bias, one class is separated by the bias alone (``b = s``), two classes are not separable.

    Raises:
        ValueError: the data are not linearly separable (through the origin, for ``"none"``); bad ``X``,
            ``y`` or ``bias``; ``d = 0`` with ``"none"``; ``w`` or the support's ``alpha`` (``~ 1 / scale`` and
            ``1 / scale**2`` of the data) over- or underflow float64; or the KKT equations for ``alpha``
            could not be solved.
        TypeError: complex ``X`` or ``y``.

    Example:
        >>> X = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -3.0]]); y = torch.tensor([1, 0, 1])
        >>> sol = hard_margin_svm(X, y, bias="homogeneous")  # theta = (2/3, -2/3, -1/3), by hand
        >>> [round(v, 6) for v in sol.direction.tolist()], [round(a, 6) for a in sol.alpha.tolist()]
        ([0.666667, -0.666667, -0.333333], [0.333333, 0.666667, 0.0])
        >>> sol.support.tolist()
        [True, True, False]
    """
    if bias not in ("none", "homogeneous", "free"):
        raise ValueError(f"bias must be 'none', 'homogeneous' or 'free', got {bias!r}")
    Xn, s = as_numpy_xy(X, y)
    n, d = Xn.shape
    if bias == "none" and d == 0:
        raise ValueError("X has no features (d = 0): without a bias no separator exists")
    if bias == "free" and abs(s.sum()) == n:
        # One class: w = 0 with any b, s b >= 1, is optimal; b = s (the smallest |b|, the limit of the
        # penalized-bias emulation) with alpha = 0, which meets the KKT conditions (sum a s x = 0 = w,
        # sum a s = 0). No support vector.
        w, b, alpha = np.zeros(d), float(s[0]), np.zeros(n)
    else:
        if bias == "none":
            w, b = _separator_none(Xn, s), 0.0
        else:
            w_t, b = max_margin_separator(X, y, bias=bias)
            w = w_t.numpy()
        alpha = _dual_coefficients(Xn, s, w, b, bias)
    margins = s * (Xn @ w + b)
    w, alpha, margins = (torch.from_numpy(np.ascontiguousarray(a) + 0.0) for a in (w, alpha, margins))  # -0.0 -> 0
    support = alpha > SUPPORT_RTOL * alpha.max()
    return SVMSolution(w=w, b=float(b) + 0.0, alpha=alpha, support=support, margins=margins, bias=bias)
