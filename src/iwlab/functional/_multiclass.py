"""The checks and the weighted reduction every class-index loss on ``(..., B, C)`` logits shares.

Used by :func:`~iwlab.functional.losses_focal.focal_loss`, :mod:`~iwlab.functional.losses_margin` and
:mod:`~iwlab.functional.losses_remedies`; the semantics are those of :mod:`iwlab.functional.losses`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional._scaling import check_overflow, reduce_weighted, scaled_weights
from iwlab.functional._validation import (
    Normalization,
    Reduction,
    as_index,
    check_labels,
    check_loss_args,
    check_not_empty_mean,
    prepare_weight,
    shape_of,
)
from iwlab.functional.losses_ce import check_shapes

__all__ = ["finish_multiclass", "prepare_multiclass"]


def prepare_multiclass(
    logits: Tensor,
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    normalization: Normalization,
    reduction: Reduction,
    validate: bool,
    name: str,
    hint: str | None = None,
) -> tuple[torch.dtype, Tensor | None, Tensor | None, Tensor]:
    """The checks of a class-index loss on ``(..., B, C)`` logits: ``(dtype, cw, sw, index)``.

    As :func:`~iwlab.functional.losses_focal.focal_loss` runs them; ``index`` is the int64 ``(..., B)``
    target expanded to the logits' batch shape, ``cw`` / ``sw`` the weights in the compute ``dtype``.

    Raises:
        TypeError, ValueError: as :func:`~iwlab.functional.losses.weighted_cross_entropy` for class indices.
    """
    dtype = check_loss_args(logits, target, normalization, reduction, class_weight, sample_weight)
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of class indices; got {target.dtype} ({name} takes no class "
            "probabilities; for bool labels use target.long())"
        )
    if logits.dim() < 2 or logits.shape[-1] < 2:
        raise ValueError(
            f"logits must have shape (..., B, C) with C >= 2; got shape {shape_of(logits)} ({hint or name})"
        )
    B = check_shapes(logits, target, class_weight, sample_weight, soft=False)
    check_not_empty_mean(B, reduction)
    if validate:
        check_labels(target, logits.shape[-1], "logits has")
    cw = prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)
    index = as_index(target).expand(logits.shape[:-1])  # (..., B) int64
    return dtype, cw, sw, index


def finish_multiclass(
    loss: Tensor,
    index: Tensor,
    cw: Tensor | None,
    sw: Tensor | None,
    logits: Tensor,
    normalization: Normalization,
    reduction: Reduction,
    validate: bool,
) -> Tensor:
    """Weight and reduce the per-example ``loss`` ``(..., B)``; with ``validate``, overflow of finite logits raises."""
    out = reduce_weighted(loss, scaled_weights(index, cw, sw, index.shape), normalization, reduction, validate)
    if validate:
        # A loss of finite logits can overflow (a margin of 1e308, or scale * logits): the error, not inf.
        def finite() -> Tensor:  # (..., B) for "none", else (...)
            ok = torch.isfinite(logits).all(-1)
            return ok if reduction == "none" else ok.all(-1)

        check_overflow(out, finite)
    return out
