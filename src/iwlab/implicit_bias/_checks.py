"""Input validation shared by :mod:`iwlab.implicit_bias` (internal; names may change).

Every check raises a one-line error that names the argument; nothing is clamped or cast silently
(integer tensors are converted to float64 only where that is exact).

Example:
    >>> real_scalar(0.5, "lr"), real_scalar(np.float32(0.5), "lr")
    (0.5, 0.5)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from iwlab.implicit_bias.geometry import _signs

__all__ = ["as_numpy_xy", "float64_weights", "positive_finite", "real_scalar", "real_tensor"]


def real_tensor(x: Tensor, name: str, *, allow_bool: bool = True) -> Tensor:
    """``torch.as_tensor(x)`` detached on the CPU; TypeError for complex (or, unless allowed, bool) dtypes."""
    x = torch.as_tensor(x).detach().cpu()
    if x.dtype.is_complex or (x.dtype == torch.bool and not allow_bool):
        raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
    return x


def real_scalar(v: object, name: str) -> float:
    """A real number (``numbers.Real`` incl. numpy scalars, or a 0-d real tensor), not bool, as a float.

    Only the type is checked here (range checks are the caller's): ``True`` or ``"0.1"`` would otherwise be
    read as 1.0 or 0.1 by ``float()``.
    """
    if isinstance(v, Tensor) and v.dim() == 0 and not (v.dtype.is_complex or v.dtype == torch.bool):
        return float(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number (not bool), got {type(v).__name__} {v!r}")
    return float(v)


def float64_weights(weights: Tensor, n: int, name: str = "weights") -> np.ndarray:
    """Real, non-bool ``(n,)`` weights as float64 numpy, refusing integers that float64 cannot hold exactly."""
    wt = real_tensor(weights, name, allow_bool=False)
    if wt.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(wt.shape)}")
    w64 = wt.to(torch.float64)
    if not wt.dtype.is_floating_point and not torch.equal(w64.to(wt.dtype), wt):  # int64 beyond 2**53
        raise ValueError(f"{name} has integers that float64 cannot represent exactly")
    return w64.numpy()


def as_numpy_xy(X: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``X (N, d)`` and signs ``s (N,)`` as numpy arrays (X is checked first)."""
    Xt = real_tensor(X, "X")
    if Xt.dim() != 2:
        raise ValueError(f"X must have shape (N, d), got {tuple(Xt.shape)}")
    Xn = Xt.to(torch.float64).numpy()
    s = _signs(real_tensor(y, "y")).numpy().astype(np.float64)
    if s.shape != (Xn.shape[0],):
        raise ValueError(f"y must have shape ({Xn.shape[0]},), got {tuple(s.shape)}")
    if Xn.shape[0] == 0:
        raise ValueError("X is empty")
    if not np.all(np.isfinite(Xn)):
        raise ValueError("X has a NaN or infinite entry")
    return Xn, s


def positive_finite(v: float, name: str) -> float:
    """``v`` if finite and > 0, else a ValueError naming it."""
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    return v
