"""Log-spaced evaluation epochs: the importance-weighting effect lives on a log-time axis."""

from __future__ import annotations

import numbers
from typing import Any


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``; else a one-line error naming ``name``.

    Bools and floats are refused (``epochs=True`` or ``iterations=2.5`` is a mistake, not a count).

    Args:
        value: the count to check (any integer type, e.g. ``int`` or ``numpy.int64``).
        name: the argument's name, for the message.
        minimum: the smallest accepted value.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (or is a bool).
        ValueError: ``value < minimum``.

    Example:
        >>> check_count(3, "epochs")
        3
        >>> check_count(0, "epochs")
        Traceback (most recent call last):
        ...
        ValueError: epochs must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def log_epochs(max_epoch: int, per_decade: tuple[int, ...] = (1, 2, 3, 5)) -> list[int]:
    """Epochs 1, 2, 3, 5, 10, 20, 30, 50, 100, ... up to ``max_epoch``, which is always included.

    Raises:
        TypeError, ValueError: ``max_epoch`` is not an integer >= 1.

    Example:
        >>> log_epochs(60)
        [1, 2, 3, 5, 10, 20, 30, 50, 60]
    """
    max_epoch = check_count(max_epoch, "max_epoch")
    out, scale = set(), 1
    while scale <= max_epoch:
        out.update(m * scale for m in per_decade if m * scale <= max_epoch)
        scale *= 10
    out.add(max_epoch)
    return sorted(out)
