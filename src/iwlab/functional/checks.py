"""Checks of arguments shared by every layer: integers, reals, seeds, choices and importance weights.

Every error is one line that names the argument (and, for tensors, the first offending index), so a
bad ``--set`` value or a bad tensor fails where it is passed, not deep inside torch.

Example:
    >>> check_int(3, "epochs", minimum=1), check_real(0.5, "k"), check_seed(7)
    (3, 0.5, 7)
    >>> check_weights(torch.tensor([1.0, 0.25]), name="class_weight")
"""

from __future__ import annotations

import numbers
import operator

import torch
from torch import Tensor

__all__ = ["check_choice", "check_int", "check_real", "check_seed", "check_weights", "fmt_index"]


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """``value`` as a Python int: any integer-like (int, numpy integer, 0-d integer tensor), never bool or float.

    ``epochs=True`` or ``iterations=2.5`` is a mistake, not a count.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        minimum: the smallest accepted value, or None.

    Returns:
        ``value`` as a Python ``int``.

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

    Args:
        value: the argument to check; a tensor must hold exactly one real (not bool, not complex) entry.
        name: the argument's name, for the message.

    Returns:
        ``value`` as a Python ``float`` (NaN and infinities pass: range checks are the caller's).

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

    Args:
        seed: the argument to check.
        name: the argument's name, for the message.

    Returns:
        ``seed`` as a Python ``int``.

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


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices`` (a ``Literal`` argument such as ``reduction``).

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        choices: the accepted values.

    Raises:
        ValueError: ``value`` is not in ``choices``; the message lists the valid values.

    Example:
        >>> check_choice("avg", "reduction", ("none", "sum", "mean"))
        Traceback (most recent call last):
        ...
        ValueError: reduction must be one of 'none', 'sum', 'mean'; got 'avg'
    """
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")


def fmt_index(mask: Tensor) -> str:
    """``" at index ..."`` naming the first True entry of ``mask``, for one-line error messages.

    Args:
        mask: bool tensor of any shape with at least one True entry (0-d: no index to name).

    Returns:
        ``" at index i"`` for a 1-d mask, ``" at index (i, j, ...)"`` for more axes, ``""`` for a
        0-d mask.

    Raises:
        IndexError: ``mask`` (with one or more axes) has no True entry.

    Example:
        >>> fmt_index(torch.tensor([[False, False], [False, True]]))
        ' at index (1, 1)'
    """
    if mask.dim() == 0:
        return ""
    idx = mask.nonzero()[0].tolist()
    return f" at index {idx[0]}" if len(idx) == 1 else f" at index {tuple(idx)}"


def check_weights(weight: Tensor, *, name: str = "weight", allow_zero_sum: bool = False) -> None:
    """Raise unless ``weight`` is a valid tensor of importance weights.

    Valid means every entry is finite and ``>= 0`` and, unless ``allow_zero_sum``, at least one
    entry is positive. The message is one line and names the first offending entry. An empty
    tensor is valid. Importance weights are density ratios ``p_target(x, y) / p_train(x, y)``
    (class weights under label shift: Byrd & Lipton 2019, Sec. 3), or the unbiasing factors
    ``1 / (N p_i)`` of importance sampling (Katharopoulos & Fleuret 2017, eq. 4): both are
    non-negative by construction, so a negative or non-finite entry is a bug upstream.

    Reading the values forces a device synchronisation on CUDA.

    Args:
        weight: tensor of any shape (integer or floating point, not bool or complex).
        name: how the tensor is called in the error message.
        allow_zero_sum: accept an all-zero tensor. The losses pass ``True``: a fully masked batch
            is normal under ``normalization="batch_size"`` (the loss is 0); ``"weight_sum"``
            rejects a zero total itself.

    Raises:
        TypeError: ``weight`` is not a tensor, or is bool or complex.
        ValueError: an entry is NaN, infinite or negative, or (without ``allow_zero_sum``) all
            entries are zero.

    Example:
        >>> check_weights(torch.tensor([1.0, 0.25]), name="class_weight")
        >>> check_weights(torch.tensor([1.0, -0.5]), name="class_weight")
        Traceback (most recent call last):
        ...
        ValueError: class_weight has a negative entry (-0.5 at index 1); importance weights must be >= 0
    """  # noqa: E501
    if not isinstance(weight, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(weight).__name__}")
    if weight.dtype == torch.bool or weight.is_complex():
        raise TypeError(f"{name} must be a real-valued tensor; got dtype {weight.dtype}")
    if weight.numel() == 0:
        return
    w = weight.detach()
    if w.is_floating_point():
        nan = torch.isnan(w)
        if bool(nan.any()):
            raise ValueError(f"{name} has a NaN entry{fmt_index(nan)}; importance weights must be finite")
        inf = torch.isinf(w)
        if bool(inf.any()):
            value = float(w[inf][0])
            where = fmt_index(inf).removeprefix(" ")
            raise ValueError(f"{name} has an infinite entry ({value:g} {where}); importance weights must be finite")
    if w.dtype.is_signed:  # uint16..uint64 have no `<` on CPU, and cannot be negative anyway
        neg = w < 0
        if bool(neg.any()):
            value = float(w[neg][0])
            where = fmt_index(neg).removeprefix(" ")
            raise ValueError(f"{name} has a negative entry ({value:g} {where}); importance weights must be >= 0")
    if not allow_zero_sum and not bool((w != 0).any()):
        shape = tuple(w.shape)
        raise ValueError(f"{name} is all zeros (shape {shape}); at least one importance weight must be positive")
