"""Importance-weighted multi-label binary cross-entropy with a per-label ``pos_weight`` (re-exported by
:mod:`iwlab.functional.losses`).

Semantics of the sample weights, normalizations, precision and ``validate`` are those of
:mod:`iwlab.functional.losses` (see its docstring), with ``l_i`` the mean over the ``L`` labels.

Example:
    >>> import torch
    >>> z, y = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])
    >>> weighted_multilabel_binary_cross_entropy(z, y)  # log 2 for every label at z = 0
    tensor(0.6931)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._scaling import check_overflow, reduce_weighted, scaled_weights
from iwlab.functional._validation import (
    Normalization,
    Reduction,
    check_device,
    check_loss_args,
    check_not_empty_mean,
    check_tensor,
    check_trailing,
    check_trailing_block,
    check_unit_interval,
    prepare_weight,
    shape_of,
)

__all__ = ["weighted_multilabel_binary_cross_entropy"]


def weighted_multilabel_binary_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    pos_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted multi-label BCE on logits: ``L`` independent binary labels per example.

    Per element ``l_ij = -[pos_weight_j y_ij log sigmoid(z_ij) + (1 - y_ij) log(1 - sigmoid(z_ij))]``
    (torch's formula, computed with ``logsigmoid``: stable for any ``|z|``), per example
    ``l_i = (1/L) sum_j l_ij``, and ``w_i = sample_weight_i``. The ``"batch_size"`` mean
    ``(1/B) sum_i w_i l_i`` with unit weights is ``F.binary_cross_entropy_with_logits(z, y,
    pos_weight=pos_weight)`` (its mean over all ``B * L`` elements); ``"weight_sum"`` divides
    ``sum_i w_i l_i`` by ``sum_i w_i``. ``pos_weight`` is not an importance weight: it trades recall for
    precision on each label, as in torch.

    Args:
        logits: ``(..., B, L)`` float16, bfloat16, float32 or float64, ``L >= 1``; leading dims are
            independent models.
        target: ``(..., B, L)`` in ``[0, 1]``: hard (any integer dtype or bool, 0 or 1) or soft (floating);
            leading dims broadcast to logits'.
        pos_weight: ``(L,)`` or ``(..., L)`` finite, ``>= 0`` weights of the positive term, or None (all 1).
        sample_weight: ``(..., B)`` per-example importance weights, or None.
        normalization: ``"batch_size"`` (default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B, L)`` of ``w_i l_ij``; ``"sum"`` -> ``(...)`` of
            ``sum_i w_i sum_j l_ij``; ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (forces a device sync): targets finite and in
            ``[0, 1]``, weights finite, ``>= 0`` and representable, the ``"weight_sum"`` total and the
            result's overflow. Without them a target outside ``[0, 1]`` is used as given.

    Returns:
        The loss, in the dtype of ``logits`` for float32/float64 logits and in float32 for
        float16/bfloat16 logits. Natural-log units (nats).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong kind of dtype (complex; bool weights).
        ValueError: bad ``normalization`` / ``reduction``; logits not float16/bfloat16/float32/float64,
            with fewer than 2 axes or with ``L = 0`` labels; shapes that do not match; an argument on
            another device than ``logits``; an empty batch with ``reduction="mean"``. With
            ``validate=True`` also: a target outside ``[0, 1]`` or not finite; a NaN, infinite or negative
            weight; a weight the compute dtype cannot represent; a zero total weight under
            ``"weight_sum"``; a result that overflows the compute dtype although the inputs are finite (a
            huge ``pos_weight``; the ``"mean"`` over labels overflows only when the mean itself does).

    Source:
        ``torch.nn.BCEWithLogitsLoss`` (its ``pos_weight`` formula); importance weights: Byrd & Lipton
        (2019, Sec. 3).

    Example:
        >>> import torch
        >>> z, y = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> weighted_multilabel_binary_cross_entropy(z, y, pos_weight=torch.tensor([3.0, 1.0]), reduction="none")
        tensor([[2.0794, 0.6931],
                [2.0794, 0.6931]])
    """
    dtype = check_loss_args(logits, target, normalization, reduction, None, sample_weight)
    if pos_weight is not None:
        check_tensor(pos_weight, "pos_weight", allow_bool=False)
        check_device(pos_weight, "pos_weight", logits)
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape (..., B, L); got shape {shape_of(logits)} (for one logit per example use "
            "weighted_binary_cross_entropy)"
        )
    *_, B, L = logits.shape
    if L == 0:
        raise ValueError(
            f"logits has shape {shape_of(logits)}, i.e. L=0 labels, but the loss needs L >= 1 (the mean over "
            "no labels is undefined)"
        )
    lead = logits.shape[:-2]
    ref = f"logits has shape {shape_of(logits)}"
    check_trailing_block(target, "target", (B, L), lead, ref)
    if sample_weight is not None:
        check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if pos_weight is not None:
        check_trailing(pos_weight, "pos_weight", L, lead, f"{ref} (L={L} labels)")
    check_not_empty_mean(B, reduction)
    if validate:
        check_unit_interval(target)
    pw = prepare_weight(pos_weight, "pos_weight", dtype, logits.dtype, validate)
    sw = prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)

    z = logits.to(dtype)  # half logits run in float32
    y = target.to(dtype)  # (..., B, L)
    pos = F.logsigmoid(z) * y  # (..., B, L) y log sigmoid(z)
    # log(1 - sigmoid(z)) = logsigmoid(-z): no 1 - p cancellation for large z.
    neg = (1 - y) * F.logsigmoid(-z)  # (..., B, L)
    pwb = None if pw is None else pw.unsqueeze(-2)  # (..., 1, L): pos_weight scales the positive term only
    loss = -((pos if pwb is None else pos * pwb) + neg)  # (..., B, L)
    weight = scaled_weights(None, None, sw, logits.shape[:-1])  # w * 2**k, (..., B) and (..., 1)
    if reduction == "none":
        # Elementwise w_i l_ij: the example's weight broadcast over its labels.
        per_label = None if weight is None else (weight[0].unsqueeze(-1), weight[1].unsqueeze(-1))
        out = reduce_weighted(loss, per_label, normalization, reduction, validate)
    else:
        # "sum" adds every element; "mean" averages the labels first, so that l_i is on the scale of one label.
        per_example = loss.sum(-1) if reduction == "sum" else _label_mean(loss, pos, neg, pwb)  # (..., B)
        out = reduce_weighted(per_example, weight, normalization, reduction, validate)
    if validate:
        # A huge pos_weight makes l_ij (or a sum of them) overflow although logits, targets and weights
        # are finite (those were checked above): the error, not inf.
        def finite() -> Tensor:  # (..., B, L), or (...) once reduced
            ok = torch.isfinite(z)
            return ok if reduction == "none" else ok.flatten(-2).all(-1)

        check_overflow(out, finite)
    return out


def _label_mean(loss: Tensor, pos: Tensor, neg: Tensor, pwb: Tensor | None) -> Tensor:
    """``(1/L) sum_j l_ij`` (..., B), finite whenever the mean is, although ``l_ij`` or their sum may overflow.

    Where ``loss.mean(-1)`` is not finite (``pos_weight`` 1e308 with two labels), the elements are
    recomputed scaled by ``2**-m``, ``2**m > L``, with the factor folded into ``pos_weight`` before it
    multiplies (``pos_weight * |log sigmoid(z)|`` may overflow alone); elsewhere the plain mean, bitwise.
    """
    L = loss.shape[-1]
    m = L.bit_length()
    s = 2.0**-m  # exact power of two: the scaled elements round as the plain ones (but for subnormals)
    scaled = -(pos * (s if pwb is None else pwb * s) + neg * s)  # (..., B, L) l_ij * 2**-m
    plain = loss.mean(-1)  # (..., B)
    return torch.where(torch.isfinite(plain), plain, scaled.sum(-1) / L * 2.0**m)
