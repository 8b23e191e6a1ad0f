"""The cross-entropy of :func:`iwlab.functional.losses.weighted_cross_entropy`: shapes of both layouts, and the sums.

Internal (not a public API; names may change): the public function validates its arguments, then calls
:func:`check_shapes` (the stacked-model layout ``(..., B, C)``, ``class_dim=-1``) or
:func:`check_channels_first` (torch's ``(N, C, d1, ..., dk)``, ``class_dim=1``), moves the second layout
to the first with :func:`to_stacked`, and computes the loss with :func:`cross_entropy`. Every formula is
in the docstring of :func:`iwlab.functional.losses.weighted_cross_entropy`.

Example:
    >>> z = torch.zeros(2, 3, 4, 4)  # (N, C, H, W)
    >>> x, y, sw = to_stacked(z, torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2), soft=False)
    >>> x.shape, y.shape, sw.shape  # every pixel is an example: B = N * H * W
    (torch.Size([32, 3]), torch.Size([32]), torch.Size([32]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._scaling import reduce_terms, reduce_weighted, scale_factors, scaled_weights
from iwlab.functional._validation import as_index, check_trailing, check_trailing_block, ignored, shape_of

__all__ = ["check_channels_first", "check_shapes", "cross_entropy", "to_stacked"]


def _check_classes(logits: Tensor, C: int) -> None:
    if C < 2:
        raise ValueError(
            f"logits has shape {shape_of(logits)}, i.e. C={C} classes, but cross-entropy needs C >= 2 "
            "(with C=1 it is identically 0); for one logit per example use "
            "weighted_binary_cross_entropy(logits.squeeze(-1), target)"
        )


def _soft_target_error(target: Tensor, expected: str) -> ValueError:
    return ValueError(
        f"target is a {target.dtype} tensor of shape {shape_of(target)}: a floating target holds class "
        f"probabilities of shape {expected}; class indices must be an integer tensor"
    )


def check_shapes(
    logits: Tensor, target: Tensor, class_weight: Tensor | None, sample_weight: Tensor | None, soft: bool
) -> int:
    """Shapes of the stacked-model layout (``class_dim=-1``); returns the batch size ``B``.

    Args:
        logits: ``(..., B, C)``; leading axes are stacked models.
        target: ``(..., B)`` class indices, or (``soft``) ``(..., B, C)`` class probabilities; leading
            dims broadcast to the logits'.
        class_weight: ``(..., C)`` or None. sample_weight: ``(..., B)`` or None.
        soft: ``target`` is floating (probabilities).

    Raises:
        ValueError: a shape that does not fit, naming the argument.
    """
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape (..., B, C); got shape {shape_of(logits)} (for one logit per example "
            "use weighted_binary_cross_entropy)"
        )
    *_, B, C = logits.shape
    lead = logits.shape[:-2]
    _check_classes(logits, C)
    ref = f"logits has shape {shape_of(logits)}"
    if soft:
        if target.dim() < 2 or tuple(target.shape[-2:]) != (B, C):
            raise _soft_target_error(target, f"(..., B, C) = (..., {B}, {C})")
        check_trailing_block(target, "target", (B, C), lead, ref)
    else:
        try:
            check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
        except ValueError as e:
            # torch's (N, C, d1, ...) layout read as stacked models: point at class_dim=1
            if logits.dim() >= 3 and target.dim() == logits.dim() - 1 and target.shape[0] == logits.shape[0]:
                raise ValueError(
                    f"{e}; for torch's (N, C, d1, ...) layout pass class_dim=1 (leading axes here are stacked models)"
                ) from None
            raise
    if sample_weight is not None:
        check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        check_trailing(class_weight, "class_weight", C, lead, f"{ref} (C={C} classes)")
    return B


def check_channels_first(
    logits: Tensor, target: Tensor, class_weight: Tensor | None, sample_weight: Tensor | None, soft: bool
) -> int:
    """Shapes of torch's layout (``class_dim=1``, one model); returns ``B = N * d1 * ... * dk``.

    Args:
        logits: ``(N, C, d1, ..., dk)``, ``k >= 0``.
        target: ``(N, d1, ..., dk)`` class indices, or (``soft``) ``(N, C, d1, ..., dk)`` probabilities.
        class_weight: ``(C,)`` or None.
        sample_weight: ``(N,)`` (one weight per sample, shared by its positions) or ``(N, d1, ..., dk)``, or None.
        soft: ``target`` is floating (probabilities).

    Raises:
        ValueError: a shape that does not fit, naming the argument.
    """
    if logits.dim() < 2:
        raise ValueError(f"with class_dim=1 logits must have shape (N, C, d1, ..., dk); got shape {shape_of(logits)}")
    N, C, *d = logits.shape
    _check_classes(logits, C)
    ref = f"logits has shape {shape_of(logits)} (class_dim=1: N={N}, C={C})"
    positions = (N, *d)
    if soft:
        if target.shape != logits.shape:
            raise _soft_target_error(target, f"{shape_of(logits)} (the logits' shape, class_dim=1)")
    elif tuple(target.shape) != positions:
        raise ValueError(f"target has shape {shape_of(target)} but {ref}; expected shape {positions}")
    if sample_weight is not None and tuple(sample_weight.shape) not in ((N,), positions):
        raise ValueError(
            f"sample_weight has shape {shape_of(sample_weight)} but {ref}; expected shape ({N},) or {positions}"
        )
    if class_weight is not None and tuple(class_weight.shape) != (C,):
        raise ValueError(
            f"class_weight has shape {shape_of(class_weight)} but {ref}; expected shape ({C},) (class_dim=1 is "
            "one model)"
        )
    return math.prod(positions)


def to_stacked(
    logits: Tensor, target: Tensor, sample_weight: Tensor | None, soft: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Torch's ``(N, C, d1, ..., dk)`` layout as one model's ``(B, C)`` batch, ``B = N * d1 * ... * dk``.

    Shapes must have been checked by :func:`check_channels_first`. The row order is ``(n, d1, ..., dk)``
    in C order, so ``out.reshape(N, d1, ..., dk)`` undoes it for ``reduction="none"``.
    """
    C = logits.shape[1]
    z = logits.movedim(1, -1).reshape(-1, C)  # (B, C)
    t = target.movedim(1, -1).reshape(-1, C) if soft else target.reshape(-1)  # (B, C) or (B,)
    sw = sample_weight
    if sw is not None:
        positions = (logits.shape[0], *logits.shape[2:])
        if sw.dim() == 1:  # (N,): one weight per sample, repeated over its positions
            sw = sw.reshape(-1, *([1] * (len(positions) - 1))).expand(positions)  # (N, d1, ..., dk)
        sw = sw.reshape(-1)  # (B,)
    return z, t, sw


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    *,
    dtype: torch.dtype,
    soft: bool,
    ignore_index: int | None,
    label_smoothing: float,
    normalization: str,
    reduction: str,
    validate: bool,
) -> Tensor:
    """The weighted cross-entropy of checked, stacked-layout inputs; weights already cast to ``dtype``.

    ``validate`` here only covers the result checks (zero weight sum, overflow): the input checks ran before.
    """
    batch = logits.shape[:-1]
    C = logits.shape[-1]
    # log_softmax + gather instead of softmax + log: stable for large logits and gives exact
    # gradients (softmax - onehot) without under/overflow. Half logits run in float32.
    logp = F.log_softmax(logits.to(dtype), dim=-1)  # (..., B, C)
    if soft:
        return _soft_cross_entropy(
            logp, target, class_weight, sample_weight, label_smoothing, normalization, reduction, validate
        )
    index = as_index(target).expand(batch)  # (..., B) int64
    keep = count = None
    if ignore_index is not None:
        keep = ~ignored(target, index, ignore_index)  # (..., B); a uint64 label never matches a negative one
        count = keep.sum(-1)  # (...) the "batch_size" divisor: the non-ignored targets of each model
        index = torch.where(keep, index, 0)  # an ignored label may be out of range (-100): gather class 0, masked below
    loss = -logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (..., B)
    if label_smoothing > 0:
        # (1 - eps) (-log p_y) + (eps / C) sum_c (-log p_c): the weight w_i multiplies the whole of it.
        loss = (1 - label_smoothing) * loss + (label_smoothing / C) * -logp.sum(-1)
    if keep is not None:
        loss = torch.where(keep, loss, 0.0)  # 0 loss and, through where, 0 gradient at ignored targets
    weight = scaled_weights(index, class_weight, sample_weight, batch, keep)
    return reduce_weighted(loss, weight, normalization, reduction, validate, count)


def _soft_cross_entropy(
    logp: Tensor,
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    label_smoothing: float,
    normalization: str,
    reduction: str,
    validate: bool,
) -> Tensor:
    """``l_i = -sum_c t'_ic log p_ic`` with ``t' = (1 - eps) t + eps / C``; class weights per (i, c) pair."""
    C = logp.shape[-1]
    t = target.to(logp.dtype)  # (..., B, C); a float64 target for float32 logits rounds, like any cast
    if label_smoothing > 0:
        t = (1 - label_smoothing) * t + label_smoothing / C
    if class_weight is None:
        loss = -(t * logp).sum(-1)  # (..., B)
        weight = scaled_weights(None, None, sample_weight, logp.shape[:-1])
        return reduce_weighted(loss, weight, normalization, reduction, validate)
    # Each (example, class) pair has weight s_i * class_weight[c] * t'_ic (the risk E_x sum_y t(y|x) w(y) l(x, y));
    # the example's weight (for "weight_sum") is their sum over c. Scaled together, one 2**k per model.
    factors = [class_weight.unsqueeze(-2), t]  # (..., 1, C), (..., B, C)
    if sample_weight is not None:
        factors.append(sample_weight.unsqueeze(-1))  # (..., B, 1)
    W, k = scale_factors(factors, logp.shape, row_dims=2)  # (..., B, C), (..., 1)
    terms = (W * -logp).sum(-1)  # (..., B)
    return reduce_terms(terms, W.sum(-1), k, normalization, reduction, validate)
