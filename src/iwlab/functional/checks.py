"""Checks of scalar arguments shared by every layer: integers, reals, seeds (one-line errors naming the argument).

Example:
    >>> check_int(3, "epochs", minimum=1), check_real(0.5, "k"), check_seed(7)
    (3, 0.5, 7)
"""

from __future__ import annotations

import numbers
import operator

import torch
from torch import Tensor

__all__ = ["check_int", "check_real", "check_seed"]


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python int: any integer-like (int, numpy integer, 0-d integer tensor), never bool or float.

    ``epochs=True`` or ``iterations=2.5`` is a mistake, not a count.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        minimum: the smallest accepted value, or None.

    Raises:
        TypeError: not an integer (bools and floats included).
        ValueError: below ``minimum``.

    Example:
        >>> check_int(0, "epochs", minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: epochs must be an integer >= 1, got 0
    """
    need = "an integer" if minimum is None else f"an integer >= {minimum}"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {need}, got bool {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be {need}, got {type(value).__name__} {value!r}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be {need}, got {v}")
    return v


def check_real(value: object, name: str) -> float:
    """``value`` as a Python float (int, float, numpy or 0-d torch real), never bool or str.

    Raises:
        TypeError: not a real number.

    Example:
        >>> check_real(torch.tensor(2), "k")
        2.0
    """
    scalar = isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool and not value.is_complex()
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or scalar):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**63)``, what ``torch.Generator.manual_seed`` takes without wrapping.

    Raises:
        TypeError: a bool, float or other non-integer (``1.7`` would fail deep inside torch).
        ValueError: a negative seed (torch would silently wrap ``-1`` to ``2**64 - 1``) or one >= 2**63.

    Example:
        >>> check_seed(3)
        3
    """
    s = check_int(seed, name)
    if not 0 <= s < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {s}")
    return s
