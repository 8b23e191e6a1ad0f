"""Checks of the inputs of label-shift estimation: probability matrices, logits and class labels.

Each returns the input as a float64 (or int64) tensor or raises a one-line error naming the argument
and the first offending entry. Integer and bool tensors are refused where floats are needed: a
matrix of 0/1 predictions stored as ``int`` is usually a bug (hard labels passed as posteriors).

Example:
    >>> check_probs(torch.tensor([[0.25, 0.75]]), "target_probs").dtype
    torch.float64
    >>> check_probs(torch.tensor([[0.5, 0.6]]), "target_probs")
    Traceback (most recent call last):
    ...
    ValueError: target_probs row 0 sums to 1.1, not 1 (tolerance 0.0001); pass probabilities (softmax), not logits or scores
"""  # noqa: E501

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional.checks import check_int, fmt_index

__all__ = ["PROB_SUM_TOL", "check_class_labels", "check_logits", "check_probs"]

PROB_SUM_TOL = 1e-4
"""How far a row of probabilities may sum from 1 (float32 softmax rows are within ~1e-6)."""


def _check_matrix(x: object, name: str, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of {what}; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of {what}; got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, K) ({what}); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); at least one example is needed")
    if x.shape[1] < 2:
        raise ValueError(f"{name} must have K >= 2 classes; got shape {tuple(x.shape)}")
    x = x.detach().to(torch.float64)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise ValueError(f"{name} has a non-finite entry ({float(x[bad][0]):g}{fmt_index(bad)})")
    return x


def check_probs(probs: object, name: str, *, n_classes: int | None = None) -> Tensor:
    """``probs`` as a float64 (N, K) matrix of probabilities, each row on the simplex.

    Args:
        probs: floating-point tensor (N, K), N >= 1, K >= 2: entries finite and >= 0, every row
            summing to 1 within :data:`PROB_SUM_TOL` (1e-4). Rows are not renormalized.
        name: the argument's name, for the message.
        n_classes: the K it must have, or None.

    Returns:
        ``probs`` detached, as float64, on its device.

    Raises:
        TypeError: not a tensor, or an integer, bool or complex dtype.
        ValueError: wrong number of axes, empty, K < 2 or != ``n_classes``, a NaN/inf or negative
            entry, or a row that does not sum to 1.

    Example:
        >>> check_probs(torch.tensor([[1.0, 0.0]]), "p", n_classes=3)
        Traceback (most recent call last):
        ...
        ValueError: p has K=2 classes but 3 are expected (shape (1, 2))
    """
    p = _check_matrix(probs, name, "probabilities")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"{name} has K={p.shape[1]} classes but {n_classes} are expected (shape {tuple(p.shape)})")
    neg = p < 0
    if bool(neg.any()):
        raise ValueError(f"{name} has a negative entry ({float(p[neg][0]):g}{fmt_index(neg)}); probabilities are >= 0")
    off = (p.sum(dim=1) - 1).abs() > PROB_SUM_TOL
    if bool(off.any()):
        row = int(off.nonzero()[0, 0])
        total = float(p[row].sum())
        raise ValueError(
            f"{name} row {row} sums to {total:.6g}, not 1 (tolerance {PROB_SUM_TOL:g}); "
            "pass probabilities (softmax), not logits or scores"
        )
    return p


def check_logits(logits: object, name: str, *, n_classes: int | None = None) -> Tensor:
    """``logits`` as a float64 (N, K) matrix of finite real scores.

    Args:
        logits: floating-point tensor (N, K), N >= 1, K >= 2, finite.
        name: the argument's name, for the message.
        n_classes: the K it must have, or None.

    Returns:
        ``logits`` detached, as float64, on its device.

    Raises:
        TypeError: not a tensor, or an integer, bool or complex dtype.
        ValueError: wrong number of axes, empty, K < 2 or != ``n_classes``, or a NaN/inf entry.

    Example:
        >>> check_logits(torch.tensor([[0.0, float("nan")]]), "logits")
        Traceback (most recent call last):
        ...
        ValueError: logits has a non-finite entry (nan at index (0, 1))
    """
    z = _check_matrix(logits, name, "logits")
    if n_classes is not None and z.shape[1] != n_classes:
        raise ValueError(f"{name} has K={z.shape[1]} classes but {n_classes} are expected (shape {tuple(z.shape)})")
    return z


def check_class_labels(labels: object, name: str, *, n: int, n_classes: int) -> Tensor:
    """``labels`` as an int64 vector of ``n`` class indices in ``[0, n_classes)``.

    Args:
        labels: integer tensor (n,) (not bool, not float: ``2.0`` is not a class index).
        name: the argument's name, for the message.
        n: the number of examples it must have (the rows of the matching probabilities).
        n_classes: K, the number of classes.

    Returns:
        ``labels`` detached, as int64, on its device.

    Raises:
        TypeError: not a tensor, or a bool or floating-point dtype.
        ValueError: not 1-d, length != ``n``, or a label outside ``[0, n_classes)``.

    Example:
        >>> check_class_labels(torch.tensor([0, 3]), "source_labels", n=2, n_classes=3)
        Traceback (most recent call last):
        ...
        ValueError: source_labels has label 3 at index 1, outside [0, 3) (K=3 classes)
    """
    n = check_int(n, "n", minimum=0)
    n_classes = check_int(n_classes, "n_classes", minimum=1)
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices; got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor of class indices; got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the probabilities; got shape {tuple(labels.shape)}")
    y = labels.detach().to(torch.int64)
    bad = (y < 0) | (y >= n_classes)
    if bool(bad.any()):
        raise ValueError(
            f"{name} has label {int(y[bad][0])}{fmt_index(bad)}, outside [0, {n_classes}) (K={n_classes} classes)"
        )
    return y
