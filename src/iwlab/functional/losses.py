"""Importance-weighted classification losses as pure tensor functions.

Each example ``i`` of a batch of size ``B`` gets a weight ``w_i = class_weight[y_i] *
sample_weight_i`` (either factor may be omitted) and a per-example loss ``l_i``. The ``"mean"``
reduction has two normalizations:

``normalization="batch_size"`` (the default)
    ``(1/B) * sum_i w_i l_i``. This is the importance-weighted ERM estimator studied by Byrd &
    Lipton (2019): an unbiased estimate of the risk under the target distribution when ``w`` are
    density ratios. Scaling every weight by ``c`` scales the loss (and the gradients) by ``c``.

``normalization="weight_sum"``
    ``sum_i w_i l_i / sum_i w_i`` (self-normalized). This is what
    ``torch.nn.functional.cross_entropy(weight=..., reduction="mean")`` computes. It is invariant
    to a common rescaling of the weights.

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

Validation: shape and dtype checks are always done (they are free). The data-dependent checks
(label range, weights finite and non-negative, non-zero weight sum) read values back from the
tensor, which forces a device synchronisation; pass ``validate=False`` to skip them in hot loops.
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


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


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
        raise ValueError(f"{name} has shape {_shape(t)} but {ref}; expected shape {expected}")


def _gather_class_weight(target: Tensor, class_weight: Tensor) -> Tensor:
    """``class_weight[..., target]`` with the leading dims of both broadcast together."""
    lead = torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    cw = class_weight.expand(*lead, class_weight.shape[-1])
    idx = target.expand(*lead, target.shape[-1])
    return torch.gather(cw, -1, idx)


def _check_labels(target: Tensor, n_classes: int, source: str) -> None:
    bad = (target < 0) | (target >= n_classes)
    if bool(bad.any()):
        label = int(target[bad][0])
        raise ValueError(
            f"target contains label {label}{_fmt_index(bad)} but {source} C={n_classes} "
            f"classes; labels must be in [0, {n_classes})"
        )


def _combine_weights(
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    dtype: torch.dtype,
) -> Tensor | None:
    """Per-example weights ``class_weight[y_i] * sample_weight_i`` (None if both are None)."""
    w = None
    if class_weight is not None:
        w = _gather_class_weight(target, class_weight).to(dtype)
    if sample_weight is not None:
        sw = sample_weight.to(dtype)
        w = sw if w is None else w * sw
    return w


def _reduce(
    loss: Tensor,
    weight: Tensor | None,
    normalization: str,
    reduction: str,
    validate: bool,
) -> Tensor:
    """Apply weights to per-example ``loss`` (..., B) and reduce over the batch axis."""
    if weight is not None:
        weight = weight.expand_as(loss)
        wloss = weight * loss
    else:
        wloss = loss
    if reduction == "none":
        return wloss
    if reduction == "sum":
        return wloss.sum(-1)
    if normalization == "batch_size" or weight is None:
        # (1/B) sum_i w_i l_i -- the IW-ERM estimator; unit weights give the plain mean.
        return wloss.mean(-1)
    total = weight.sum(-1)
    if validate:
        zero = total == 0
        if bool(zero.any()):
            raise ValueError(
                "normalization='weight_sum' is undefined: the batch has zero total weight "
                f"(sum of weights over the batch axis is 0{_fmt_index(zero)}); use "
                "normalization='batch_size' or make sure every batch has a positive weight"
            )
    return wloss.sum(-1) / total


def _check_common(
    logits: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    normalization: str,
    reduction: str,
    validate: bool,
) -> None:
    _check_choice(normalization, "normalization", NORMALIZATIONS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor; got {got}")
    if validate:
        if class_weight is not None:
            check_weights(class_weight, name="class_weight")
        if sample_weight is not None:
            check_weights(sample_weight, name="sample_weight")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def check_weights(weight: Tensor, *, name: str = "weight") -> None:
    """Raise ``ValueError`` unless ``weight`` is a valid tensor of importance weights.

    Valid means every entry is finite and ``>= 0`` and at least one entry is positive. The
    message is one line and names the first offending entry.

    Args:
        weight: tensor of any shape (integer or floating point).
        name: how the tensor is called in the error message.

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
    neg = w < 0
    if bool(neg.any()):
        value = float(w[neg][0])
        where = _fmt_index(neg).removeprefix(" ")
        raise ValueError(f"{name} has a negative entry ({value:g} {where}); importance weights must be >= 0")
    if not bool((w != 0).any()):
        raise ValueError(f"{name} is all zeros (shape {_shape(w)}); at least one importance weight must be positive")


def class_to_sample_weight(target: Tensor, class_weight: Tensor) -> Tensor:
    """Per-example weights from per-class weights: ``w_i = class_weight[..., target_i]``.

    Args:
        target: integer labels of shape ``(..., B)`` with values in ``[0, C)``.
        class_weight: shape ``(C,)`` or ``(..., C)``; leading dims broadcast with ``target``'s.

    Returns:
        Tensor of shape ``(..., B)`` (the broadcast leading dims), dtype of ``class_weight``.

    Raises:
        ValueError: if a label is outside ``[0, C)`` or the leading dims do not broadcast.

    Example:
        >>> class_to_sample_weight(torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.25]))
        tensor([1.0000, 0.2500, 0.2500])
    """
    if target.dim() < 1 or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of shape (..., B); got dtype {target.dtype} and shape {_shape(target)}"
        )
    if class_weight.dim() < 1:
        raise ValueError(f"class_weight must have shape (..., C); got shape {_shape(class_weight)}")
    try:
        torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"leading dims of target {_shape(target)} and class_weight {_shape(class_weight)} do not broadcast"
        ) from None
    _check_labels(target, class_weight.shape[-1], "class_weight has")
    return _gather_class_weight(target, class_weight)


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

    ``l_i = -log softmax(logits_i)[y_i]`` and ``w_i = class_weight[y_i] * sample_weight_i``.

    Args:
        logits: ``(..., B, C)`` floating point; leading dims are independent models.
        target: ``(..., B)`` integer labels in ``[0, C)``; leading dims broadcast to logits'.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: for ``reduction="mean"``: ``"batch_size"`` divides ``sum_i w_i l_i`` by
            ``B`` (IW-ERM, default); ``"weight_sum"`` divides by ``sum_i w_i`` (as PyTorch does).
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: check labels and weights (forces a device sync). Shapes are always checked.

    Returns:
        The loss, in the dtype of ``logits``. Weights are cast to that dtype.

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
    _check_common(logits, class_weight, sample_weight, normalization, reduction, validate)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., B, C); got shape {_shape(logits)}")
    *_, B, C = logits.shape
    batch = logits.shape[:-1]
    lead = logits.shape[:-2]
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer tensor of class indices; got {target.dtype}")
    ref = f"logits has shape {_shape(logits)}"
    _check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        _check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        _check_trailing(class_weight, "class_weight", C, lead, f"{ref} (C={C} classes)")
    if validate:
        _check_labels(target, C, "logits has")

    target = target.expand(batch)
    # log_softmax + gather instead of softmax + log: stable for large logits and gives exact
    # gradients (softmax - onehot) without under/overflow.
    logp = F.log_softmax(logits, dim=-1)
    loss = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    weight = _combine_weights(target, class_weight, sample_weight, logits.dtype)
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
    ``w_i = class_weight[y_i] * sample_weight_i``. Semantics of ``normalization`` and
    ``reduction`` are those of :func:`weighted_cross_entropy`.

    Args:
        logits: ``(..., B)`` floating point; leading dims are independent models.
        target: ``(..., B)`` labels in ``{0, 1}`` (integer, bool or float tensor).
        class_weight: ``(2,)`` or ``(..., 2)``: weights of class 0 and class 1, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: check labels and weights (forces a device sync). Shapes are always checked.
            With ``validate=False`` any label other than 1 is treated as 0.

    Returns:
        The loss, in the dtype of ``logits``.

    Example:
        >>> z = torch.tensor([0.0, 0.0, 0.0, 0.0])
        >>> y = torch.tensor([1, 1, 1, 0])
        >>> weighted_binary_cross_entropy(z, y, class_weight=torch.tensor([1.0, 0.5]))
        tensor(0.4332)
    """
    _check_common(logits, class_weight, sample_weight, normalization, reduction, validate)
    if logits.dim() < 1:
        raise ValueError("logits must have shape (..., B); got a 0-d tensor")
    B = logits.shape[-1]
    lead = logits.shape[:-1]
    ref = f"logits has shape {_shape(logits)}"
    _check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        _check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        _check_trailing(class_weight, "class_weight", 2, lead, "a binary loss has 2 classes")
    if validate:
        bad = (target != 0) & (target != 1)
        if bool(bad.any()):
            label = target[bad][0].item()
            raise ValueError(f"target contains label {label:g}{_fmt_index(bad)}; binary labels must be 0 or 1")

    positive = (target == 1).expand(logits.shape)
    # softplus(-z) = -log sigmoid(z) and softplus(z) = -log sigmoid(-z). logsigmoid is stable
    # for any |z| in every dtype (F.softplus switches to the identity above a threshold, which
    # is slightly inexact) and has the exact gradient, also at z = 0.
    loss = -F.logsigmoid(torch.where(positive, logits, -logits))
    weight = _combine_weights(positive.long(), class_weight, sample_weight, logits.dtype)
    return _reduce(loss, weight, normalization, reduction, validate)
