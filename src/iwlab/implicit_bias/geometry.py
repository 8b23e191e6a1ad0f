"""Geometry of linear classifiers: angles, normalized margins, ``(w, b)`` as one vector, label signs.

Moved from the former single-file ``iwlab.implicit_bias`` unchanged (same numbers, bitwise).

Example:
    >>> import torch
    >>> angle(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))  # pi / 4
    tensor(0.7854)
"""

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional._scaling import mul_pow2

__all__ = ["angle", "linear_direction", "normalized_margin"]


def _signs(y: Tensor) -> Tensor:
    """``s_i in {-1, +1}`` from labels in ``{0, 1}`` or ``{-1, +1}`` (int64).

    The label set is checked on the values as given (before any cast to int64, which would turn
    ``inf`` or ``nan`` into arbitrary integers), and the error shows them as given.
    """
    y = torch.as_tensor(y)
    if y.dtype.is_complex:
        raise TypeError(f"labels y must be real, got dtype {y.dtype}")
    values = torch.unique(y).tolist()  # nan != nan, so a nan is never in the sets below
    if set(values) <= {0, 1}:
        return 2 * y.to(torch.int64) - 1
    if set(values) <= {-1, 1}:
        return y.to(torch.int64)
    shown = values if len(values) <= 8 else [*values[:8], "..."]
    raise ValueError(f"labels must be in {{0, 1}} or {{-1, +1}}, got values {shown}")


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
        >>> from iwlab.implicit_bias import max_margin_separator
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
