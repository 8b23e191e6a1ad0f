"""Argument checks of the importance-weighted losses: types, devices, shapes, labels, weights.

Internal to :mod:`iwlab.functional.losses` (not a public API; names may change). The type, device
and shape checks are free and always run; :func:`check_labels`, :func:`check_representable` and the
weight checks in :func:`prepare_weight` read tensor values (a device sync) and run only with
``validate=True``. Every error is one line that names the argument and, where there is one, the
first offending index.

Example:
    >>> check_trailing(torch.zeros(3, 1), "target", 3, torch.Size([]), "logits has shape (3, 2)")
    Traceback (most recent call last):
    ...
    ValueError: target has shape (3, 1) but logits has shape (3, 2); expected shape (3,); drop the trailing axis of size 1 with .squeeze(-1)
"""  # noqa: E501

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional.checks import check_weights, fmt_index

__all__ = [
    "as_index",
    "check_device",
    "check_labels",
    "check_not_empty_mean",
    "check_representable",
    "check_tensor",
    "check_trailing",
    "check_weight_args",
    "fmt_value",
    "prepare_weight",
    "shape_of",
]


def fmt_value(value: float | int | bool) -> str:
    """Integers in full (a uint64 label must not print as 1.84467e+19), floats with ``:g``."""
    return str(int(value)) if isinstance(value, (bool, int)) else f"{value:g}"


def shape_of(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor(t: object, name: str, *, allow_bool: bool = True) -> None:
    """Type check of ``target`` / weights: a real-valued tensor (free, always done)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.is_complex() or (t.dtype == torch.bool and not allow_bool):
        raise TypeError(f"{name} must be a real-valued tensor; got dtype {t.dtype}")


def check_device(t: Tensor | None, name: str, logits: Tensor) -> None:
    """Name the argument and both devices before torch's generic error from inside a gather."""
    if t is not None and t.device != logits.device:
        raise ValueError(f"{name} is on {t.device} but logits are on {logits.device}; move it with .to(logits.device)")


def check_trailing(t: Tensor, name: str, size: int, lead: torch.Size, ref: str) -> None:
    """Check that ``t`` is ``(..., size)`` with leading dims broadcastable to ``lead``.

    The trailing (batch or class) axis must match exactly: broadcasting a size-1 batch axis would
    silently turn a shape bug into a wrong loss.
    """
    ok = t.dim() >= 1 and t.shape[-1] == size
    if ok:
        try:
            ok = torch.broadcast_shapes(t.shape[:-1], lead) == lead
        except RuntimeError:
            ok = False
    if not ok:
        if len(lead) == 0:
            expected = f"({size},)"
        else:
            expected = f"(..., {size}) with leading dims broadcastable to {tuple(lead)}"
        hint = ""
        if t.dim() >= 2 and t.shape[-1] == 1 and t.shape[-2] == size:
            hint = "; drop the trailing axis of size 1 with .squeeze(-1)"
        raise ValueError(f"{name} has shape {shape_of(t)} but {ref}; expected shape {expected}{hint}")


def check_not_empty_mean(B: int, reduction: str) -> None:
    if B == 0 and reduction == "mean":
        raise ValueError(
            "the batch is empty (B=0): the mean is undefined; use reduction='sum' (which gives 0) or skip empty batches"
        )


def as_index(target: Tensor) -> Tensor:
    """Labels as int64 for gather (a no-op for int64).

    int8..int32 and uint8..uint32 convert exactly; uint64 labels >= 2**63 wrap to negative
    values, which the range check rejects (it reports the original value).
    """
    return target.long()


def check_labels(target: Tensor, n_classes: int, source: str) -> None:
    # Compare in int64: in the label's own dtype torch wraps the bound (int8 label 100 >= 300 is
    # True) and has no < / >= for uint16..uint64 on CPU.
    idx = as_index(target)
    bad = (idx < 0) | (idx >= n_classes)
    if bool(bad.any()):
        label = fmt_value(target[bad][0].item())
        raise ValueError(
            f"target contains label {label}{fmt_index(bad)} but {source} C={n_classes} "
            f"classes; labels must be in [0, {n_classes})"
        )


def check_representable(weight: Tensor, cast: Tensor, name: str, logits_dtype: torch.dtype) -> None:
    """Raise if a finite weight changed to inf, 0 or an inexact subnormal when cast to the compute dtype."""
    if weight.dtype == cast.dtype or not weight.is_floating_point() or weight.numel() == 0:
        return  # a cast from an integer or to a wider type only rounds, like any float
    w = weight.detach()
    c = cast.detach()
    tiny = torch.finfo(c.dtype).tiny
    lost = torch.isfinite(w) & (c.to(w.dtype) != w) & (torch.isinf(c) | (c.abs() < tiny))
    if bool(lost.any()):
        value = float(w[lost][0])
        where = fmt_index(lost).removeprefix(" ")
        why = "it overflows to inf" if abs(value) > 1 else f"it underflows below the smallest normal {tiny:g}"
        raise ValueError(
            f"{name} has an entry ({value:g} {where}) that {c.dtype} cannot represent ({why}); the loss of "
            f"{logits_dtype} logits is computed in {c.dtype}: use float64 logits or rescale the weights"
        )


def prepare_weight(
    weight: Tensor | None, name: str, dtype: torch.dtype, logits_dtype: torch.dtype, validate: bool
) -> Tensor | None:
    """Validate (if asked) and cast a weight tensor to the compute dtype."""
    if weight is None:
        return None
    if validate:
        check_weights(weight, name=name, allow_zero_sum=True)
    cast = weight.to(dtype)
    if validate:
        check_representable(weight, cast, name, logits_dtype)
    return cast


def check_weight_args(
    logits: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
) -> None:
    """Types and devices of the weights (free checks)."""
    for t, name in ((class_weight, "class_weight"), (sample_weight, "sample_weight")):
        if t is not None:
            check_tensor(t, name, allow_bool=False)
            check_device(t, name, logits)
