"""Importance-weighted classification losses as pure tensor functions.

Each example ``i`` of a batch of size ``B`` gets a weight ``w_i = class_weight[y_i] *
sample_weight_i`` (either factor may be omitted) and a per-example loss ``l_i``. The ``"mean"``
reduction has two normalizations:

``normalization="batch_size"`` (the default)
    ``(1/B) * sum_i w_i l_i``. This is the importance-weighted ERM (IW-ERM) estimator studied by
    Byrd & Lipton (2019, Sec. 1.1 and 3): an unbiased estimate of the risk under the target
    distribution when ``w`` are density ratios. With ``sample_weight_i = 1 / (N p_i)`` for
    examples drawn with probabilities ``p_i`` it is the unbiased importance-sampling gradient of
    Katharopoulos & Fleuret (2017, eq. 4). Scaling every weight by ``c`` scales the loss (and the gradients) by ``c``.
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
the weights are rescaled by powers of two (which is exact; see :mod:`iwlab.functional._scaling`)
before they are multiplied and summed,
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
``inf``. The same goes for probability targets (finite, >= 0, rows summing to 1) and multi-label
targets (in ``[0, 1]``): unchecked, they enter the formula as given.

Parity with torch (``F.cross_entropy`` / ``nn.CrossEntropyLoss``, ``F.binary_cross_entropy_with_logits``):

- Equal: the unweighted loss, any reduction; ``"weight_sum"`` with class weights (torch's weighted
  mean); ``ignore_index`` (its targets give 0 loss and 0 weight; ``"batch_size"`` divides by the
  non-ignored count, so unit weights give torch's mean); ``label_smoothing`` without class weights,
  or with constant ones under ``"weight_sum"``; probability targets, with or without class weights,
  under ``"batch_size"`` (torch divides by ``B`` there even with weights); ``class_dim=1``, torch's
  ``(N, C, d1, ..., dk)`` layout; :func:`weighted_multilabel_binary_cross_entropy` with
  ``pos_weight`` and soft targets. Gradients agree wherever the values do.
- Differ, by design: (1) ``"batch_size"`` is the default (the IW-ERM estimator; see above).
  (2) With ``label_smoothing=eps`` and class weights ``c``, here ``w_i = c[y_i] s_i`` multiplies the
  whole smoothed loss, ``w_i [(1 - eps) (-log p_{i,y_i}) + (eps / C) sum_c (-log p_ic)]``, so the
  importance weight of an example does not depend on how the smoothing spreads its mass; torch
  weights each smoothing term by its own class, ``(1 - eps) c[y_i] (-log p_{i,y_i}) + (eps / C)
  sum_c c[c] (-log p_ic)``, and divides by ``sum_i c[y_i]``. They coincide when ``c`` is constant.
  (3) A model whose targets are all ignored gives 0 with zero gradients under ``"batch_size"``
  (torch: NaN) and the zero-weight-sum error under ``"weight_sum"`` (``validate=True``).
  (4) ``ignore_index`` defaults to None, not ``-100``: a label -100 is an error unless asked for.
  (5) Leading axes are stacked models (``class_dim=-1``, the default): ``(M, B, C)`` is ``M`` models,
  not torch's ``(N, C, d)``; ``class_dim=1`` is torch's layout, for one model. The two are kept apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from iwlab.functional._scaling import check_overflow, gather_class_weight

# Kept for iwlab.implicit_bias, which imports the exact x * 2**k from here; remove once it
# imports iwlab.functional._scaling.mul_pow2.
from iwlab.functional._scaling import mul_pow2 as _mul_pow2  # noqa: F401
from iwlab.functional._validation import (
    HALF_DTYPES,
    NORMALIZATIONS,
    REDUCTIONS,
    Normalization,
    Reduction,
    as_index,
    check_class_dim,
    check_device,
    check_ignore_index,
    check_label_smoothing,
    check_labels,
    check_not_empty_mean,
    check_probabilities,
    check_tensor,
    check_weight_args,
    compute_dtype,
    prepare_weight,
    shape_of,
)
from iwlab.functional.checks import check_choice, check_weights
from iwlab.functional.losses_binary import weighted_binary_cross_entropy
from iwlab.functional.losses_ce import check_channels_first, check_shapes, cross_entropy, to_stacked
from iwlab.functional.losses_multilabel import weighted_multilabel_binary_cross_entropy

__all__ = [
    "HALF_DTYPES",
    "NORMALIZATIONS",
    "REDUCTIONS",
    "Normalization",
    "Reduction",
    "check_weights",
    "class_to_sample_weight",
    "weighted_binary_cross_entropy",
    "weighted_cross_entropy",
    "weighted_multilabel_binary_cross_entropy",
]


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

    Source:
        Byrd & Lipton (2019, Sec. 3): class-conditioned importance weights for label shift, one
        weight per class applied to every example of that class.

    Example:
        >>> class_to_sample_weight(torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.25]))
        tensor([1.0000, 0.2500, 0.2500])
    """
    check_tensor(target, "target")
    check_tensor(class_weight, "class_weight")
    if target.dim() < 1 or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of shape (..., B); got dtype {target.dtype} and shape {shape_of(target)}"
        )
    if class_weight.dim() < 1:
        raise ValueError(f"class_weight must have shape (..., C); got shape {shape_of(class_weight)}")
    if class_weight.device != target.device:
        raise ValueError(
            f"class_weight is on {class_weight.device} but target is on {target.device}; "
            "move it with .to(target.device)"
        )
    try:
        torch.broadcast_shapes(target.shape[:-1], class_weight.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"leading dims of target {shape_of(target)} and class_weight {shape_of(class_weight)} do not broadcast"
        ) from None
    check_labels(target, class_weight.shape[-1], "class_weight has")
    check_weights(class_weight, name="class_weight", allow_zero_sum=True)  # NaN or negative weights: an error
    return gather_class_weight(as_index(target), class_weight)


def weighted_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    class_dim: int = -1,
) -> Tensor:
    """Importance-weighted multiclass cross-entropy on logits.

    ``l_i = -log softmax(logits_i)[y_i]`` and ``w_i = class_weight[y_i] * sample_weight_i``; see
    the module docstring for the normalizations (Byrd & Lipton 2019 for ``"batch_size"``), the
    precision rules, what ``validate=False`` skips and where this agrees with ``F.cross_entropy``.

    - ``label_smoothing=eps``: ``l_i = (1 - eps) (-log p_{i,y_i}) + (eps / C) sum_c (-log p_ic)``, and
      ``w_i`` multiplies the whole ``l_i`` (class weights do not distort the smoothing).
    - ``ignore_index``: targets equal to it have ``l_i = 0`` and ``w_i = 0``; ``"batch_size"`` divides by
      the number ``n`` of other targets of each model (a fully ignored model gives 0, zero gradients);
      ``"weight_sum"`` divides by their total weight (a fully ignored model: the zero-weight-sum error).
    - Probability targets (a floating ``target`` shaped like ``logits``):
      ``l_i = -sum_c t'_ic log p_ic`` with ``t' = (1 - eps) t + eps / C``. With class weights each class's
      term is weighted, ``s_i sum_c class_weight[c] t'_ic (-log p_ic)``, and the example's weight for
      ``"weight_sum"`` is ``s_i sum_c class_weight[c] t'_ic``.
    - ``class_dim=1``: torch's layout, one model; every position ``(n, d1, ..., dk)`` is an example.

    Args:
        logits: ``(..., B, C)`` float16, bfloat16, float32 or float64, ``C >= 2``; leading dims
            are independent models. With ``class_dim=1``: ``(N, C, d1, ..., dk)``, one model.
        target: ``(..., B)`` labels in ``[0, C)`` of any integer dtype (int8..int64,
            uint8..uint64; not bool); leading dims broadcast to logits'. Or class probabilities: a
            floating ``(..., B, C)`` tensor (with ``validate``: finite, ``>= 0``, each row summing to 1
            within ``max(sqrt(eps), C eps)`` of its dtype, ``2 eps`` for float16/bfloat16). With
            ``class_dim=1``: ``(N, d1, ..., dk)`` labels, or probabilities of the logits' shape.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights (any real dtype, not bool), or None;
            ``(C,)`` with ``class_dim=1``.
        sample_weight: ``(..., B)`` per-example weights (any real dtype, not bool), or None. With
            ``class_dim=1``: ``(N,)`` (shared by a sample's positions) or ``(N, d1, ..., dk)``.
        normalization: for ``reduction="mean"``: ``"batch_size"`` divides ``sum_i w_i l_i`` by
            ``B`` (IW-ERM, default); ``"weight_sum"`` divides by ``sum_i w_i`` (as PyTorch does).
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i`` (``(N, d1, ..., dk)`` with ``class_dim=1``;
            0 at ignored targets); ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (forces a device sync). Types, devices and shapes
            are always checked.
        ignore_index: a label (any int64 value, also outside ``[0, C)``, e.g. torch's ``-100``) whose
            targets are ignored, or None. Class-index targets only.
        label_smoothing: ``eps`` in ``[0, 1]``.
        class_dim: ``-1`` (stacked models, the default) or ``1`` (torch's layout, one model).

    Returns:
        The loss, in the dtype of ``logits`` for float32/float64 logits and in float32 for
        float16/bfloat16 logits. Weights are cast to that dtype. Natural-log units (nats).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong kind of dtype (complex; bool
            weights); ``ignore_index`` not an int, ``label_smoothing`` not a real, ``class_dim`` not an int.
        ValueError: bad ``normalization`` / ``reduction``; ``label_smoothing`` outside ``[0, 1]``;
            ``class_dim`` not -1 or 1; ``ignore_index`` with probability targets; logits not
            float16/bfloat16/float32/float64; ``target`` bool, or floating but not shaped like the logits;
            shapes that do not match (including ``C < 2``: one logit per example is
            :func:`weighted_binary_cross_entropy`'s job); an argument on another device than
            ``logits``; an empty batch with ``reduction="mean"``. With ``validate=True`` also: a
            label outside ``[0, C)`` (other than ``ignore_index``); a probability target that is not
            finite, negative or whose row does not sum to 1; a NaN, infinite or negative weight; a
            weight the compute dtype cannot represent; a zero total weight under ``"weight_sum"``
            (also a model whose targets are all ignored); a result that overflows the compute dtype.

    Source:
        Byrd & Lipton (2019), IW-ERM (Sec. 1.1 and 3; the paper's weighted cross-entropy); with
        ``sample_weight = 1 / (N p_i)``, the unbiased importance-sampling loss of Katharopoulos &
        Fleuret (2017, eq. 4). Label smoothing: Szegedy et al. (2016, Sec. 7); ``ignore_index``,
        probability targets and ``class_dim=1``: ``torch.nn.CrossEntropyLoss``'s documentation.

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
        >>> weighted_cross_entropy(logits, torch.tensor([1, -100]), ignore_index=-100, reduction="none")
        tensor([0.6931, 0.0000])
        >>> weighted_cross_entropy(logits, torch.tensor([[0.5, 0.5], [1.0, 0.0]]))  # probability targets
        tensor(0.6931)
    """
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(reduction, "reduction", REDUCTIONS)
    ignore_index = check_ignore_index(ignore_index)
    label_smoothing = check_label_smoothing(label_smoothing)
    class_dim = check_class_dim(class_dim)
    dtype = compute_dtype(logits)
    check_tensor(target, "target")
    if target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of class indices; got {target.dtype}; convert bool labels with "
            "target.long()"
        )
    soft = target.is_floating_point()  # class probabilities
    if soft and ignore_index is not None:
        raise ValueError(
            "ignore_index applies to class-index targets only, but target is floating (class probabilities); "
            "give ignored examples sample_weight 0 instead"
        )
    check_device(target, "target", logits)
    check_weight_args(logits, class_weight, sample_weight)
    channels_first = class_dim == 1
    check = check_channels_first if channels_first else check_shapes
    B = check(logits, target, class_weight, sample_weight, soft)
    check_not_empty_mean(B, reduction)
    C = logits.shape[class_dim]
    if validate:
        # On the caller's layout, so that errors name the caller's indices.
        if soft:
            check_probabilities(target, class_dim)
        else:
            check_labels(target, C, "logits has", ignore_index)
    cw = prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)
    z = logits
    if channels_first:
        z, target, sw = to_stacked(logits, target, sw, soft)  # (B, C), (B,) or (B, C), (B,)
    loss = cross_entropy(
        z,
        target,
        cw,
        sw,
        dtype=dtype,
        soft=soft,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        normalization=normalization,
        reduction=reduction,
        validate=validate,
    )
    if channels_first and reduction == "none":
        loss = loss.reshape(logits.shape[0], *logits.shape[2:])  # (N, d1, ..., dk)
    if validate:
        # -log p of finite logits can overflow (z = [1e308, -1e308]: 2e308): the error, not inf.
        def finite() -> Tensor:  # (..., B) or (N, d1, ..., dk); (...) once reduced
            ok = torch.isfinite(logits).all(class_dim)
            if reduction == "none":
                return ok
            return ok.all(-1) if class_dim == -1 else ok.all()

        check_overflow(loss, finite)
    return loss
