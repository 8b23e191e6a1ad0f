"""The importance-weighted cross-entropy modules and the shared base of every loss module.

See :mod:`iwlab.losses` (the package docstring) for what the modules hold and do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from iwlab.functional._validation import check_class_dim, check_ignore_index, check_label_smoothing
from iwlab.functional.checks import check_choice, check_weights, fmt_index
from iwlab.functional.losses import (
    NORMALIZATIONS,
    REDUCTIONS,
    Normalization,
    Reduction,
    weighted_binary_cross_entropy,
    weighted_cross_entropy,
    weighted_multilabel_binary_cross_entropy,
)

__all__ = ["WeightedBCEWithLogitsLoss", "WeightedCrossEntropyLoss", "WeightedMultiLabelBCEWithLogitsLoss"]


def _as_class_weight(
    class_weight: Tensor | Sequence[float] | None, name: str = "class_weight", axis: str = "C"
) -> Tensor | None:
    """The buffer: a tensor as given, a sequence in the default dtype (checked to be representable).

    ``name`` / ``axis`` name the argument and its last axis in messages (``pos_weight``, ``L``).
    """
    if class_weight is None:
        return None
    if not isinstance(class_weight, Tensor):
        # Read the numbers exactly first: converting 1e300 straight to float32 would give inf and
        # an error about an "infinite entry" the caller never wrote.
        try:
            exact = torch.as_tensor(class_weight, dtype=torch.float64)
        except (OverflowError, TypeError, ValueError, RuntimeError) as e:  # 10**400, strings, ragged lists
            raise ValueError(f"{name} must be a sequence of numbers; {e}") from None
        check_weights(exact, name=name, allow_zero_sum=True)
        dtype = torch.get_default_dtype()
        class_weight = exact.to(dtype)
        lost = (class_weight.to(torch.float64) != exact) & (
            torch.isinf(class_weight) | (class_weight.abs() < torch.finfo(dtype).tiny)
        )
        if bool(lost.any()):
            value = float(exact[lost][0])
            raise ValueError(
                f"{name} has an entry ({value:g}{fmt_index(lost)}) that the default dtype {dtype} cannot "
                f"represent; pass {name} as a float64 tensor (and use float64 logits) or rescale the weights"
            )
    if class_weight.dim() < 1:
        raise ValueError(f"{name} must have shape ({axis},) or (..., {axis}); got shape {tuple(class_weight.shape)}")
    # All zeros is allowed, as in the functional losses (the "batch_size" loss is then 0).
    check_weights(class_weight, name=name, allow_zero_sum=True)
    return class_weight


def _buffer_for(module: nn.Module, name: str, logits: Tensor) -> Tensor | None:
    """The buffer ``name``, after checking it is on the logits' device (a module-level message)."""
    buf = getattr(module, name)
    if buf is not None and isinstance(logits, Tensor) and buf.device != logits.device:
        raise ValueError(
            f"{type(module).__name__}.{name} is on {buf.device} but logits are on {logits.device}; "
            "move the loss module with .to(logits.device)"
        )
    return buf


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
        return _buffer_for(self, "class_weight", logits)

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
        ignore_index: a label whose targets are ignored (0 loss, 0 weight), or None.
        label_smoothing: ``eps`` in ``[0, 1]``; the importance weight multiplies the whole smoothed loss.
        class_dim: ``-1`` (``(..., B, C)``, stacked models) or ``1`` (torch's ``(N, C, d1, ..., dk)``).

    Raises:
        TypeError: ``class_weight`` is bool or complex; ``ignore_index`` / ``class_dim`` not an int;
            ``label_smoothing`` not a real number.
        ValueError: bad ``normalization`` or ``reduction``; ``class_weight`` is 0-d, has a NaN,
            infinite or negative entry, or an entry the default dtype cannot represent;
            ``label_smoothing`` outside ``[0, 1]``; ``class_dim`` not -1 or 1. Calls
            raise as :func:`~iwlab.functional.losses.weighted_cross_entropy` does, and if the
            module's ``class_weight`` is on another device than the logits.

    Source:
        Byrd & Lipton (2019), IW-ERM with class-conditioned weights (Sec. 1.1 and 3).

    Example:
        >>> loss_fn = WeightedCrossEntropyLoss(class_weight=torch.tensor([1.0, 0.25]))
        >>> loss_fn(torch.zeros(2, 2), torch.tensor([1, 1]))  # 0.25 * log 2
        tensor(0.1733)
        >>> WeightedCrossEntropyLoss(ignore_index=-100, label_smoothing=0.1, class_dim=1)
        WeightedCrossEntropyLoss(class_weight_shape=None, normalization='batch_size', reduction='mean', ignore_index=-100, label_smoothing=0.1, class_dim=1)
    """  # noqa: E501

    def __init__(
        self,
        class_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        class_dim: int = -1,
    ) -> None:
        super().__init__(class_weight, normalization, reduction, validate)
        self.ignore_index = check_ignore_index(ignore_index)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.class_dim = check_class_dim(class_dim)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing:g}, "
            f"class_dim={self.class_dim}"
        )

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Loss of ``logits`` ``(..., B, C)`` against labels ``(..., B)`` and optional ``sample_weight`` ``(..., B)``.

        Or, with ``class_dim=1``, logits ``(N, C, d1, ..., dk)``; ``target`` may also hold class
        probabilities shaped like the logits. Returns ``(..., B)`` (``(N, d1, ..., dk)``) for
        ``reduction="none"``, else ``(...)``; float32 for half logits.

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
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            class_dim=self.class_dim,
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


class WeightedMultiLabelBCEWithLogitsLoss(nn.Module):
    """Module form of :func:`~iwlab.functional.losses.weighted_multilabel_binary_cross_entropy`.

    Logits are ``(..., B, L)``: ``L`` binary labels per example, leading model axes.

    Args:
        pos_weight: ``(L,)`` or ``(..., L)`` weights of each label's positive term (torch's
            ``pos_weight``), or None. A tensor is kept in its dtype (as a buffer); a sequence becomes a
            tensor of the default dtype.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``.
        reduction: ``"none"`` (``(..., B, L)``), ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync).

    Raises:
        TypeError: ``pos_weight`` is bool or complex.
        ValueError: bad ``normalization`` or ``reduction``; ``pos_weight`` is 0-d, has a NaN, infinite or
            negative entry, or an entry the default dtype cannot represent. Calls raise as
            :func:`~iwlab.functional.losses.weighted_multilabel_binary_cross_entropy` does, and if
            ``pos_weight`` is on another device than the logits.

    Source:
        ``torch.nn.BCEWithLogitsLoss`` (``pos_weight``); importance weights: Byrd & Lipton (2019, Sec. 3).

    Example:
        >>> loss_fn = WeightedMultiLabelBCEWithLogitsLoss(pos_weight=[3.0, 1.0])
        >>> loss_fn(torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]))  # (3 + 1) / 2 * log 2
        tensor(1.3863)
    """

    pos_weight: Tensor | None

    def __init__(
        self,
        pos_weight: Tensor | Sequence[float] | None = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_choice(normalization, "normalization", NORMALIZATIONS)
        check_choice(reduction, "reduction", REDUCTIONS)
        self.register_buffer("pos_weight", _as_class_weight(pos_weight, "pos_weight", "L"))
        self.normalization = normalization
        self.reduction = reduction
        self.validate = validate

    def extra_repr(self) -> str:
        pw = None if self.pos_weight is None else tuple(self.pos_weight.shape)
        return f"pos_weight_shape={pw}, normalization={self.normalization!r}, reduction={self.reduction!r}"

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Loss of ``logits`` ``(..., B, L)`` against targets in ``[0, 1]`` ``(..., B, L)``.

        ``sample_weight`` is ``(..., B)`` or None. Returns ``(..., B, L)`` for ``reduction="none"``,
        else ``(...)``; float32 for half logits.

        Raises:
            ValueError: the module's ``pos_weight`` is on another device than ``logits``; else as
                :func:`~iwlab.functional.losses.weighted_multilabel_binary_cross_entropy`.
        """
        return weighted_multilabel_binary_cross_entropy(
            logits,
            target,
            pos_weight=_buffer_for(self, "pos_weight", logits),
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )
