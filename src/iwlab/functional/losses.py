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
``inf``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._scaling import gather_class_weight, reduce_weighted, scaled_weights

# Kept for iwlab.implicit_bias, which imports the exact x * 2**k from here; remove once it
# imports iwlab.functional._scaling.mul_pow2.
from iwlab.functional._scaling import mul_pow2 as _mul_pow2  # noqa: F401
from iwlab.functional._validation import (
    as_index,
    check_device,
    check_labels,
    check_not_empty_mean,
    check_tensor,
    check_trailing,
    check_weight_args,
    fmt_value,
    prepare_weight,
    shape_of,
)
from iwlab.functional.checks import check_choice, check_weights, fmt_index

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
]

Normalization = Literal["batch_size", "weight_sum"]
Reduction = Literal["none", "sum", "mean"]

NORMALIZATIONS: tuple[str, ...] = ("batch_size", "weight_sum")
REDUCTIONS: tuple[str, ...] = ("none", "sum", "mean")

#: Logit dtypes that are upcast to float32 for the computation (and the returned loss).
HALF_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)


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

    Source:
        Byrd & Lipton (2019), IW-ERM (Sec. 1.1 and 3; the paper's weighted cross-entropy); with
        ``sample_weight = 1 / (N p_i)``, the unbiased importance-sampling loss of Katharopoulos &
        Fleuret (2017, eq. 4).

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
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(reduction, "reduction", REDUCTIONS)
    dtype = _compute_dtype(logits)
    check_tensor(target, "target")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must be an integer tensor of class indices; got {target.dtype}"
            + ("; convert bool labels with target.long()" if target.dtype == torch.bool else "")
        )
    check_device(target, "target", logits)
    check_weight_args(logits, class_weight, sample_weight)
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape (..., B, C); got shape {shape_of(logits)} (for one logit per example "
            "use weighted_binary_cross_entropy)"
        )
    *_, B, C = logits.shape
    batch = logits.shape[:-1]
    lead = logits.shape[:-2]
    if C < 2:
        raise ValueError(
            f"logits has shape {shape_of(logits)}, i.e. C={C} classes, but cross-entropy needs C >= 2 "
            "(with C=1 it is identically 0); for one logit per example use "
            "weighted_binary_cross_entropy(logits.squeeze(-1), target)"
        )
    ref = f"logits has shape {shape_of(logits)}"
    check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        check_trailing(class_weight, "class_weight", C, lead, f"{ref} (C={C} classes)")
    check_not_empty_mean(B, reduction)
    if validate:
        check_labels(target, C, "logits has")
    cw = prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)

    index = as_index(target).expand(batch)  # (..., B) int64
    # log_softmax + gather instead of softmax + log: stable for large logits and gives exact
    # gradients (softmax - onehot) without under/overflow. Half logits run in float32.
    logp = F.log_softmax(logits.to(dtype), dim=-1)  # (..., B, C)
    loss = -logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (..., B)
    weight = scaled_weights(index, cw, sw, batch)
    return reduce_weighted(loss, weight, normalization, reduction, validate)


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

    Source:
        Byrd & Lipton (2019, Sec. 3): the binary class-weighted loss of their 2-D synthetic and
        CIFAR-10 cat-vs-dog experiments.

    Example:
        >>> z = torch.tensor([0.0, 0.0, 0.0, 0.0])
        >>> y = torch.tensor([1, 1, 1, 0])
        >>> weighted_binary_cross_entropy(z, y, class_weight=torch.tensor([1.0, 0.5]))
        tensor(0.4332)
    """
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(reduction, "reduction", REDUCTIONS)
    dtype = _compute_dtype(logits)
    check_tensor(target, "target")
    check_device(target, "target", logits)
    check_weight_args(logits, class_weight, sample_weight)
    if logits.dim() < 1:
        raise ValueError("logits must have shape (..., B); got a 0-d tensor")
    if logits.dim() >= 2 and logits.shape[-1] == 1:
        models = logits.shape[0] if logits.dim() == 2 else tuple(logits.shape[:-1])
        raise ValueError(
            f"logits has shape {shape_of(logits)}, but the binary loss reads (..., B) as M stacked models of B "
            f"examples each, so shape {shape_of(logits)} would be {models} models of one example; for one model "
            "pass logits.squeeze(-1) (and target.squeeze(-1))"
        )
    B = logits.shape[-1]
    lead = logits.shape[:-1]
    ref = f"logits has shape {shape_of(logits)}"
    check_trailing(target, "target", B, lead, f"{ref} (batch size B={B})")
    if sample_weight is not None:
        check_trailing(sample_weight, "sample_weight", B, lead, f"{ref} (batch size B={B})")
    if class_weight is not None:
        check_trailing(class_weight, "class_weight", 2, lead, "a binary loss has 2 classes")
    check_not_empty_mean(B, reduction)
    if validate:
        # != works for every real dtype (uint16..uint64 have no < on CPU); NaN is caught too.
        bad = (target != 0) & (target != 1)
        if bool(bad.any()):
            label = fmt_value(target[bad][0].item())
            raise ValueError(
                f"target contains label {label}{fmt_index(bad)}; binary labels must be 0 or 1 "
                "(soft labels are not supported)"
            )
    cw = prepare_weight(class_weight, "class_weight", dtype, logits.dtype, validate)
    sw = prepare_weight(sample_weight, "sample_weight", dtype, logits.dtype, validate)

    positive = (target == 1).expand(logits.shape)  # (..., B)
    z = logits.to(dtype)  # half logits run in float32
    # softplus(-z) = -log sigmoid(z) and softplus(z) = -log sigmoid(-z). logsigmoid is stable
    # for any |z| in every dtype (F.softplus switches to the identity above a threshold, which
    # is slightly inexact) and has the exact gradient, also at z = 0.
    loss = -F.logsigmoid(torch.where(positive, z, -z))  # (..., B)
    weight = scaled_weights(positive.long(), cw, sw, logits.shape)
    return reduce_weighted(loss, weight, normalization, reduction, validate)
