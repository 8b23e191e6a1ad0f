"""Argument checks of the importance-weighted losses: types, devices, shapes, labels, weights, dtypes.

Internal to :mod:`iwlab.functional.losses` (not a public API; names may change). The type, device
and shape checks are free and always run; :func:`check_labels`, :func:`check_probabilities`,
:func:`check_unit_interval`, :func:`check_representable` and the weight checks in :func:`prepare_weight`
read tensor values (a device sync) and run only with ``validate=True``. The scalar arguments
(``ignore_index``, ``label_smoothing``, ``class_dim``) are checked on every call. Every error is one
line that names the argument and, where there is one, the first offending index.

Example:
    >>> check_trailing(torch.zeros(3, 1), "target", 3, torch.Size([]), "logits has shape (3, 2)")
    Traceback (most recent call last):
    ...
    ValueError: target has shape (3, 1) but logits has shape (3, 2); expected shape (3,); drop the trailing axis of size 1 with .squeeze(-1)
"""  # noqa: E501

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from iwlab.functional.checks import check_choice, check_int, check_real, check_weights, fmt_index

__all__ = [
    "HALF_DTYPES",
    "NORMALIZATIONS",
    "REDUCTIONS",
    "Normalization",
    "Reduction",
    "as_index",
    "check_class_dim",
    "check_device",
    "check_ignore_index",
    "check_label_smoothing",
    "check_labels",
    "check_not_empty_mean",
    "check_probabilities",
    "check_representable",
    "check_tensor",
    "check_trailing",
    "check_trailing_block",
    "check_unit_interval",
    "check_weight_args",
    "compute_dtype",
    "fmt_value",
    "ignored",
    "prepare_weight",
    "probability_tolerance",
    "shape_of",
]

Normalization = Literal["batch_size", "weight_sum"]
Reduction = Literal["none", "sum", "mean"]

NORMALIZATIONS: tuple[str, ...] = ("batch_size", "weight_sum")
REDUCTIONS: tuple[str, ...] = ("none", "sum", "mean")

#: Logit dtypes that are upcast to float32 for the computation (and the returned loss).
HALF_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)


def compute_dtype(logits: object) -> torch.dtype:
    """The dtype the loss is computed and returned in: float32 for half logits, else the logits' own."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor; got {type(logits).__name__}")
    if logits.dtype in HALF_DTYPES:
        return torch.float32
    if logits.dtype in (torch.float32, torch.float64):
        return logits.dtype
    if logits.is_floating_point():
        raise ValueError(f"logits must be float16, bfloat16, float32 or float64; got {logits.dtype}")
    raise ValueError(f"logits must be a floating-point tensor; got {logits.dtype}")


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


def check_trailing_block(t: Tensor, name: str, sizes: tuple[int, int], lead: torch.Size, ref: str) -> None:
    """Check that ``t`` is ``(..., *sizes)`` (two trailing axes, ``(B, C)``) with leading dims broadcast to ``lead``."""
    ok = t.dim() >= 2 and tuple(t.shape[-2:]) == tuple(sizes)
    if ok:
        try:
            ok = torch.broadcast_shapes(t.shape[:-2], lead) == lead
        except RuntimeError:
            ok = False
    if not ok:
        block = ", ".join(str(n) for n in sizes)
        expected = (
            f"({block})" if len(lead) == 0 else f"(..., {block}) with leading dims broadcastable to {tuple(lead)}"
        )
        raise ValueError(f"{name} has shape {shape_of(t)} but {ref}; expected shape {expected}")


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


def ignored(target: Tensor, index: Tensor, ignore_index: int) -> Tensor:
    """Bool mask (shape of ``index``) of the targets equal to ``ignore_index``; ``index`` is ``as_index(target)``.

    An unsigned label is never negative, so a negative ``ignore_index`` matches none: comparing the
    int64 ``index`` alone would let a uint64 label ``2**64 - 100`` (wrapped to -100) match ``-100``.
    """
    if ignore_index < 0 and not target.dtype.is_signed:  # uint8..uint64 (bool is refused before)
        return torch.zeros_like(index, dtype=torch.bool)
    return index == ignore_index


def check_labels(target: Tensor, n_classes: int, source: str, ignore_index: int | None = None) -> None:
    # Compare in int64: in the label's own dtype torch wraps the bound (int8 label 100 >= 300 is
    # True) and has no < / >= for uint16..uint64 on CPU.
    idx = as_index(target)
    bad = (idx < 0) | (idx >= n_classes)
    if ignore_index is not None:
        bad &= ~ignored(target, idx, ignore_index)  # an ignored label may lie outside [0, C) (torch's -100)
    if bool(bad.any()):
        label = fmt_value(target[bad][0].item())
        hint = (
            f" (to skip padding labels pass ignore_index={label})" if ignore_index is None and label == "-100" else ""
        )
        raise ValueError(
            f"target contains label {label}{fmt_index(bad)} but {source} C={n_classes} "
            f"classes; labels must be in [0, {n_classes}){hint}"
        )


def check_ignore_index(ignore_index: object) -> int | None:
    """``ignore_index`` as an int (None passes): any integer, also outside ``[0, C)``, that fits int64."""
    if ignore_index is None:
        return None
    v = check_int(ignore_index, "ignore_index")
    if not -(2**63) <= v < 2**63:
        raise ValueError(f"ignore_index must fit in int64 (labels are compared as int64); got {v}")
    return v


def check_label_smoothing(label_smoothing: object) -> float:
    """``label_smoothing`` as a float in ``[0, 1]`` (NaN and values outside are refused)."""
    eps = check_real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]; got {eps!r}")  # repr: 1.0000001, not 1
    return eps


def check_class_dim(class_dim: object) -> int:
    """``class_dim`` must be -1 (stacked models, ``(..., B, C)``) or 1 (torch's ``(N, C, d1, ..., dk)``)."""
    v = check_int(class_dim, "class_dim")
    if v not in (-1, 1):
        raise ValueError(
            "class_dim must be -1 (logits (..., B, C), leading axes are stacked models) or 1 (torch's layout "
            f"(N, C, d1, ..., dk), one model); got {v}"
        )
    return v


def probability_tolerance(dtype: torch.dtype, n_classes: int) -> float:
    """How far a row of ``C`` class probabilities of ``dtype`` may sum from 1.

    float32/float64: ``max(sqrt(eps), C * eps)``. ``sqrt(eps)`` (3.5e-4 for float32, 1.5e-8 for
    float64) absorbs the rounding of a softmax or of ``t / t.sum()`` computed in that dtype; ``C * eps``
    bounds the rounding of ``C`` entries for very large ``C``.

    float16/bfloat16: ``2 * eps`` (0.0156 for bfloat16, 0.002 for float16), whatever ``C``. Rounding a
    correct row to half precision moves each entry by at most ``eps / 2`` of its value, so the sum by
    about ``eps / 2`` (measured: at most 0.0052 for bfloat16 and 0.0007 for float16, softmaxes and
    ``t / t.sum()`` for C from 2 to 32000); ``sqrt(eps)`` (0.088 for bfloat16) or ``C * eps`` would let
    rows 5-8 % off through.
    """
    eps = torch.finfo(dtype).eps
    if dtype in HALF_DTYPES:
        return 2 * eps
    return max(math.sqrt(eps), n_classes * eps)


def check_probabilities(target: Tensor, dim: int) -> None:
    """Raise unless every entry of ``target`` is finite and >= 0 and every row (along ``dim``) sums to 1."""
    if target.numel() == 0:
        return
    t = target.detach()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(
            f"target has a non-finite entry ({float(t[bad][0]):g}{fmt_index(bad)}); class probabilities must be finite"
        )
    bad = t < 0
    if bool(bad.any()):
        raise ValueError(
            f"target has a negative entry ({float(t[bad][0]):g}{fmt_index(bad)}); class probabilities must be >= 0"
        )
    tol = probability_tolerance(t.dtype, t.shape[dim])
    total = t.double().sum(dim)  # float64: the sum of C entries adds no rounding of its own to speak of
    bad = (total - 1).abs() > tol
    if bool(bad.any()):
        raise ValueError(
            f"target row{fmt_index(bad)} (the class axis {dim} left out) sums to {float(total[bad][0]):.8g}, not 1 "
            f"(tolerance {tol:.2g}); class probabilities must sum to 1: normalize with target / target.sum({dim}, "
            "keepdim=True)"
        )


def check_unit_interval(target: Tensor) -> None:
    """Raise unless every entry of ``target`` lies in ``[0, 1]`` (NaN and infinities fail)."""
    if target.is_floating_point():
        bad = ~((target >= 0) & (target <= 1))  # NaN compares False: caught too
    else:  # integers and bool: 0 or 1 (uint16..uint64 have no < on CPU)
        bad = (target != 0) & (target != 1)
    if bool(bad.any()):
        value = fmt_value(target[bad][0].item())
        raise ValueError(
            f"target has an entry {value}{fmt_index(bad)}; multi-label targets must be finite and in [0, 1]"
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


def check_loss_args(
    logits: Tensor,
    target: Tensor,
    normalization: str,
    reduction: str,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
) -> torch.dtype:
    """The free checks every binary loss starts with; returns the compute dtype (see ``compute_dtype``)."""
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(reduction, "reduction", REDUCTIONS)
    dtype = compute_dtype(logits)
    check_tensor(target, "target")
    check_device(target, "target", logits)
    check_weight_args(logits, class_weight, sample_weight)
    return dtype
