"""``nn.Module`` wrappers around :mod:`iwlab.functional.losses`.

The modules only hold hyperparameters (``class_weight`` as a buffer, so it follows ``.to()`` and
is saved in ``state_dict``; ``normalization``; ``reduction``) and call the functional versions.
See :mod:`iwlab.functional.losses` for the semantics, in particular why the default
``normalization="batch_size"`` differs from PyTorch's weighted mean, the precision rules
(float16/bfloat16 logits give a float32 loss) and what ``validate=False`` skips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from iwlab.functional.checks import check_choice, check_weights, fmt_index
from iwlab.functional.losses import (
    NORMALIZATIONS,
    REDUCTIONS,
    Normalization,
    Reduction,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
)


def _as_class_weight(class_weight: Tensor | Sequence[float] | None) -> Tensor | None:
    """The buffer: a tensor as given, a sequence in the default dtype (checked to be representable)."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, Tensor):
        # Read the numbers exactly first: converting 1e300 straight to float32 would give inf and
        # an error about an "infinite entry" the caller never wrote.
        try:
            exact = torch.as_tensor(class_weight, dtype=torch.float64)
        except (OverflowError, TypeError, ValueError, RuntimeError) as e:  # 10**400, strings, ragged lists
            raise ValueError(f"class_weight must be a sequence of numbers; {e}") from None
        check_weights(exact, name="class_weight", allow_zero_sum=True)
        dtype = torch.get_default_dtype()
        class_weight = exact.to(dtype)
        lost = (class_weight.to(torch.float64) != exact) & (
            torch.isinf(class_weight) | (class_weight.abs() < torch.finfo(dtype).tiny)
        )
        if bool(lost.any()):
            value = float(exact[lost][0])
            raise ValueError(
                f"class_weight has an entry ({value:g}{fmt_index(lost)}) that the default dtype {dtype} cannot "
                "represent; pass class_weight as a float64 tensor (and use float64 logits) or rescale the weights"
            )
    if class_weight.dim() < 1:
        raise ValueError(f"class_weight must have shape (C,) or (..., C); got shape {tuple(class_weight.shape)}")
    # All zeros is allowed, as in the functional losses (the "batch_size" loss is then 0).
    check_weights(class_weight, name="class_weight", allow_zero_sum=True)
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
        check_choice(normalization, "normalization", NORMALIZATIONS)
        check_choice(reduction, "reduction", REDUCTIONS)
        self.register_buffer("class_weight", _as_class_weight(class_weight))
        self.normalization = normalization
        self.reduction = reduction
        self.validate = validate

    def _class_weight_for(self, logits: Tensor) -> Tensor | None:
        """The buffer, after checking it is on the logits' device (a module-level message)."""
        cw = self.class_weight
        if cw is not None and isinstance(logits, Tensor) and cw.device != logits.device:
            raise ValueError(
                f"{type(self).__name__}.class_weight is on {cw.device} but logits are on {logits.device}; "
                "move the loss module with .to(logits.device)"
            )
        return cw

    def extra_repr(self) -> str:
        cw = None if self.class_weight is None else tuple(self.class_weight.shape)
        return f"class_weight_shape={cw}, normalization={self.normalization!r}, reduction={self.reduction!r}"


class WeightedCrossEntropyLoss(_WeightedLoss):
    """Module form of :func:`~iwlab.functional.losses.weighted_cross_entropy`.

    Args:
        class_weight: ``(C,)`` or ``(..., C)`` per-class importance weights, or None. A tensor is
            kept in its dtype; a sequence becomes a tensor of the default dtype. All zeros is
            allowed (the ``"batch_size"`` loss is then 0).
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"`` (PyTorch's mean).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync); see
            :func:`~iwlab.functional.losses.weighted_cross_entropy` for what is skipped without.

    Raises:
        TypeError: ``class_weight`` is bool or complex.
        ValueError: bad ``normalization`` or ``reduction``; ``class_weight`` is 0-d, has a NaN,
            infinite or negative entry, or an entry the default dtype cannot represent. Calls
            raise as :func:`~iwlab.functional.losses.weighted_cross_entropy` does, and if the
            module's ``class_weight`` is on another device than the logits.

    Source:
        Byrd & Lipton (2019), IW-ERM with class-conditioned weights (Sec. 1.1 and 3).

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
        """Loss of ``logits`` ``(..., B, C)`` against labels ``(..., B)`` and optional ``sample_weight`` ``(..., B)``.

        Returns ``(..., B)`` for ``reduction="none"``, else ``(...)``; float32 for half logits.

        Raises:
            ValueError: the module's ``class_weight`` is on another device than ``logits``; else as
                :func:`~iwlab.functional.losses.weighted_cross_entropy`.
        """
        return weighted_cross_entropy(
            logits,
            target,
            class_weight=self._class_weight_for(logits),
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )


class WeightedBCEWithLogitsLoss(_WeightedLoss):
    """Module form of :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.

    Logits are ``(..., B)``, one per example, with leading model axes: shape ``(B, 1)`` (the
    ``torch.nn.BCEWithLogitsLoss`` habit) is rejected; squeeze the last axis.

    Args:
        class_weight: ``(2,)`` or ``(..., 2)`` weights of class 0 and class 1, or None. A tensor is
            kept in its dtype; a sequence becomes a tensor of the default dtype.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync); labels
            other than 0 and 1 (soft labels) raise. With ``validate=False`` they are read as 0;
            see :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.

    Raises:
        TypeError: ``class_weight`` is bool or complex.
        ValueError: as :class:`WeightedCrossEntropyLoss`, and ``class_weight`` without a last
            axis of size 2. Calls raise as
            :func:`~iwlab.functional.losses.weighted_binary_cross_entropy` does.

    Source:
        Byrd & Lipton (2019), IW-ERM with class-conditioned weights (Sec. 3), binary form.

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
        """Loss of one logit per example ``(..., B)`` against labels in {0, 1} ``(..., B)``.

        ``sample_weight`` is ``(..., B)`` or None. Returns ``(..., B)`` for ``reduction="none"``,
        else ``(...)``; float32 for half logits.

        Raises:
            ValueError: the module's ``class_weight`` is on another device than ``logits``; else as
                :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.
        """
        return weighted_binary_cross_entropy(
            logits,
            target,
            class_weight=self._class_weight_for(logits),
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )
