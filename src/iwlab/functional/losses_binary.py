"""Importance-weighted binary cross-entropy, one logit per example (re-exported by :mod:`iwlab.functional.losses`).

Semantics of the weights, normalizations, precision and ``validate`` are those of
:mod:`iwlab.functional.losses` (see its docstring).

Example:
    >>> weighted_binary_cross_entropy(torch.zeros(2), torch.tensor([0, 1]), reduction="none")
    tensor([0.6931, 0.6931])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._scaling import reduce_weighted, scaled_weights
from iwlab.functional._validation import (
    Normalization,
    Reduction,
    check_loss_args,
    check_not_empty_mean,
    check_trailing,
    fmt_value,
    prepare_weight,
    shape_of,
)
from iwlab.functional.checks import fmt_index

__all__ = ["prepare_binary_args", "weighted_binary_cross_entropy"]


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
    dtype, cw, sw = prepare_binary_args(logits, target, class_weight, sample_weight, normalization, reduction, validate)
    positive = (target == 1).expand(logits.shape)  # (..., B)
    z = logits.to(dtype)  # half logits run in float32
    # softplus(-z) = -log sigmoid(z) and softplus(z) = -log sigmoid(-z). logsigmoid is stable
    # for any |z| in every dtype (F.softplus switches to the identity above a threshold, which
    # is slightly inexact) and has the exact gradient, also at z = 0.
    loss = -F.logsigmoid(torch.where(positive, z, -z))  # (..., B)
    weight = scaled_weights(positive.long(), cw, sw, logits.shape)
    return reduce_weighted(loss, weight, normalization, reduction, validate)


def prepare_binary_args(
    logits: Tensor,
    target: Tensor,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    normalization: Normalization,
    reduction: Reduction,
    validate: bool,
) -> tuple[torch.dtype, Tensor | None, Tensor | None]:
    """The checks every one-logit loss runs, and its weights in the compute dtype: ``(dtype, cw, sw)``.

    Shared by :func:`weighted_binary_cross_entropy` and :func:`~iwlab.functional.losses_focal.binary_focal_loss`.

    Raises:
        TypeError, ValueError: as :func:`weighted_binary_cross_entropy`.
    """
    dtype = check_loss_args(logits, target, normalization, reduction, class_weight, sample_weight)
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
    return dtype, cw, sw
