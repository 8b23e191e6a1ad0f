"""Exact power-of-two rescaling of importance weights, and the weighted reduction of the losses.

Internal to :mod:`iwlab.functional.losses` (not a public API; names may change). The losses write
each batch's weights ``class_weight[y_i] * sample_weight_i`` as ``w_i * 2**k`` with one integer ``k``
per model, chosen so that the largest ``w_i`` lies in ``[0.25, 1)``. Multiplying by a power of two is
exact in binary floating point, so ``sum_i w_i l_i`` and ``sum_i w_i`` cannot overflow or underflow
for any finite weights, and the final ``* 2**k`` rounds once. For weights whose products and sums stay
in the normal range the result is bitwise the naive formula ``(1/B) sum_i c_{y_i} s_i l_i``
(the importance-weighted ERM estimator of Byrd & Lipton 2019, Sec. 2).

Example:
    >>> cw, sw = torch.tensor([1e30, 1e30]), torch.tensor([1e30, 2e30])  # float32 products overflow
    >>> cw * sw
    tensor([inf, inf])
    >>> w, k = scaled_weights(torch.tensor([0, 1]), cw, sw, torch.Size([2]))  # exact: w * 2**k
    >>> w, k
    (tensor([0.3112, 0.6223]), tensor([201], dtype=torch.int32))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from iwlab.functional.checks import fmt_index

__all__ = [
    "POW2_RANGE",
    "check_overflow",
    "gather_class_weight",
    "guarded_sum",
    "mul_pow2",
    "overflow_error",
    "pow2",
    "reduce_terms",
    "reduce_weighted",
    "row_exponent",
    "scale_factors",
    "scaled_weights",
    "times_pow2",
]

#: Exponents k for which 2**k is a normal number, per compute dtype.
POW2_RANGE = {torch.float32: (-126, 127), torch.float64: (-1022, 1023)}


def pow2(k: Tensor, dtype: torch.dtype) -> Tensor:
    """``2**k`` exactly, built from its bit pattern; ``k`` (integer tensor) must be in ``POW2_RANGE``.

    Bit construction rather than ``torch.exp2``/``pow`` so that exactness does not depend on a
    device's math library.
    """
    if dtype == torch.float64:
        return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((k.to(torch.int32) + 127) << 23).view(torch.float32)


def mul_pow2(x: Tensor, k: Tensor) -> Tensor:
    """``x * 2**k`` for a float32/float64 ``x`` and an integer tensor ``k`` (broadcast), exactly.

    ``2**k`` itself may not be representable (``k`` = 200 in float32), so the product is taken in
    three steps of the same sign: every intermediate lies between ``x`` and the result, so no
    step rounds unless the result is subnormal. Differentiable in ``x``.
    """
    lo, hi = POW2_RANGE[x.dtype]
    # Beyond [3 lo, 3 hi], x * 2**k is 0 (resp. +-inf) for every finite nonzero x, so clamping
    # k there changes nothing.
    k = k.clamp(3 * lo, 3 * hi)
    k1 = torch.div(k, 3, rounding_mode="trunc")
    k2 = torch.div(k - k1, 2, rounding_mode="trunc")
    k3 = k - k1 - k2
    return x * pow2(k1, x.dtype) * pow2(k2, x.dtype) * pow2(k3, x.dtype)


def times_pow2(x: Tensor, k: Tensor) -> Tensor:
    """``x * 2**k`` exactly (one rounding of the exact product), ``k`` an integer tensor broadcast to ``x``.

    float32 goes through float64, where ``2**k`` is representable for every ``k`` that float32 weights
    produce (|k| < 300), so one multiplication does it: the hot path. float64 uses :func:`mul_pow2`.
    """
    if x.dtype == torch.float32:
        return (x.double() * pow2(k, torch.float64)).to(torch.float32)
    return mul_pow2(x, k)


def gather_class_weight(target: Tensor, class_weight: Tensor) -> Tensor:
    """``class_weight[..., target]`` with the leading dims of both broadcast together.

    ``target`` must already be int64 (gather's index dtype).
    """
    lead = torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    cw = class_weight.expand(*lead, class_weight.shape[-1])
    idx = target.expand(*lead, target.shape[-1])
    return torch.gather(cw, -1, idx)


def scaled_weights(
    target: Tensor | None,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    shape: torch.Size,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor] | None:
    """``(w, k)`` with ``class_weight[y_i] * sample_weight_i = w_i * 2**k`` exactly (None if no weights).

    Args:
        target: int64 labels ``(..., B)`` (class indices into ``class_weight``); may be None when
            ``class_weight`` is None.
        class_weight: ``(..., C)`` float32/float64 per-class weights, or None.
        sample_weight: ``(..., B)`` per-example weights of the same dtype, or None.
        shape: the batch shape ``(..., B)`` to broadcast ``w`` to (the loss's shape).
        keep: bool ``(..., B)`` or None: where False (an ignored target) the weight is 0, and it
            does not take part in choosing ``k``.

    Returns:
        ``w`` ``(..., B)`` in the weights' dtype, and ``k`` ``(..., 1)`` int32; or None when both
        weights are None.

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
        assert target is not None
        factors.append(gather_class_weight(target, class_weight))
    if sample_weight is not None:
        factors.append(sample_weight)
    if not factors:
        return None
    return scale_factors(factors, shape, keep)


def scale_factors(
    factors: list[Tensor], shape: torch.Size, keep: Tensor | None = None, row_dims: int = 1
) -> tuple[Tensor, Tensor]:
    """``(w, k)`` with ``prod(factors) = w * 2**k`` exactly, ``k`` one exponent per row of the last ``row_dims`` axes.

    Args:
        factors: float32 or float64 tensors (all one dtype) broadcasting to ``shape``; non-negative.
        shape: the shape of ``w``: ``(..., B)`` (``row_dims=1``) or ``(..., B, C)`` (``row_dims=2``,
            per (example, class) pair weights of probability targets).
        keep: bool, broadcasting to ``shape``, or None: where False the weight is 0 (ignored targets).
        row_dims: how many trailing axes of ``shape`` share one exponent (one model's batch).

    Returns:
        ``w`` of ``shape`` in the factors' dtype and ``k`` ``(..., 1)`` int32 (``shape`` without the
        last ``row_dims`` axes, then 1); see :func:`scaled_weights`.
    """
    lead = shape[: len(shape) - row_dims]
    if factors[0].dtype == torch.float32:
        # Exact for two float32 factors (48 significant bits); a third (a probability target) rounds once.
        w64 = factors[0].double()
        for f in factors[1:]:
            w64 = w64 * f.double()
        w64 = torch.broadcast_to(w64, shape)  # (..., B) or (..., B, C)
        if keep is not None:
            w64 = torch.where(keep, w64, 0.0)
        flat = w64.reshape(*lead, -1)  # (..., B) or (..., B*C): one row per model
        k = row_exponent(flat, torch.frexp(flat.detach()).exponent)  # (..., 1)
        return (w64 * pow2(-_per_row(k, row_dims), torch.float64)).to(torch.float32), k
    m: Tensor | None = None
    me: Tensor | None = None
    for f in factors:
        fe = torch.frexp(f.detach()).exponent  # int32; 0 for 0, inf and nan
        fm = mul_pow2(f, -fe)
        m = fm if m is None else m * fm
        me = fe if me is None else me + fe
    assert m is not None and me is not None
    m, me = torch.broadcast_to(m, shape), torch.broadcast_to(me, shape)
    if keep is not None:
        m = torch.where(keep, m, 0.0)
    k = row_exponent(m.reshape(*lead, -1), me.reshape(*lead, -1))  # (..., 1)
    return mul_pow2(m, me - _per_row(k, row_dims)), k


def _per_row(k: Tensor, row_dims: int) -> Tensor:
    """``k`` (..., 1) shaped to broadcast over ``row_dims`` trailing axes: (..., 1) or (..., 1, 1)."""
    return k.reshape(*k.shape, *([1] * (row_dims - 1)))


def row_exponent(w: Tensor, e: Tensor) -> Tensor:
    """The largest exponent ``e`` over each row's nonzero ``w`` (..., 1); 0 for all-zero or empty rows."""
    if w.shape[-1] == 0:
        return torch.zeros((*w.shape[:-1], 1), dtype=torch.int32, device=w.device)
    never = torch.iinfo(torch.int32).min
    k = torch.where(w != 0, e, never).amax(-1, keepdim=True)
    return torch.where(k == never, 0, k)


def overflow_error(bad: Tensor, dtype: torch.dtype) -> ValueError:
    fix = "rescale the weights" if dtype == torch.float64 else "use float64 logits or rescale the weights"
    return ValueError(
        f"the loss overflows {dtype}{fmt_index(bad)}: its true value exceeds the largest finite value "
        f"{torch.finfo(dtype).max:g}; {fix}"
    )


def check_overflow(out: Tensor, finite_inputs: Callable[[], Tensor]) -> None:
    """Raise :func:`overflow_error` where ``out`` is not finite although ``finite_inputs()`` (bool, broadcast) is True.

    ``finite_inputs`` is called only when some ``out`` is not finite: checking the inputs (the logits,
    ``(..., B, C)``) costs as much as the loss itself, the output almost nothing.
    """
    if bool(torch.isfinite(out).all()):
        return
    bad = ~torch.isfinite(out) & finite_inputs()
    if bool(bad.any()):
        raise overflow_error(bad, out.dtype)


def guarded_sum(
    primary: Tensor, terms: Tensor, divisor: Tensor | int | None, k: Tensor | None, validate: bool = True
) -> Tensor:
    """``primary * 2**k`` for ``primary = sum_i terms_i (/ divisor)`` over the last axis, without a false overflow.

    A sum of finite terms can overflow although the result is representable: a mean of terms near the
    largest float, or a sum times ``2**k`` with ``k < 0``. Where ``primary`` is not finite the terms are
    summed again scaled by ``2**-m`` with ``2**m > n`` (``n`` terms): ``n`` terms below ``max / 2**m``
    cannot overflow their sum, the scaling is exact (but for subnormal terms), and ``2**m`` goes back in
    the final ``* 2**(k + m)``, which overflows only when the result does. Elsewhere the result is
    bitwise ``primary * 2**k`` (``primary`` is passed in as computed: ``mean`` and ``sum / n`` may differ
    in the last bit). With ``validate`` one device sync (is every ``primary`` finite?) spares the second
    sum in the usual case; without it there is no guard (and no sync): an overflowing sum gives inf, as
    :mod:`iwlab.functional.losses` documents for ``validate=False``.

    Args:
        primary: ``(...)`` the plain reduction of ``terms`` (``(..., n)``, float32/float64, ``>= 0``).
        divisor: what ``primary`` divided the sum by (an int, or a ``(...)`` tensor), or None.
        k: int32 ``(..., 1)`` exponents of the weights (see :func:`scaled_weights`), or None (``k = 0``).
    """
    base = primary if k is None else times_pow2(primary, k.squeeze(-1))
    if not validate or bool(torch.isfinite(primary).all()):
        return base
    m = terms.shape[-1].bit_length()  # 2**m > n
    scaled = (terms * 2.0**-m).sum(-1)  # (...) 2**-m is a normal float32 for any n < 2**63
    if divisor is not None:
        scaled = scaled / divisor
    rescued = scaled * 2.0**m if k is None else times_pow2(scaled, k.squeeze(-1) + m)
    return torch.where(torch.isfinite(primary), base, rescued)


def reduce_weighted(
    loss: Tensor,
    weight: tuple[Tensor, Tensor] | None,
    normalization: str,
    reduction: str,
    validate: bool,
    count: Tensor | None = None,
) -> Tensor:
    """Apply weights ``w * 2**k`` (see :func:`scaled_weights`) to ``loss`` (..., B) and reduce over B.

    ``"mean"`` with ``normalization="batch_size"`` is the IW-ERM estimator ``(1/B) sum_i w_i l_i``
    (Byrd & Lipton 2019, Sec. 3); ``"weight_sum"`` is the self-normalized ``sum_i w_i l_i / sum_i w_i``.

    Args:
        loss: per-example losses ``(..., B)``, float32 or float64 (nats); 0 at ignored targets.
        weight: ``(w, k)`` from :func:`scaled_weights`, or None for an unweighted loss.
        normalization: ``"batch_size"`` or ``"weight_sum"`` (read for ``reduction="mean"`` only).
        reduction: ``"none"`` -> ``(..., B)``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: check for a zero weight sum and for overflow of the result (device sync).
        count: int64 ``(...)`` number of non-ignored examples per row (``ignore_index``), or None
            (all ``B`` count). It replaces ``B`` in the ``"batch_size"`` mean, and is the weight sum of
            an unweighted loss.

    Returns:
        The reduced loss in ``loss.dtype``.

    Raises:
        ValueError: (with ``validate``) a zero total weight under ``"weight_sum"``, or a result that
            overflows ``loss.dtype`` although every term is finite.
    """
    if weight is None:
        if reduction == "none":
            return loss
        if reduction == "sum":
            out = guarded_sum(loss.sum(-1), loss, None, None, validate)
        elif count is None:
            # (1/B) sum_i l_i; B = 0 was rejected before.
            out = guarded_sum(loss.mean(-1), loss, loss.shape[-1], None, validate)
        else:
            if normalization == "weight_sum" and validate:
                _check_total(count)
            n = _denominator(count, normalization, loss.dtype)
            out = guarded_sum(loss.sum(-1) / n, loss, n, None, validate)
        if validate:
            check_overflow(out, lambda: torch.isfinite(loss).all(-1))
        return out
    w, k = weight  # (..., B), (..., 1): the weights are w * 2**k (see scaled_weights)
    return reduce_terms(w * loss, w, k, normalization, reduction, validate, count)


def _denominator(count: Tensor, normalization: str, dtype: torch.dtype) -> Tensor:
    """The non-ignored count as a divisor; a fully ignored row has sum 0, and 0 / 1 gives its documented 0."""
    n = count.to(dtype)
    return n if normalization == "weight_sum" else n.clamp(min=1)


def _check_total(total: Tensor) -> None:
    zero = total == 0
    if bool(zero.any()):
        raise ValueError(
            "normalization='weight_sum' is undefined: the batch has zero total weight "
            f"(sum of weights over the batch axis is 0{fmt_index(zero)}); use "
            "normalization='batch_size' or make sure every batch has a positive weight"
        )


def reduce_terms(
    terms: Tensor,
    w: Tensor,
    k: Tensor,
    normalization: str,
    reduction: str,
    validate: bool,
    count: Tensor | None = None,
) -> Tensor:
    """Reduce weighted terms ``terms_i * 2**k`` over B; ``w`` (..., B) are the scaled weights for ``"weight_sum"``.

    ``terms`` is ``w_i l_i`` for one weight per example, or ``sum_c W_ic (-log p_ic)`` with
    ``w_i = sum_c W_ic`` for per-(example, class) weights (probability targets with class weights).
    Arguments and errors as :func:`reduce_weighted`.
    """
    if reduction == "none":
        out = times_pow2(terms, k)
        if validate:
            bad = ~torch.isfinite(out) & torch.isfinite(terms)
            if bool(bad.any()):
                raise overflow_error(bad, terms.dtype)
        return out
    if terms.shape[-1] == 0:
        return terms.sum(-1)  # empty batch, reduction "sum": zeros of the leading shape
    if reduction == "mean" and normalization == "weight_sum":
        total = w.sum(-1)  # (...)
        if validate:
            _check_total(total)
        # The common factor 2**k cancels.
        out = guarded_sum(terms.sum(-1) / total, terms, total, None, validate)
    # "sum", or "mean" with normalization="batch_size": (1/B) sum_i w_i l_i (the IW-ERM estimator).
    elif reduction == "sum":
        out = guarded_sum(terms.sum(-1), terms, None, k, validate)
    elif count is None:
        out = guarded_sum(terms.mean(-1), terms, terms.shape[-1], k, validate)
    else:
        n = _denominator(count, normalization, terms.dtype)
        out = guarded_sum(terms.sum(-1) / n, terms, n, k, validate)
    if validate:
        check_overflow(out, lambda: torch.isfinite(terms).all(-1))
    return out
