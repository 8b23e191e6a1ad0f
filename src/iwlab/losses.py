"""``nn.Module`` wrappers around :mod:`iwlab.functional.losses`.

The modules only hold hyperparameters (``class_weight`` as a buffer, so it follows ``.to()`` and
is saved in ``state_dict``; ``normalization``; ``reduction``) and call the functional versions.
See :mod:`iwlab.functional.losses` for the semantics, in particular why the default
``normalization="batch_size"`` differs from PyTorch's weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from iwlab.functional.losses import (
    NORMALIZATIONS,
    REDUCTIONS,
    Normalization,
    Reduction,
    _check_choice,
    check_weights,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)


def _as_class_weight(class_weight: Tensor | Sequence[float] | None) -> Tensor | None:
    if class_weight is None:
        return None
    if not isinstance(class_weight, Tensor):
        class_weight = torch.as_tensor(class_weight, dtype=torch.get_default_dtype())
    if class_weight.dim() < 1:
        raise ValueError(f"class_weight must have shape (C,) or (..., C); got shape {tuple(class_weight.shape)}")
    check_weights(class_weight, name="class_weight")
    return class_weight


class _WeightedLoss(nn.Module):
    class_weight: Tensor | None

    def __init__(
        self,
        class_weight: Tensor | Sequence[float] | None,
        normalization: Normalization,
        reduction: Reduction,
        validate: bool,
    ) -> None:
        super().__init__()
        _check_choice(normalization, "normalization", NORMALIZATIONS)
        _check_choice(reduction, "reduction", REDUCTIONS)
        self.register_buffer("class_weight", _as_class_weight(class_weight))
        self.normalization = normalization
        self.reduction = reduction
        self.validate = validate

    def extra_repr(self) -> str:
        cw = None if self.class_weight is None else tuple(self.class_weight.shape)
        return f"class_weight_shape={cw}, normalization={self.normalization!r}, reduction={self.reduction!r}"


class WeightedCrossEntropyLoss(_WeightedLoss):
    """Module form of :func:`~iwlab.functional.losses.weighted_cross_entropy`.

    Args:
        class_weight: ``(C,)`` or ``(..., C)`` per-class importance weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"`` (PyTorch's mean).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync).

    Example:
        >>> loss_fn = WeightedCrossEntropyLoss(class_weight=torch.tensor([1.0, 0.25]))
        >>> loss_fn(torch.zeros(2, 2), torch.tensor([1, 1]))  # 0.25 * log 2
        tensor(0.1733)
    """

    def __init__(
        self,
        class_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(class_weight, normalization, reduction, validate)

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Loss of ``logits`` ``(..., B, C)`` against labels ``(..., B)``."""
        return weighted_cross_entropy(
            logits,
            target,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )


class WeightedBCEWithLogitsLoss(_WeightedLoss):
    """Module form of :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.

    Args:
        class_weight: ``(2,)`` or ``(..., 2)`` weights of class 0 and class 1, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync).

    Example:
        >>> loss_fn = WeightedBCEWithLogitsLoss(class_weight=[1.0, 0.5], reduction="none")
        >>> loss_fn(torch.zeros(3), torch.tensor([0, 1, 1]))
        tensor([0.6931, 0.3466, 0.3466])
    """

    def __init__(
        self,
        class_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(class_weight, normalization, reduction, validate)
        if self.class_weight is not None and self.class_weight.shape[-1] != 2:
            raise ValueError(
                "class_weight of a binary loss must have shape (2,) or (..., 2); got shape "
                f"{tuple(self.class_weight.shape)}"
            )

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Loss of one logit per example ``(..., B)`` against labels in {0, 1} ``(..., B)``."""
        return weighted_binary_cross_entropy(
            logits,
            target,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )
