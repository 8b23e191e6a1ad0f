"""Checks and conversions of what a trainer is given: labels, per-member data, rates and weights.

Every check raises one line naming the argument (and the member or index), instead of training on a
silently converted value: a float label 0.5, a weight that float32 flushes to 0, an lr the parameters'
dtype cannot hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from iwlab.files import fingerprint
from iwlab.functional.checks import check_real
from iwlab.functional.losses import check_weights


def as_float64(v: Any) -> Tensor:
    # Python floats are doubles: converting them straight to float32 could flush 1e-50 to 0 unseen
    return torch.as_tensor(v, dtype=torch.float64)


def class_indices(y: Tensor, n_classes: int | None) -> Tensor:
    """Labels as int64 class indices, checked: a one-line error instead of silently wrong training.

    Any integer dtype is accepted (uint8, int8, ..., int64), bool when ``n_classes == 2``, and floats
    only when every value is integral: a float label of 0.5 would pass a range check (``int(0.5) == 0``)
    and train as a soft label on one backend and as class 0 on another.

    Args:
        y: labels of any shape (e.g. ``(N,)`` or ``(M, N)``).
        n_classes: C; labels must lie in ``[0, C)`` (2 for a binary model with one logit). None: only
            non-negative integrality is checked.

    Returns:
        ``y`` as int64, same shape and device.

    Raises:
        TypeError: bool labels for C > 2, complex labels.
        ValueError: a non-integer label (value and index named), or a label outside ``[0, C)``.

    Example:
        >>> class_indices(torch.tensor([0, 1], dtype=torch.uint8), 2)
        tensor([0, 1])
    """
    if y.dtype == torch.bool:
        if n_classes not in (2, None):
            raise TypeError(f"y is a bool tensor but the model has {n_classes} classes; pass class indices")
        return y.long()
    if y.is_complex():
        raise TypeError(f"y must hold integer class indices; got dtype {y.dtype}")
    if y.numel() == 0:
        return y.long()
    if y.is_floating_point():
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            pos = torch.nonzero(bad)[0].tolist()
            at = pos[0] if len(pos) == 1 else tuple(pos)
            raise ValueError(
                f"y has a non-integer label {float(y[tuple(pos)]):g} at index {at}; labels must be class "
                f"indices in [0, {n_classes or 'C'}) (soft labels are not supported)"
            )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes or 'C'}), got range [{lo}, {hi}]")
    return y.long()


def rates(values: list[float], name: str, dtype: torch.dtype) -> Tensor:
    """Members' learning rates or L2 strengths (M,) in ``dtype``; a nonzero value that becomes 0 or inf is refused."""
    exact = torch.tensor(values, dtype=torch.float64)
    t = exact.to(dtype)
    lost = ((t == 0) & (exact != 0)) | torch.isinf(t)
    if bool(lost.any()):
        i = int(lost.nonzero()[0])
        raise ValueError(f"member {i}: {name}={values[i]:g} cannot be represented in {dtype} (the parameters' dtype)")
    return t


def as_data(v: Any, name: str, per_member: bool, device: torch.device) -> Tensor:
    """``v`` as one tensor on the trainer's device; with ``per_member``, a list of M tensors is stacked."""
    if per_member and isinstance(v, list | tuple):
        if not v or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in v):
            raise TypeError(f"per_member {name} must be a tensor (M, N, ...) or a list of M tensors (N, ...)")
        rows = [int(t.shape[0]) for t in v]
        if len(set(rows)) != 1:
            raise ValueError(f"per_member datasets must all have N rows; got {rows} ({name})")
        if len({(tuple(t.shape), t.dtype) for t in v}) != 1:
            got = [f"{tuple(t.shape)} {t.dtype}" for t in v]
            raise ValueError(f"per_member {name} tensors must all have the same shape and dtype; got {got}")
        return torch.stack([t.to(device) for t in v])
    if not isinstance(v, Tensor):
        alt = " (or, with per_member=True, a list of M tensors)" if per_member else ""
        raise TypeError(f"{name} must be a torch.Tensor{alt}; got {type(v).__name__}")
    return v.to(device)


def float32_weights(raw: Tensor, name: str) -> Tensor:
    """``raw`` as float32 (the trainer's weight dtype), refusing entries that would change value class.

    Subnormal results are refused too: they keep only a few bits (1e-44 and 1.5e-44 become 9.8e-45
    and 1.4e-44, a ratio of 1.43), which ``weight_sum`` would then train with.
    """
    check_weights(raw, name=name)
    w = raw.to(torch.float32)
    tiny = torch.finfo(torch.float32).tiny
    lost = ((w == 0) & (raw != 0)) | torch.isinf(w) | ((w != 0) & (w.abs() < tiny))
    if bool(lost.any()):
        pos = torch.nonzero(lost)[0].tolist()
        at = pos[0] if len(pos) == 1 else tuple(pos)
        v = raw[tuple(pos)].item()
        raise ValueError(
            f"{name} entry {v:g} at index {at} is not representable in float32 (the trainer's weight dtype: "
            f"it becomes {w[tuple(pos)].item():g}); rescale the weights"
        )
    return w


def example_weights(
    class_weights: Sequence[Any],
    y: Tensor,
    sample_weight: Any,
    n_classes: int,
    normalization: str,
    batch_size: int,
) -> tuple[Tensor, Tensor | None]:
    """Per-example weights ``class_weight[y] * sample_weight`` ``(M, N)`` float32 on the CPU, and the sample weights.

    Args:
        class_weights: per member, ``(C,)`` class weights or None (all 1).
        y: checked int64 labels ``(N,)`` or ``(M, N)`` on the CPU.
        sample_weight: ``(N,)``, ``(1, N)`` or ``(M, N)`` weights, or None.
        n_classes: C (2 for a binary model with one logit).
        normalization: ``"weight_sum"`` rescales members whose batch sums could overflow
            (:func:`fit_weight_sums`).
        batch_size: B, for that overflow bound.

    Raises:
        ValueError: a class weight of the wrong length, a sample weight of the wrong shape, or weights
            (or their products) that float32 cannot represent.
    """
    M = len(class_weights)
    n = y.shape[-1]
    w = torch.ones(M, n)  # (M, N)
    for i, cwi in enumerate(class_weights):
        if cwi is not None:
            if (isinstance(cwi, Tensor) and cwi.dtype == torch.bool) or (
                not isinstance(cwi, Tensor) and any(isinstance(c, bool) for c in cwi)
            ):
                raise TypeError(f"member {i}: class_weight must hold numbers, got bools {cwi!r}")
            raw = cwi if isinstance(cwi, Tensor) else as_float64(cwi)
            if raw.shape != (n_classes,):
                raise ValueError(
                    f"member {i}: class_weight has {raw.numel()} entries, the model has {n_classes} classes"
                )
            cw = float32_weights(raw, f"member {i} class_weight")
            w[i] = cw[y[i] if y.dim() == 2 else y]
    sw = None
    if sample_weight is not None:
        raw = sample_weight.detach().cpu() if isinstance(sample_weight, Tensor) else as_float64(sample_weight)
        if raw.dim() not in (1, 2) or raw.shape[-1] != n or (raw.dim() == 2 and raw.shape[0] not in (1, M)):
            raise ValueError(f"sample_weight must have shape (N,) or (M, N) = ({M}, {n}); got {tuple(raw.shape)}")
        sw = float32_weights(raw, "sample_weight")
        prod = w * sw
        # a product of two representable weights can still leave float32's normal range
        tiny = torch.finfo(torch.float32).tiny
        lost = ((prod == 0) & (w != 0) & (sw != 0)) | torch.isinf(prod) | ((prod != 0) & (prod.abs() < tiny))
        if bool(lost.any()):
            i, j = torch.nonzero(lost)[0].tolist()
            raise ValueError(
                f"member {i}: class_weight x sample_weight at index {j} ({w[i, j].item():g} x "
                f"{sw.expand_as(w)[i, j].item():g}) is not representable in float32; rescale the weights"
            )
        w = prod
    if normalization == "weight_sum":
        w = fit_weight_sums(w, batch_size)
    return w, sw


def fit_weight_sums(w: Tensor, batch_size: int) -> Tensor:
    """Scale members whose batch sums could overflow float32 by an exact power of two.

    ``weight_sum`` is invariant to a common rescaling of a member's weights, but an overflowing sum
    (inf) would silently zero every gradient of the batch.
    """
    limit = torch.finfo(w.dtype).max / batch_size
    peak = w.double().max(1).values  # (M,)
    for i in torch.nonzero(peak > limit).flatten().tolist():
        e = math.ceil(math.log2(float(peak[i]) / limit))
        scaled = w[i] * 2.0**-e
        if not torch.equal(scaled * 2.0**e, w[i]):  # the smallest weights would lose bits
            raise ValueError(
                f"member {i}: importance weights span too wide a range for float32 (largest {float(peak[i]):g}): "
                "a batch's weight sum overflows, and rescaling would flush the smallest to 0; rescale the weights"
            )
        w[i] = scaled
    return w


def data_record(x: Tensor, y: Tensor, y_dtype: torch.dtype, sw: Tensor | None, per_member: bool) -> dict:
    """What a fit trains on, for a checkpoint's settings record: shapes, dtypes and a fingerprint."""
    return {
        "per_member": per_member,
        "x": {"shape": list(x.shape), "dtype": str(x.dtype)},
        "y": {"shape": list(y.shape), "dtype": str(y_dtype)},
        "sample_weight": None if sw is None else {"shape": list(sw.shape)},
        "fingerprint": fingerprint(x, y, sw),
    }


def check_shapes(x: Tensor, y: Tensor, M: int, per_member: bool, mlp: tuple[int, torch.dtype] | None) -> None:
    """Check the shapes of a fit's data: ``x (N, ...)``, ``y (N,)``, or ``(M, N, ...)``/``(M, N)`` per member.

    ``mlp``: the stacked backend's ``(in_dim, parameter dtype)``, which ``x`` must match exactly.

    Raises:
        ValueError: mismatched or empty shapes, or an ``x`` of another width than the MLP's input.
        TypeError: ``x`` of another dtype than the stacked parameters.
    """
    if per_member:
        if x.dim() < 2 or y.dim() != 2 or x.shape[0] != M or y.shape[0] != M:
            raise ValueError(
                f"per_member data need x (M={M}, N, ...) and y (M, N); got {tuple(x.shape)}, {tuple(y.shape)}"
            )
    elif y.dim() != 1 or x.dim() < 1:
        raise ValueError(
            f"x and y must have shapes (N, ...) and (N,); got {tuple(x.shape)}, {tuple(y.shape)} "
            "(for one dataset per member, x (M, N, ...) and y (M, N), pass per_member=True)"
        )
    if x.shape[int(per_member)] != y.shape[-1]:
        raise ValueError(f"x has {x.shape[int(per_member)]} rows but y has {y.shape[-1]}")
    if y.shape[-1] == 0:
        raise ValueError(f"x and y have no examples (N=0; shapes {tuple(x.shape)}, {tuple(y.shape)})")
    if mlp is not None:
        want = (M, y.shape[-1], mlp[0]) if per_member else (y.shape[-1], mlp[0])
        if tuple(x.shape) != want:
            raise ValueError(f"x must have shape {want} for this MLP (in_dim={mlp[0]}); got {tuple(x.shape)}")
        if x.dtype != mlp[1]:
            raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {mlp[1]}; convert x")


def check_settings(
    optimizer: str,
    momentum: object,
    betas: tuple[object, object],
    eps: object,
    normalization: str,
    backend: str,
) -> tuple[float, tuple[float, float], float]:
    """Check an ensemble's optimizer and loss settings; returns ``(momentum, betas, eps)`` as floats.

    Raises:
        TypeError: a number given as a bool or a string.
        ValueError: an unknown optimizer, normalization or backend; momentum or eps negative or not
            finite; betas not two numbers in [0, 1).
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got '{optimizer}'")
    momentum, eps = check_real(momentum, "momentum"), check_real(eps, "eps")
    if not (math.isfinite(momentum) and momentum >= 0):
        raise ValueError(f"momentum must be finite and >= 0, got {momentum}")
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    betas = (check_real(betas[0], "betas[0]"), check_real(betas[1], "betas[1]"))
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if normalization not in ("batch_size", "weight_sum"):
        raise ValueError(f"normalization must be 'batch_size' or 'weight_sum', got '{normalization}'")
    if backend not in ("auto", "stacked", "func"):
        raise ValueError(f"backend must be 'auto', 'stacked' or 'func', got '{backend}'")
    return momentum, betas, eps
