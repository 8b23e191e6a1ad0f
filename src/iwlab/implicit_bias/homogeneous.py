"""Normalized and smoothed margins of L-homogeneous networks, batched over M models.

For an L-homogeneous model (``f(c theta; x) = c^L f(theta; x)``, e.g. a bias-free ReLU MLP with
``L`` layers), gradient flow on an exponential-tailed loss increases the smoothed margin and drives
``theta / ||theta||`` to a KKT point of ``min ||theta||^2 s.t. s_i f(theta; x_i) >= 1`` (Lyu & Li
2020); with fixed importance weights the limit is the same and the weights shift the smoothed margin
by at most ``log(n w_max / w_min) / ||theta||^L`` (Xu, Ye & Ruan 2021 [I in the notes, sec. 2]).

Example:
    >>> scores = torch.tensor([[2.0, -1.0], [8.0, -4.0]]); y = torch.tensor([1, 0])
    >>> norms = torch.tensor([1.0, 2.0])  # model 2 = model 1 scaled by 2, degree 2: same margin
    >>> homogeneous_normalized_margin(scores, y, norms, degree=2)
    tensor([1., 1.])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from iwlab.functional._scaling import mul_pow2
from iwlab.implicit_bias.geometry import _signs

__all__ = ["homogeneous_normalized_margin", "parameter_norm", "smoothed_margin"]


def _prepare(scores: Tensor, y: Tensor, param_norm: Tensor, degree: int) -> tuple[Tensor, Tensor]:
    """Validated ``s_i f_i`` ``(M, N)`` (or ``(N,)``) and ``||theta||^L`` ``(M,)`` (or 0-d), in the promoted dtype."""
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise ValueError(f"degree must be an int >= 1, got {degree!r}")
    scores, param_norm = torch.as_tensor(scores), torch.as_tensor(param_norm)
    for name, v in (("scores", scores), ("param_norm", param_norm)):
        if v.dtype.is_complex:
            raise TypeError(f"{name} must be real, got dtype {v.dtype}")
    if scores.dim() not in (1, 2) or scores.shape[-1] == 0:
        raise ValueError(f"scores must have shape (M, N) or (N,) with N >= 1, got {tuple(scores.shape)}")
    if param_norm.shape != scores.shape[:-1]:
        raise ValueError(f"param_norm must have shape {tuple(scores.shape[:-1])}, got {tuple(param_norm.shape)}")
    s = _signs(y)
    if s.shape != scores.shape[-1:]:
        raise ValueError(f"y must have shape ({scores.shape[-1]},), got {tuple(s.shape)}")
    dtype = torch.promote_types(torch.promote_types(scores.dtype, param_norm.dtype), torch.float32)
    param_norm = param_norm.to(dtype)
    if not (torch.isfinite(param_norm).all() and (param_norm > 0).all()):
        raise ValueError("param_norm must be finite and > 0")
    return s.to(device=scores.device, dtype=dtype) * scores.to(dtype), param_norm**degree


def homogeneous_normalized_margin(scores: Tensor, y: Tensor, param_norm: Tensor, degree: int) -> Tensor:
    """Normalized margin ``min_i s_i f_i / ||theta||^L`` of L-homogeneous models.

    Lyu & Li 2020, the normalized margin ``gamma-bar``; Xu, Ye & Ruan 2021 [I in the notes, sec. 2]. It
    is invariant to scaling ``theta`` by ``c > 0`` exactly when the model is ``degree``-homogeneous.

    Args:
        scores: outputs ``f_i = f(theta; x_i)``, ``(M, N)`` for M models or ``(N,)`` for one.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}`` (``s_i = 2 y_i - 1`` or ``y_i``).
        param_norm: ``||theta||`` (Euclidean norm of all parameters, :func:`parameter_norm`), ``(M,)``
            (0-d for ``(N,)`` scores), finite and ``> 0``.
        degree: the homogeneity degree ``L``, an int ``>= 1`` (number of layers of a bias-free ReLU MLP).

    Returns:
        ``(M,)`` (0-d for ``(N,)`` scores), the promoted dtype of ``scores`` and ``param_norm`` (at least
        float32). Negative when some point is misclassified.

    Raises:
        ValueError: bad shapes, labels, ``param_norm`` or ``degree``.
        TypeError: complex ``scores`` or ``param_norm``.

    Example:
        >>> homogeneous_normalized_margin(torch.tensor([3.0, -1.0]), torch.tensor([1, -1]), torch.tensor(2.0), 1)
        tensor(0.5000)
    """
    margins, norm_l = _prepare(scores, y, param_norm, degree)
    return margins.amin(dim=-1) / norm_l


def smoothed_margin(
    scores: Tensor, y: Tensor, param_norm: Tensor, degree: int, weights: Tensor | None = None
) -> Tensor:
    """Smoothed margin ``log(1 / sum_i w_i exp(-s_i f_i)) / ||theta||^L`` of L-homogeneous models.

    Lyu & Li 2020, ``gamma-tilde`` for the exponential loss (``log(1 / L) / ||theta||^L``), here with the
    importance-weighted loss ``L = sum_i w_i exp(-s_i f_i)`` (Xu, Ye & Ruan 2021 [I in the notes, sec.
    2]). Computed as ``-logsumexp(log w_i - s_i f_i)``, so scores of ``1e4`` neither overflow nor
    underflow. With unit weights it is ``<= homogeneous_normalized_margin`` (``sum_i exp(-m_i) >=
    exp(-min_i m_i)``) and within ``log(N) / ||theta||^L`` of it.

    Args:
        scores: ``(M, N)`` or ``(N,)``, as :func:`homogeneous_normalized_margin`.
        y: labels ``(N,)`` in ``{0, 1}`` or ``{-1, +1}``.
        param_norm: ``(M,)`` (0-d for ``(N,)`` scores), finite and ``> 0``.
        degree: int ``>= 1``.
        weights: ``(N,)`` finite and ``> 0``; ``None`` for all ones.

    Returns:
        ``(M,)`` (0-d for ``(N,)`` scores), the promoted floating dtype (at least float32).

    Raises:
        ValueError: bad shapes, labels, ``param_norm``, ``degree`` or ``weights``.
        TypeError: complex ``scores`` or ``param_norm``.

    Example:
        >>> y, norm = torch.tensor([1, 0]), torch.tensor(100.0)
        >>> smoothed_margin(torch.tensor([1e4, -1e4]), y, norm, 2)  # (1e4 - log 2) / 100**2, no overflow
        tensor(0.9999)
    """
    margins, norm_l = _prepare(scores, y, param_norm, degree)
    if weights is None:
        log_w = torch.zeros((), dtype=margins.dtype, device=margins.device)
    else:
        weights = torch.as_tensor(weights)
        if weights.shape != margins.shape[-1:] or not weights.dtype.is_floating_point:
            raise ValueError(
                f"weights must be float of shape ({margins.shape[-1]},), got {weights.dtype} {tuple(weights.shape)}"
            )
        if not (torch.isfinite(weights).all() and (weights > 0).all()):
            raise ValueError("weights must be finite and > 0")
        log_w = torch.log(weights.to(device=margins.device, dtype=margins.dtype))
    return -torch.logsumexp(log_w - margins, dim=-1) / norm_l


def parameter_norm(params: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of all parameters of each of M stacked models, ``sqrt(sum_p ||p_m||^2)``.

    The ``||theta||`` of Lyu & Li 2020 for :func:`homogeneous_normalized_margin` and
    :func:`smoothed_margin`. Each model's parameters are scaled by the power of two that brings their
    largest ``|entry|`` into [0.5, 1) (exact), normed, and scaled back: entries of 1e30 in float32 or
    1e200 in float64 neither overflow nor underflow the squares, and in the normal range the result is
    bitwise the unscaled norm; only a norm beyond the dtype's range is ``inf``. half and bfloat16 are
    normed in float32 and rounded once.

    Args:
        params: a list or tuple (any iterable but a tensor) of floating-point tensors of shape
            ``(M, ...)``, one per parameter, stacked over the ``M >= 1`` models.

    Returns:
        ``(M,)`` in the promoted dtype of ``params``.

    Raises:
        ValueError: ``params`` is empty, a tensor is 0-d, the leading sizes differ, or ``M = 0``.
        TypeError: ``params`` is a tensor (not a list of them), or a tensor is not floating point.

    Example:
        >>> parameter_norm([torch.tensor([[3.0], [0.0]]), torch.tensor([[[4.0]], [[1.0]]])])
        tensor([5., 1.])
        >>> parameter_norm([torch.full((1, 4), 1e30)])  # float32, whose squares would overflow
        tensor([2.0000e+30])
    """
    if isinstance(params, Tensor):
        raise TypeError("params must be a list of (M, ...) tensors, got a single Tensor; pass [tensor]")
    params = [torch.as_tensor(p) for p in params]
    if not params or any(p.dim() == 0 for p in params) or len({p.shape[0] for p in params}) != 1:
        shapes = [tuple(p.shape) for p in params]
        raise ValueError(f"params must be a non-empty list of (M, ...) tensors with one M, got shapes {shapes}")
    bad = [p.dtype for p in params if not p.dtype.is_floating_point]
    if bad:
        raise TypeError(f"params must be floating-point tensors, got dtypes {bad}")
    m = params[0].shape[0]
    if m == 0:
        raise ValueError("params hold M = 0 models")
    dtype = params[0].dtype
    for p in params[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    # float32 / float64 are normed in their own dtype: the power-of-two scaling is exact, so in the normal range
    # the result is bitwise that of the unscaled norm; half / bfloat16 (no exact mul_pow2 there) go via float32.
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    flat = [p.to(work).reshape(m, -1) for p in params]  # each (M, k_p)
    amax = torch.stack([f.abs().amax(dim=1) if f.shape[1] else f.new_zeros(m) for f in flat]).amax(dim=0)  # (M,)
    e = torch.frexp(amax).exponent  # (M,); 0 for a zero model
    norms = [torch.linalg.vector_norm(mul_pow2(f, -e[:, None]), dim=1) for f in flat]  # each (M,)
    return mul_pow2(torch.linalg.vector_norm(torch.stack(norms), dim=0), e).to(dtype)
