"""The focal-loss modules (Lin et al. 2017): thin wrappers around :mod:`iwlab.functional.losses_focal`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from iwlab.functional.losses import Normalization, Reduction
from iwlab.functional.losses_focal import binary_focal_loss, check_gamma, focal_loss
from iwlab.losses.weighted import _WeightedLoss

__all__ = ["BinaryFocalLoss", "FocalLoss"]


class _FocalBase(_WeightedLoss):
    """The focal losses' hyperparameters: ``gamma`` on top of :class:`_WeightedLoss`'s."""

    def __init__(
        self,
        gamma: float,
        class_weight: Tensor | Sequence[float] | None,
        normalization: Normalization,
        reduction: Reduction,
        validate: bool,
    ) -> None:
        super().__init__(class_weight, normalization, reduction, validate)
        self.gamma = check_gamma(gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, {super().extra_repr()}"

    # the functional loss a subclass calls: focal_loss or binary_focal_loss
    _function: staticmethod

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The loss of ``logits`` against ``target`` (shapes in the class docstring), ``sample_weight`` ``(..., B)``.

        Returns ``(..., B)`` for ``reduction="none"``, else ``(...)``; float32 for half logits.
        """
        return self._function(
            logits,
            target,
            gamma=self.gamma,
            class_weight=self._class_weight_for(logits),
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )


class FocalLoss(_FocalBase):
    """Module form of :func:`~iwlab.functional.losses_focal.focal_loss`: ``-(1 - p_t)^gamma log p_t``, weighted.

    Args:
        gamma: the focusing parameter, a finite real ``>= 0``; 0 is :class:`WeightedCrossEntropyLoss`.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights (Lin et al.'s ``alpha_t``), or None; kept
            as a buffer (a tensor in its dtype, a sequence in the default dtype).
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"`` (PyTorch's mean).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync).

    Raises:
        TypeError: ``gamma`` not a real number; ``class_weight`` bool or complex.
        ValueError: ``gamma`` NaN, infinite or negative; otherwise as :class:`WeightedCrossEntropyLoss`.
            Calls raise as :func:`~iwlab.functional.losses_focal.focal_loss` does.

    Source:
        Lin et al. (2017), "Focal Loss for Dense Object Detection", ICCV, Sec. 3.2, eq. (4) and (5).

    Example:
        >>> import torch
        >>> loss_fn = FocalLoss(gamma=2.0, class_weight=[1.0, 0.25])
        >>> loss_fn(torch.zeros(2, 2), torch.tensor([1, 1]))  # 0.25 * (1 - 0.5)**2 * log 2
        tensor(0.0433)
        >>> loss_fn
        FocalLoss(gamma=2, class_weight_shape=(2,), normalization='batch_size', reduction='mean')
    """

    _function = staticmethod(focal_loss)

    def __init__(
        self,
        gamma: float = 2.0,
        class_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(gamma, class_weight, normalization, reduction, validate)


class BinaryFocalLoss(_FocalBase):
    """Module form of :func:`~iwlab.functional.losses_focal.binary_focal_loss`: one logit per example, ``(..., B)``.

    Logits of shape ``(B, 1)`` are refused, as by :class:`WeightedBCEWithLogitsLoss`: squeeze the last axis.

    Args:
        gamma: the focusing parameter, a finite real ``>= 0``; 0 is :class:`WeightedBCEWithLogitsLoss`.
        class_weight: ``(2,)`` or ``(..., 2)`` weights of class 0 and 1 (Lin et al.'s ``alpha`` is
            ``[1 - alpha, alpha]``), or None; a buffer, as in :class:`FocalLoss`.
        normalization, reduction, validate: as :class:`FocalLoss`.

    Raises:
        ValueError: as :class:`FocalLoss`, and ``class_weight`` without a last axis of size 2. Calls raise
            as :func:`~iwlab.functional.losses_focal.binary_focal_loss` does.

    Source:
        Lin et al. (2017), "Focal Loss for Dense Object Detection", ICCV, Sec. 3.2, eq. (4) and (5).

    Example:
        >>> import torch
        >>> BinaryFocalLoss(gamma=2.0, reduction="none")(torch.zeros(2), torch.tensor([0, 1]))
        tensor([0.1733, 0.1733])
    """

    _function = staticmethod(binary_focal_loss)

    def __init__(
        self,
        gamma: float = 2.0,
        class_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(gamma, class_weight, normalization, reduction, validate)
        if self.class_weight is not None and self.class_weight.shape[-1] != 2:
            raise ValueError(
                "class_weight of a binary loss must have shape (2,) or (..., 2); got shape "
                f"{tuple(self.class_weight.shape)}"
            )
