"""Importance-weighted classification losses as pure tensor functions.

Each example ``i`` of a batch of size ``B`` gets a weight ``w_i = class_weight[y_i] *
sample_weight_i`` (either factor may be omitted) and a per-example loss ``l_i``. The ``"mean"``
reduction has two normalizations:

``normalization="batch_size"`` (the default)
    ``(1/B) * sum_i w_i l_i``. This is the importance-weighted ERM estimator studied by Byrd &
    Lipton (2019): an unbiased estimate of the risk under the target distribution when ``w`` are
    density ratios. Scaling every weight by ``c`` scales the loss (and the gradients) by ``c``.
    All-zero weights (a fully masked batch) give exactly 0, with zero gradients.

``normalization="weight_sum"``
    ``sum_i w_i l_i / sum_i w_i`` (self-normalized). This is what
    ``torch.nn.functional.cross_entropy(weight=..., reduction="mean")`` computes. It is invariant
    to a common rescaling of the weights, and undefined (an error) when the weights sum to 0.

PyTorch pitfall: because ``F.cross_entropy(weight=..., reduction="mean")`` divides by the
batch's sum of weights, class weights *cancel* in any batch where every example has the same
class. With ``class_weight=[1, 0.25]`` and a batch whose labels are all ``1``, the weight-sum mean
is exactly the unweighted loss, whereas the batch-size mean is ``0.25`` times it. Class weights
only act through the mix of classes within each batch under ``"weight_sum"``, which is why it is
not the default here.

Shapes: the losses accept any number of leading "model" axes, so ``M`` models trained in
lockstep can be evaluated in one call. ``logits`` defines the shape; ``target``,
``sample_weight`` and ``class_weight`` must match it along the batch (resp. class) axis and
broadcast over the leading axes, so a single batch ``target`` of shape ``(B,)`` can be shared by
logits of shape ``(M, B, C)``. Reductions act on the batch axis only and keep the leading axes.
An empty batch (``B = 0``) has no mean: ``reduction="mean"`` raises, ``"sum"`` gives zeros of
the leading shape and ``"none"`` the empty ``(..., 0)`` tensor.

Precision: the loss is computed in the dtype of ``logits`` (float32 or float64), except that
float16 and bfloat16 logits are upcast to float32: log-softmax / log-sigmoid and the reduction
run in float32 (as ``torch.autocast`` does for ``cross_entropy``) and the loss is *returned in
float32*; gradients still flow back to the half-precision logits. Weights of any real dtype are
cast to that compute dtype. The reductions are exact whenever the true result is representable:
the weights are rescaled by powers of two (which is exact) before they are multiplied and summed,
so ``"weight_sum"`` cannot overflow or underflow in ``sum_i w_i`` for any finite weights, and
``"batch_size"`` / ``"sum"`` / ``"none"`` overflow only when the result itself does. For weights
whose products and sums stay in the normal range this is bitwise the naive formula. A result
smaller than the smallest normal number (``torch.finfo(dtype).tiny``) is rounded to the subnormal
grid (an absolute error below ``tiny``).

Validation: type, dtype, device and shape checks are always done (they are free). The
data-dependent checks (label range; binary labels exactly 0 or 1; weights finite and
non-negative; weights representable in the compute dtype; non-zero weight sum for
``"weight_sum"``; no overflow of the result) read values back from the tensors, which forces a
device synchronisation; pass ``validate=False`` to skip them in hot loops. Without them a label
out of range makes the gather fail (on CUDA with a device-side assert), a binary label other than
1 counts as 0 (so soft labels such as 0.5 are silently read as 0), a weight the compute dtype
cannot hold becomes ``inf`` or ``0``, a zero weight sum gives ``nan`` and an overflowing result
``inf``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Normalization = Literal["batch_size", "weight_sum"]
Reduction = Literal["none", "sum", "mean"]

NORMALIZATIONS: tuple[str, ...] = ("batch_size", "weight_sum")
REDUCTIONS: tuple[str, ...] = ("none", "sum", "mean")

#: Logit dtypes that are upcast to float32 for the computation (and the returned loss).
HALF_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)

# Exponents k for which 2**k is a normal number, per compute dtype.
_POW2_RANGE = {torch.float32: (-126, 127), torch.float64: (-1022, 1023)}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` if ``value`` is not one of ``choices``, listing the valid values."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")


def _fmt_index(mask: Tensor) -> str:
    """Return ' at index ...' for the first True entry of ``mask`` (empty for 0-d tensors)."""
    if mask.dim() == 0:
        return ""
    idx = mask.nonzero()[0].tolist()
    return f" at index {idx[0]}" if len(idx) == 1 else f" at index {tuple(idx)}"


def _fmt_value(value: float | int | bool) -> str:
    """Integers in full (a uint64 label must not print as 1.84467e+19), floats with ``:g``."""
    return str(int(value)) if isinstance(value, (bool, int)) else f"{value:g}"


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _pow2(k: Tensor, dtype: torch.dtype) -> Tensor:
    """``2**k`` exactly, built from its bit pattern; ``k`` (integer tensor) must be in ``_POW2_RANGE``.

    Bit construction rather than ``torch.exp2``/``pow`` so that exactness does not depend on a
    device's math library.
    """
    if dtype == torch.float64:
        return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((k.to(torch.int32) + 127) << 23).view(torch.float32)


def _mul_pow2(x: Tensor, k: Tensor) -> Tensor:
    """``x * 2**k`` for a float32/float64 ``x`` and an integer tensor ``k`` (broadcast), exactly.

    ``2**k`` itself may not be representable (``k`` = 200 in float32), so the product is taken in
    three steps of the same sign: every intermediate lies between ``x`` and the result, so no
    step rounds unless the result is subnormal. Differentiable in ``x``.
    """
    lo, hi = _POW2_RANGE[x.dtype]
    # Beyond [3 lo, 3 hi], x * 2**k is 0 (resp. +-inf) for every finite nonzero x, so clamping
    # k there changes nothing.
    k = k.clamp(3 * lo, 3 * hi)
    k1 = torch.div(k, 3, rounding_mode="trunc")
    k2 = torch.div(k - k1, 2, rounding_mode="trunc")
    k3 = k - k1 - k2
    return x * _pow2(k1, x.dtype) * _pow2(k2, x.dtype) * _pow2(k3, x.dtype)


def _compute_dtype(logits: object) -> torch.dtype:
    """The dtype the loss is computed and returned in (see the module docstring)."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor; got {type(logits).__name__}")
    if logits.dtype in HALF_DTYPES:
        return torch.float32
    if logits.dtype in (torch.float32, torch.float64):
        return logits.dtype
    if logits.is_floating_point():
        raise ValueError(f"logits must be float16, bfloat16, float32 or float64; got {logits.dtype}")
    raise ValueError(f"logits must be a floating-point tensor; got {logits.dtype}")


def _check_tensor(t: object, name: str, *, allow_bool: bool = True) -> None:
    """Type check of ``target`` / weights: a real-valued tensor (free, always done)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.is_complex() or (t.dtype == torch.bool and not allow_bool):
        raise TypeError(f"{name} must be a real-valued tensor; got dtype {t.dtype}")


def _check_device(t: Tensor | None, name: str, logits: Tensor) -> None:
    """Name the argument and both devices before torch's generic error from inside a gather."""
    if t is not None and t.device != logits.device:
        raise ValueError(f"{name} is on {t.device} but logits are on {logits.device}; move it with .to(logits.device)")


def _check_trailing(t: Tensor, name: str, size: int, lead: torch.Size, ref: str) -> None:
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
        raise ValueError(f"{name} has shape {_shape(t)} but {ref}; expected shape {expected}{hint}")


def _check_not_empty_mean(B: int, reduction: str) -> None:
    if B == 0 and reduction == "mean":
        raise ValueError(
            "the batch is empty (B=0): the mean is undefined; use reduction='sum' (which gives 0) or skip empty batches"
        )


def _gather_class_weight(target: Tensor, class_weight: Tensor) -> Tensor:
    """``class_weight[..., target]`` with the leading dims of both broadcast together.

    ``target`` must already be int64 (gather's index dtype).
    """
    lead = torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    cw = class_weight.expand(*lead, class_weight.shape[-1])
    idx = target.expand(*lead, target.shape[-1])
    return torch.gather(cw, -1, idx)


def _as_index(target: Tensor) -> Tensor:
    """Labels as int64 for gather (a no-op for int64).

    int8..int32 and uint8..uint32 convert exactly; uint64 labels >= 2**63 wrap to negative
    values, which the range check rejects (it reports the original value).
    """
    return target.long()


def _check_labels(target: Tensor, n_classes: int, source: str) -> None:
    # Compare in int64: in the label's own dtype torch wraps the bound (int8 label 100 >= 300 is
    # True) and has no < / >= for uint16..uint64 on CPU.
    idx = _as_index(target)
    bad = (idx < 0) | (idx >= n_classes)
    if bool(bad.any()):
        label = _fmt_value(target[bad][0].item())
        raise ValueError(
            f"target contains label {label}{_fmt_index(bad)} but {source} C={n_classes} "
            f"classes; labels must be in [0, {n_classes})"
        )


def _check_representable(weight: Tensor, cast: Tensor, name: str, logits_dtype: torch.dtype) -> None:
    """Raise if a finite weight changed to inf, 0 or an inexact subnormal when cast to the compute dtype."""
    if weight.dtype == cast.dtype or not weight.is_floating_point() or weight.numel() == 0:
        return  # a cast from an integer or to a wider type only rounds, like any float
    w = weight.detach()
    c = cast.detach()
    tiny = torch.finfo(c.dtype).tiny
    lost = torch.isfinite(w) & (c.to(w.dtype) != w) & (torch.isinf(c) | (c.abs() < tiny))
    if bool(lost.any()):
        value = float(w[lost][0])
        where = _fmt_index(lost).removeprefix(" ")
        why = "it overflows to inf" if abs(value) > 1 else f"it underflows below the smallest normal {tiny:g}"
        raise ValueError(
            f"{name} has an entry ({value:g} {where}) that {c.dtype} cannot represent ({why}); the loss of "
            f"{logits_dtype} logits is computed in {c.dtype}: use float64 logits or rescale the weights"
        )


def _prepare_weight(
    weight: Tensor | None, name: str, dtype: torch.dtype, logits_dtype: torch.dtype, validate: bool
) -> Tensor | None:
    """Validate (if asked) and cast a weight tensor to the compute dtype."""
    if weight is None:
        return None
    if validate:
        check_weights(weight, name=name, allow_zero_sum=True)
    cast = weight.to(dtype)
    if validate:
        _check_representable(weight, cast, name, logits_dtype)
    return cast


def _times_pow2(x: Tensor, k: Tensor) -> Tensor:
    """``x * 2**k`` exactly (one rounding of the exact product), ``k`` an integer tensor broadcast to ``x``.

    float32 goes through float64, where ``2**k`` is representable for every ``k`` that float32 weights
    produce (|k| < 300), so one multiplication does it: the hot path. float64 uses :func:`_mul_pow2`.
    """
    if x.dtype == torch.float32:
        return (x.double() * _pow2(k, torch.float64)).to(torch.float32)
    return _mul_pow2(x, k)


def _scaled_weights(
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    shape: torch.Size,
) -> tuple[Tensor, Tensor] | None:
    """``(w, k)`` with ``class_weight[y_i] * sample_weight_i = w_i * 2**k`` exactly (None if no weights).

    ``k`` (..., 1) is one power of two per model (leading index), chosen so that the largest weight of
    the batch lies in [0.25, 1): sums and products of ``w`` can then neither overflow nor underflow,
    even where ``class_weight * sample_weight`` would (1e30 * 1e30 in float32). All-zero rows get
    ``k = 0``. The scaling is exact, so in the normal range ``w * 2**k`` is bitwise the naive product.

    float32 weights are multiplied in float64, where the product of two float32 numbers is exact;
    float64 weights are split into mantissa and exponent first (``torch.frexp``).
    Shapes: ``target`` int64 ``(..., B)``; ``w`` is broadcast to ``shape`` ``(..., B)``.
    """
    factors = []
    if class_weight is not None:
        factors.append(_gather_class_weight(target, class_weight))
    if sample_weight is not None:
        factors.append(sample_weight)
    if not factors:
        return None
    if factors[0].dtype == torch.float32:
        w64 = factors[0].double() if len(factors) == 1 else factors[0].double() * factors[1].double()
        w64 = torch.broadcast_to(w64, shape)  # (..., B)
        k = _row_exponent(w64, torch.frexp(w64.detach()).exponent)  # (..., 1)
        return (w64 * _pow2(-k, torch.float64)).to(torch.float32), k
    m: Tensor | None = None
    me: Tensor | None = None
    for f in factors:
        fe = torch.frexp(f.detach()).exponent  # int32; 0 for 0, inf and nan
        fm = _mul_pow2(f, -fe)
        m = fm if m is None else m * fm
        me = fe if me is None else me + fe
    assert m is not None and me is not None
    m, me = torch.broadcast_to(m, shape), torch.broadcast_to(me, shape)
    k = _row_exponent(m, me)  # (..., 1)
    return _mul_pow2(m, me - k), k


def _row_exponent(w: Tensor, e: Tensor) -> Tensor:
    """The largest exponent ``e`` over each row's nonzero ``w`` (..., 1); 0 for all-zero or empty rows."""
    if w.shape[-1] == 0:
        return torch.zeros((*w.shape[:-1], 1), dtype=torch.int32, device=w.device)
    never = torch.iinfo(torch.int32).min
    k = torch.where(w != 0, e, never).amax(-1, keepdim=True)
    return torch.where(k == never, 0, k)


def _overflow_error(bad: Tensor, dtype: torch.dtype) -> ValueError:
    fix = "rescale the weights" if dtype == torch.float64 else "use float64 logits or rescale the weights"
    return ValueError(
        f"the loss overflows {dtype}{_fmt_index(bad)}: its true value exceeds the largest finite value "
        f"{torch.finfo(dtype).max:g}; {fix}"
    )


def _reduce(
    loss: Tensor,
    weight: tuple[Tensor, Tensor] | None,
    normalization: str,
    reduction: str,
    validate: bool,
) -> Tensor:
    """Apply weights ``w * 2**k`` (see :func:`_scaled_weights`) to ``loss`` (..., B) and reduce over B."""
    if weight is None:
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum(-1)
        # (1/B) sum_i l_i; B = 0 was rejected before.
        return loss.mean(-1)
    w, k = weight  # (..., B), (..., 1): the weights are w * 2**k (see _scaled_weights)
    terms = w * loss  # (..., B)
    if reduction == "none":
        out = _times_pow2(terms, k)
        if validate:
            bad = ~torch.isfinite(out) & torch.isfinite(terms)
            if bool(bad.any()):
                raise _overflow_error(bad, loss.dtype)
        return out
    if loss.shape[-1] == 0:
        return terms.sum(-1)  # empty batch, reduction "sum": zeros of the leading shape
    if reduction == "mean" and normalization == "weight_sum":
        total = w.sum(-1)  # (...)
        if validate:
            zero = total == 0
            if bool(zero.any()):
                raise ValueError(
                    "normalization='weight_sum' is undefined: the batch has zero total weight "
                    f"(sum of weights over the batch axis is 0{_fmt_index(zero)}); use "
                    "normalization='batch_size' or make sure every batch has a positive weight"
                )
        # The common factor 2**k cancels.
        return terms.sum(-1) / total
    # "sum", or "mean" with normalization="batch_size": (1/B) sum_i w_i l_i (the IW-ERM estimator).
    scaled = terms.sum(-1) if reduction == "sum" else terms.mean(-1)  # (...)
    out = _times_pow2(scaled, k.squeeze(-1))
    if validate:
        bad = ~torch.isfinite(out) & torch.isfinite(terms).all(-1)
        if bool(bad.any()):
            raise _overflow_error(bad, loss.dtype)
    return out


def _check_weight_args(
    logits: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
) -> None:
    """Types and devices of the weights (free checks)."""
    for t, name in ((class_weight, "class_weight"), (sample_weight, "sample_weight")):
        if t is not None:
            _check_tensor(t, name, allow_bool=False)
            _check_device(t, name, logits)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def check_weights(weight: Tensor, *, name: str = "weight", allow_zero_sum: bool = False) -> None:
    """Raise unless ``weight`` is a valid tensor of importance weights.

    Valid means every entry is finite and ``>= 0`` and, unless ``allow_zero_sum``, at least one
    entry is positive. The message is one line and names the first offending entry. An empty
    tensor is valid.

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
            raise ValueError(f"{name} has a NaN entry{_fmt_index(nan)}; importance weights must be finite")
        inf = torch.isinf(w)
        if bool(inf.any()):
            value = float(w[inf][0])
            where = _fmt_index(inf).removeprefix(" ")
            raise ValueError(f"{name} has an infinite entry ({value:g} {where}); importance weights must be finite")
    if w.dtype.is_signed:  # uint16..uint64 have no `<` on CPU, and cannot be negative anyway
        neg = w < 0
        if bool(neg.any()):
            value = float(w[neg][0])
            where = _fmt_index(neg).removeprefix(" ")
            raise ValueError(f"{name} has a negative entry ({value:g} {where}); importance weights must be >= 0")
    if not allow_zero_sum and not bool((w != 0).any()):
        raise ValueError(f"{name} is all zeros (shape {_shape(w)}); at least one importance weight must be positive")


def class_to_sample_weight(target: Tensor, class_weight: Tensor) -> Tensor:
    """Per-example weights from per-class weights: ``w_i = class_weight[..., target_i]``.

    Args:
        target: integer labels (any integer dtype, not bool) of shape ``(..., B)`` with values in
            ``[0, C)``.
        class_weight: shape ``(C,)`` or ``(..., C)``; leading dims broadcast with ``target``'s.
            Must be on the same device as ``target``.

    Returns:
        Tensor of shape ``(..., B)`` (the broadcast leading dims), dtype of ``class_weight``.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: ``target`` is not integer, a label is outside ``[0, C)``, the leading dims do
            not broadcast, the tensors are on different devices, or a weight is NaN, infinite or
            negative (:func:`check_weights`; all-zero weights are allowed).

    Example:
        >>> class_to_sample_weight(torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.25]))
        tensor([1.0000, 0.2500, 0.2500])
    """
    _check_tensor(target, "target")
    _check_tensor(class_weight, "class_weight")
    if target.dim() < 1 or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of shape (..., B); got dtype {target.dtype} and shape {_shape(target)}"
        )
    if class_weight.dim() < 1:
        raise ValueError(f"class_weight must have shape (..., C); got shape {_shape(class_weight)}")
    if class_weight.device != target.device:
        raise ValueError(
            f"class_weight is on {class_weight.device} but target is on {target.device}; "
            "move it with .to(target.device)"
        )
    try:
        torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"leading dims of target {_shape(target)} and class_weight {_shape(class_weight)} do not broadcast"
        ) from None
    _check_labels(target, class_weight.shape[-1], "class_weight has")
    check_weights(class_weight, name="class_weight", allow_zero_sum=True)  # NaN or negative weights: an error
    return _gather_class_weight(_as_index(target), class_weight)


def weighted_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted multiclass cross-entropy on logits.

    ``l_i = -log softmax(logits_i)[y_i]`` and ``w_i = class_weight[y_i] * sample_weight_i``; see
    the module docstring for the normalizations (Byrd & Lipton 2019 for ``"batch_size"``), the
    precision rules and what ``validate=False`` skips.

    Args:
        logits: ``(..., B, C)`` float16, bfloat16, float32 or float64, ``C >= 2``; leading dims
            are independent models.
        target: ``(..., B)`` labels in ``[0, C)`` of any integer dtype (int8..int64,
            uint8..uint64; not bool); leading dims broadcast to logits'.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights (any real dtype, not bool), or None.
        sample_weight: ``(..., B)`` per-example weights (any real dtype, not bool), or None.
        normalization: for ``reduction="mean"``: ``"batch_size"`` divides ``sum_i w_i l_i`` by
            ``B`` (IW-ERM, default); ``"weight_sum"`` divides by ``sum_i w_i`` (as PyTorch does).
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (forces a device sync). Types, devices and shapes
            are always checked.

    Returns:
        The loss, in the dtype of ``logits`` for float32/float64 logits and in float32 for
        float16/bfloat16 logits. Weights are cast to that dtype. Natural-log units (nats).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong kind of dtype (complex; bool
            weights).
        ValueError: bad ``normalization`` / ``reduction``; logits not float16/bfloat16/float32/
            float64; ``target`` not integer (bool labels are not class indices); shapes that do
            not match (including ``C < 2``: one logit per example is
            :func:`weighted_binary_cross_entropy`'s job); an argument on another device than
            ``logits``; an empty batch with ``reduction="mean"``. With ``validate=True`` also: a
            label outside ``[0, C)``; a NaN, infinite or negative weight; a weight the compute
            dtype cannot represent; a zero total weight under ``"weight_sum"``; a result that
            overflows the compute dtype.

    Example:
        >>> logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
        >>> target = torch.tensor([1, 1])
        >>> cw = torch.tensor([1.0, 0.25])
        >>> weighted_cross_entropy(logits, target)  # log 2
        tensor(0.6931)
        >>> weighted_cross_entropy(logits, target, class_weight=cw)  # 0.25 * log 2
        tensor(0.1733)
        >>> weighted_cross_entropy(logits, target, class_weight=cw, normalization="weight_sum")
        tensor(0.6931)
    """
    _check_choice(normalization, "normalization", NORMALIZATIONS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    dtype = _compute_dtype(logits)
    _check_tensor(target, "target")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of class indices; got {target.dtype}"
            + ("; convert bool labels with target.long()" if target.dtype == torch.bool else "")
        )
    _check_device(target, "target", logits)
    _check_weight_args(logits, class_weight, sample_weight)
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape (..., B, C); got shape {_shape(logits)} (for one logit per example "
            "use weighted_binary_cross_entropy)"
        )
    *_, B, C = logits.shape
    batch = logits.shape[:-1]
    lead = logits.shape[:-2]
    if C < 2:
        raise ValueError(
            f"logits has shape {_shape(logits)}, i.e. C={C} classes, but cross-entropy needs C >= 2 "
            "(with C=1 it is identically 0); for one logit per example use "
            "weighted_binary_cross_entropy(logits.squeeze(-1), target)"
        )
    ref = f"logits has shape {_shape(logits)}"
    _check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        _check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        _check_trailing(class_weight, "class_weight", C, lead, f"{ref} (C={C} classes)")
    _check_not_empty_mean(B, reduction)
    if validate:
        _check_labels(target, C, "logits has")
    cw = _prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = _prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)

    index = _as_index(target).expand(batch)  # (..., B) int64
    # log_softmax + gather instead of softmax + log: stable for large logits and gives exact
    # gradients (softmax - onehot) without under/overflow. Half logits run in float32.
    logp = F.log_softmax(logits.to(dtype), dim=-1)  # (..., B, C)
    loss = -logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (..., B)
    weight = _scaled_weights(index, cw, sw, batch)
    return _reduce(loss, weight, normalization, reduction, validate)


def weighted_binary_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted binary cross-entropy with one logit per example.

    ``l_i = softplus(-z_i)`` if ``y_i = 1`` else ``softplus(z_i)`` (BCE with logits) and
    ``w_i = class_weight[y_i] * sample_weight_i``. Semantics of ``normalization``,
    ``reduction``, precision and ``validate`` are those of :func:`weighted_cross_entropy`.

    Shapes follow the model-stack convention: ``(..., B)`` is ``M`` stacked models of ``B``
    examples each. Unlike ``torch.nn.BCEWithLogitsLoss``, logits of shape ``(B, 1)`` would thus
    be ``B`` models of one example each (and under ``"weight_sum"`` every class weight would
    cancel), so logits with two or more axes and a last axis of size 1 are rejected: squeeze it.

    Args:
        logits: ``(..., B)`` float16, bfloat16, float32 or float64; leading dims are independent
            models. A trailing axis of size 1 is rejected (see above).
        target: ``(..., B)`` hard labels in ``{0, 1}``: any integer dtype, bool, or a float
            tensor of 0.0 / 1.0. Soft labels (such as 0.5) are not supported.
        class_weight: ``(2,)`` or ``(..., 2)``: weights of class 0 and class 1, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks (forces a device sync); a label other than 0 or
            1 (a soft label) raises. With ``validate=False`` any label other than 1 is silently
            treated as 0, so a soft label 0.5 trains as 0. Types, devices and shapes are always
            checked.

    Returns:
        The loss, in the dtype of ``logits`` for float32/float64 logits and in float32 for
        float16/bfloat16 logits. Natural-log units (nats).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong kind of dtype (complex; bool
            weights).
        ValueError: as :func:`weighted_cross_entropy`, with: logits of shape ``(..., 1)`` with two
            or more axes; a label other than 0 or 1 (with ``validate=True``).

    Example:
        >>> z = torch.tensor([0.0, 0.0, 0.0, 0.0])
        >>> y = torch.tensor([1, 1, 1, 0])
        >>> weighted_binary_cross_entropy(z, y, class_weight=torch.tensor([1.0, 0.5]))
        tensor(0.4332)
    """
    _check_choice(normalization, "normalization", NORMALIZATIONS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    dtype = _compute_dtype(logits)
    _check_tensor(target, "target")
    _check_device(target, "target", logits)
    _check_weight_args(logits, class_weight, sample_weight)
    if logits.dim() < 1:
        raise ValueError("logits must have shape (..., B); got a 0-d tensor")
    if logits.dim() >= 2 and logits.shape[-1] == 1:
        models = logits.shape[0] if logits.dim() == 2 else tuple(logits.shape[:-1])
        raise ValueError(
            f"logits has shape {_shape(logits)}, but the binary loss reads (..., B) as M stacked models of B "
            f"examples each, so shape {_shape(logits)} would be {models} models of one example; for one model "
            "pass logits.squeeze(-1) (and target.squeeze(-1))"
        )
    B = logits.shape[-1]
    lead = logits.shape[:-1]
    ref = f"logits has shape {_shape(logits)}"
    _check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        _check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        _check_trailing(class_weight, "class_weight", 2, lead, "a binary loss has 2 classes")
    _check_not_empty_mean(B, reduction)
    if validate:
        # != works for every real dtype (uint16..uint64 have no < on CPU); NaN is caught too.
        bad = (target != 0) & (target != 1)
        if bool(bad.any()):
            label = _fmt_value(target[bad][0].item())
            raise ValueError(
                f"target contains label {label}{_fmt_index(bad)}; binary labels must be 0 or 1 "
                "(soft labels are not supported)"
            )
    cw = _prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = _prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)

    positive = (target == 1).expand(logits.shape)  # (..., B)
    z = logits.to(dtype)  # half logits run in float32
    # softplus(-z) = -log sigmoid(z) and softplus(z) = -log sigmoid(-z). logsigmoid is stable
    # for any |z| in every dtype (F.softplus switches to the identity above a threshold, which
    # is slightly inexact) and has the exact gradient, also at z = 0.
    loss = -F.logsigmoid(torch.where(positive, z, -z))  # (..., B)
    weight = _scaled_weights(positive.long(), cw, sw, logits.shape)
    return _reduce(loss, weight, normalization, reduction, validate)
