"""The imbalance-remedy loss modules: thin wrappers around :mod:`iwlab.functional.losses_margin` (polynomially-tailed
losses) and :mod:`iwlab.functional.losses_remedies` (LDAM, logit-adjusted and VS losses).

The modules that take the training set's class counts keep them as a float64 buffer ``class_counts``
(validated once here, it follows ``.to(device)`` and is saved in ``state_dict``; ``.half()`` or
``.float()`` would cast it too, which the losses then check like any counts).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from iwlab.functional.losses import Normalization, Reduction
from iwlab.functional.losses_margin import (
    binary_poly_tailed_loss,
    check_finite_real,
    check_poly_args,
    poly_tailed_loss,
)
from iwlab.functional.losses_remedies import ldam_loss, logit_adjusted_loss, vs_loss
from iwlab.functional.weighting import check_class_counts
from iwlab.losses.weighted import _buffer_for, _WeightedLoss

__all__ = ["BinaryPolyTailedLoss", "LDAMLoss", "LogitAdjustedLoss", "PolyTailedLoss", "VSLoss"]

Weight = Tensor | Sequence[float] | None


class _RemedyLoss(_WeightedLoss):
    """:class:`_WeightedLoss` plus hyperparameters (:meth:`_hyper`) and optionally the ``class_counts`` buffer."""

    class_counts: Tensor | None
    _function: staticmethod  # the functional loss a subclass calls
    _needs_counts = True  # False for the poly modules, which pass class_counts=None

    def __init__(
        self,
        class_counts: Tensor | Sequence[int] | None,
        class_weight: Weight,
        normalization: Normalization,
        reduction: Reduction,
        validate: bool,
    ) -> None:
        super().__init__(class_weight, normalization, reduction, validate)
        if class_counts is None and self._needs_counts:
            raise TypeError(f"{type(self).__name__} needs class_counts: the training set's (C,) class counts")
        counts = None if class_counts is None else check_class_counts(class_counts)  # (C,) float64
        if counts is not None and self.class_weight is not None and self.class_weight.shape[-1] != counts.numel():
            raise ValueError(
                f"class_weight has shape {tuple(self.class_weight.shape)} but class_counts has {counts.numel()} "
                "entries; both need one entry per class"
            )
        self.register_buffer("class_counts", counts)

    def _hyper(self) -> dict[str, float | str]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        hyper = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in self._hyper().items())
        counts = "" if self.class_counts is None else f", classes={self.class_counts.numel()}"
        return f"{hyper}{counts}, {super().extra_repr()}"

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The loss of ``logits`` against ``target`` (shapes in the class docstring), ``sample_weight`` ``(..., B)``.

        Returns ``(..., B)`` for ``reduction="none"``, else ``(...)``; float32 for half logits.

        Raises:
            ValueError: a buffer on another device than ``logits``; else as the functional loss.
        """
        class_weight = self._class_weight_for(logits)  # first: its message is every weighted module's
        counts = () if self.class_counts is None else (_buffer_for(self, "class_counts", logits),)
        return self._function(
            logits,
            target,
            *counts,
            **self._hyper(),
            class_weight=class_weight,
            sample_weight=sample_weight,
            normalization=self.normalization,
            reduction=self.reduction,
            validate=self.validate,
        )


class PolyTailedLoss(_RemedyLoss):
    """Module form of :func:`~iwlab.functional.losses_margin.poly_tailed_loss`: ``(..., B, C)`` logits.

    Args:
        alpha: the tail's exponent ``z^(-alpha)``, finite, ``> 0`` (``> 1`` for ``kind="linear"``).
        kind: ``"logit"``, ``"linear"`` or ``"exp"``: the loss below the margin 1.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights, or None; a buffer (a tensor in its
            dtype, a sequence in the default dtype).
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"`` (PyTorch's mean).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
        validate: run the data-dependent checks on every call (forces a device sync).

    Raises:
        TypeError: ``alpha`` not a real number; ``class_weight`` bool or complex.
        ValueError: ``alpha`` out of range, ``kind`` unknown; otherwise as
            :class:`~iwlab.losses.WeightedCrossEntropyLoss`. Calls raise as the functional loss does.

    Source:
        Wang, Chatterji, Haque & Hashimoto (2022), "Is Importance Weighting Incompatible with
        Interpolating Classifiers?", ICLR (the polynomially-tailed loss; details in the functional form).

    Example:
        >>> import torch
        >>> loss_fn = PolyTailedLoss(alpha=1.0, class_weight=[1.0, 0.5])
        >>> loss_fn(torch.tensor([[0.0, 2.0]]), torch.tensor([1]))  # 0.5 * 2**-1
        tensor(0.2500)
        >>> loss_fn
        PolyTailedLoss(alpha=1, kind='logit', class_weight_shape=(2,), normalization='batch_size', reduction='mean')
    """

    _function = staticmethod(poly_tailed_loss)
    _needs_counts = False

    def __init__(
        self,
        alpha: float,
        kind: str = "logit",
        class_weight: Weight = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(None, class_weight, normalization, reduction, validate)
        self.alpha, self.kind = check_poly_args(alpha, kind)

    def _hyper(self) -> dict[str, float | str]:
        return {"alpha": self.alpha, "kind": self.kind}


class BinaryPolyTailedLoss(PolyTailedLoss):
    """Module form of :func:`~iwlab.functional.losses_margin.binary_poly_tailed_loss`: one logit per example.

    Logits are ``(..., B)``; shape ``(B, 1)`` is refused, as by :class:`~iwlab.losses.WeightedBCEWithLogitsLoss`.

    Args:
        alpha, kind, normalization, reduction, validate: as :class:`PolyTailedLoss`.
        class_weight: ``(2,)`` or ``(..., 2)`` weights of class 0 and 1, or None; a buffer.

    Raises:
        ValueError: as :class:`PolyTailedLoss`, and ``class_weight`` without a last axis of size 2.

    Source:
        Wang et al. (2022), ICLR, the binary polynomially-tailed loss of the margin ``y f(x)``.

    Example:
        >>> import torch
        >>> BinaryPolyTailedLoss(alpha=2.0, reduction="none")(torch.tensor([2.0, -2.0]), torch.tensor([1, 0]))
        tensor([0.2500, 0.2500])
    """

    _function = staticmethod(binary_poly_tailed_loss)

    def __init__(
        self,
        alpha: float,
        kind: str = "logit",
        class_weight: Weight = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(alpha, kind, class_weight, normalization, reduction, validate=validate)
        if self.class_weight is not None and self.class_weight.shape[-1] != 2:
            raise ValueError(
                "class_weight of a binary loss must have shape (2,) or (..., 2); got shape "
                f"{tuple(self.class_weight.shape)}"
            )


class LDAMLoss(_RemedyLoss):
    """Module form of :func:`~iwlab.functional.losses_remedies.ldam_loss`: ``CE(scale * (l - m_y e_y), y)``.

    Args:
        class_counts: ``(C,)`` training counts, positive integers; kept as a float64 buffer.
        max_margin: the rarest class's margin, finite, ``>= 0`` (0.5 in Cao et al.'s code).
        scale: the logits' scale, finite, ``> 0`` (30 in their code).
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights (their deferred re-weighting), or None.
        normalization, reduction, validate: as :class:`PolyTailedLoss`.

    Raises:
        TypeError: a hyperparameter not a real; ``class_counts`` not counts; ``class_weight`` bool or complex.
        ValueError: a hyperparameter out of range; bad counts (zero, negative, fractional, non-finite, not
            1-d); ``class_weight`` with another number of classes. Calls raise as the functional loss does.

    Source:
        Cao, Wei, Gaidon, Arechiga & Ma (2019), "Learning Imbalanced Datasets with Label-Distribution-Aware
        Margin Loss", NeurIPS (details in the functional form).

    Example:
        >>> import torch
        >>> loss_fn = LDAMLoss([16, 1], max_margin=0.5, scale=2.0)
        >>> loss_fn(torch.zeros(1, 2), torch.tensor([1]))  # softplus(2 * 0.5)
        tensor(1.3133)
        >>> loss_fn
        LDAMLoss(max_margin=0.5, scale=2, classes=2, class_weight_shape=None, normalization='batch_size', reduction='mean')
    """  # noqa: E501

    _function = staticmethod(ldam_loss)

    def __init__(
        self,
        class_counts: Tensor | Sequence[int],
        max_margin: float = 0.5,
        scale: float = 30.0,
        class_weight: Weight = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, class_weight, normalization, reduction, validate)
        self.max_margin = check_finite_real(max_margin, "max_margin", 0.0)
        self.scale = check_finite_real(scale, "scale", 0.0, strict=True)

    def _hyper(self) -> dict[str, float | str]:
        return {"max_margin": self.max_margin, "scale": self.scale}


class LogitAdjustedLoss(_RemedyLoss):
    """Module form of :func:`~iwlab.functional.losses_remedies.logit_adjusted_loss`: ``CE(l + tau log pi, y)``.

    Args:
        class_counts: ``(C,)`` training counts, positive integers; kept as a float64 buffer.
        tau: the adjustment's temperature, a finite real (1 in Menon et al.).
        class_weight, normalization, reduction, validate: as :class:`LDAMLoss`.

    Raises:
        TypeError, ValueError: as :class:`LDAMLoss`, for ``tau``.

    Source:
        Menon, Jayasumana, Rawat, Jain, Veit & Kumar (2021), "Long-tail learning via logit adjustment", ICLR.

    Example:
        >>> import torch
        >>> LogitAdjustedLoss([3, 1])(torch.zeros(1, 2), torch.tensor([1]))  # -log(1/4)
        tensor(1.3863)
    """

    _function = staticmethod(logit_adjusted_loss)

    def __init__(
        self,
        class_counts: Tensor | Sequence[int],
        tau: float = 1.0,
        class_weight: Weight = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, class_weight, normalization, reduction, validate)
        self.tau = check_finite_real(tau, "tau")

    def _hyper(self) -> dict[str, float | str]:
        return {"tau": self.tau}


class VSLoss(_RemedyLoss):
    """Module form of :func:`~iwlab.functional.losses_remedies.vs_loss`: ``CE(Delta * l + tau log pi, y)``.

    Args:
        class_counts: ``(C,)`` training counts, positive integers; kept as a float64 buffer.
        tau: the additive adjustment's temperature, a finite real.
        gamma: the exponent of ``Delta_c = (n_c / n_max)^gamma``, a finite real.
        class_weight, normalization, reduction, validate: as :class:`LDAMLoss`.

    Raises:
        TypeError, ValueError: as :class:`LDAMLoss`, for ``tau`` and ``gamma``.

    Source:
        Kini, Paraskevas, Oymak & Thrampoulidis (2021), "Label-Imbalanced and Group-Sensitive Classification
        under Overparameterization", NeurIPS.

    Example:
        >>> import torch
        >>> VSLoss([3, 1], gamma=0.0)(torch.zeros(1, 2), torch.tensor([1]))  # the logit-adjusted loss
        tensor(1.3863)
    """

    _function = staticmethod(vs_loss)

    def __init__(
        self,
        class_counts: Tensor | Sequence[int],
        tau: float = 1.0,
        gamma: float = 0.2,
        class_weight: Weight = None,
        normalization: Normalization = "batch_size",
        reduction: Reduction = "mean",
        *,
        validate: bool = True,
    ) -> None:
        super().__init__(class_counts, class_weight, normalization, reduction, validate)
        self.tau = check_finite_real(tau, "tau")
        self.gamma = check_finite_real(gamma, "gamma")

    def _hyper(self) -> dict[str, float | str]:
        return {"tau": self.tau, "gamma": self.gamma}
