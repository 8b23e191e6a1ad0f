"""Label-distribution-aware remedies for imbalanced classes: LDAM, logit adjustment and VS losses, on logits.

Each is the cross-entropy of *transformed* logits, the transformation built from the training set's
class counts ``n_c`` (priors ``pi_c = n_c / sum_k n_k``):

- :func:`ldam_loss` (Cao et al. 2019): ``CE(s (l - m_y e_y), y)``, margins ``m_c`` proportional to ``n_c^(-1/4)``;
- :func:`logit_adjusted_loss` (Menon et al. 2021): ``CE(l + tau log pi, y)``, and :func:`logit_adjust`, the
  post-hoc form ``l - tau log pi``;
- :func:`vs_loss` (Kini et al. 2021): ``CE(Delta * l + tau log pi, y)``, ``Delta_c = (n_c / n_max)^gamma``.

The weights ``w_i = class_weight[y_i] * sample_weight_i`` multiply the per-example loss; normalizations,
reductions, precision (half logits run in float32), leading model axes and ``validate`` are those of
:mod:`iwlab.functional.losses`, whose checks and weighted reduction these functions call. The counts are
validated by :func:`~iwlab.functional.weighting.check_class_counts` and turned into ``log pi``, ``Delta``
and the margins in float64, then cast to the compute dtype. The polynomially-tailed loss is in
:mod:`iwlab.functional.losses_margin`.

Example:
    >>> z, y = torch.zeros(1, 2), torch.tensor([1])
    >>> logit_adjusted_loss(z, y, [3, 1])  # -log(0.25): the adjusted logits are log pi
    tensor(1.3863)
    >>> logit_adjust(z, [3, 1])  # -log pi
    tensor([[0.2877, 1.3863]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._multiclass import finish_multiclass, prepare_multiclass
from iwlab.functional._validation import Normalization, Reduction, compute_dtype
from iwlab.functional.losses_margin import (
    Counts,
    check_finite_real,
    counts_for,
)
from iwlab.functional.weighting import check_class_counts

__all__ = ["ldam_loss", "ldam_margins", "logit_adjust", "logit_adjusted_loss", "vs_loss"]


def _log_prior(n: Tensor) -> Tensor:
    """``log pi_c = log(n_c / sum_k n_k)`` ``(C,)`` in float64."""
    return torch.log(n / n.sum())


def _prior_adjusted_ce(
    logits: Tensor,
    target: Tensor,
    class_counts: Counts,
    tau: float,
    gamma: float,
    class_weight: Tensor | None,
    sample_weight: Tensor | None,
    normalization: Normalization,
    reduction: Reduction,
    validate: bool,
    name: str,
) -> Tensor:
    """``CE(Delta * l + tau log pi, y)``, ``Delta_c = (n_c / n_max)^gamma``; the body of :func:`vs_loss` and LA."""
    dtype, cw, sw, index = prepare_multiclass(
        logits, target, class_weight, sample_weight, normalization, reduction, validate, name
    )
    n = counts_for(class_counts, logits, validate)  # (C,) float64
    z = logits.to(dtype)  # (..., B, C); half logits run in float32
    if gamma != 0:  # gamma = 0: Delta = 1, skipped so that VS is bitwise LA
        z = z * torch.pow(n / n.max(), gamma).to(dtype)  # (C,) Delta_c in (0, 1] for gamma > 0
    if tau != 0:  # tau = 0: no shift, so that LA is bitwise the cross-entropy
        z = z + (tau * _log_prior(n)).to(dtype)  # (C,) tau log pi_c
    logp = F.log_softmax(z, dim=-1)  # (..., B, C)
    loss = -logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (..., B)
    return finish_multiclass(loss, index, cw, sw, logits, normalization, reduction, validate)


def logit_adjusted_loss(
    logits: Tensor,
    target: Tensor,
    class_counts: Counts,
    *,
    tau: float = 1.0,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted logit-adjusted cross-entropy: ``l_i = -log softmax(logits_i + tau log pi)[y_i]``.

    With ``pi_c = n_c / sum_k n_k``. The shift raises the logits of frequent classes during training, so the
    model must learn a larger margin for rare ones; at test time the raw logits are used (their argmax
    estimates the balanced-error Bayes classifier). ``tau = 0`` is exactly
    :func:`~iwlab.functional.losses.weighted_cross_entropy`; :func:`vs_loss` with ``gamma = 0`` is this loss.
    Weights, ``normalization`` and ``reduction`` as in :func:`~iwlab.functional.losses_focal.focal_loss`.

    Args:
        logits: ``(..., B, C)`` float16, bfloat16, float32 or float64, ``C >= 2``; leading dims are models.
        target: ``(..., B)`` class indices in ``[0, C)``, any integer dtype (not bool).
        class_counts: ``(C,)`` training counts ``n_c`` (a tensor on the logits' device, or a sequence),
            positive integers.
        tau: the temperature of the adjustment, a finite real (Menon et al. use 1).
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (labels, weights, the counts' values, zero weight sum,
            overflow); forces a device sync. Without, a zero count gives ``log 0 = -inf`` in the formula.

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits), in nats.

    Raises:
        TypeError: a bad type (``tau`` not a real; ``class_counts`` not counts); as
            :func:`~iwlab.functional.losses.weighted_cross_entropy`.
        ValueError: ``tau`` NaN or infinite; ``class_counts`` not 1-d, not ``C`` entries, on another
            device, or (``validate``) with a zero, negative, fractional or non-finite count; a floating or
            bool ``target``; otherwise as :func:`~iwlab.functional.losses.weighted_cross_entropy`.

    Source:
        Menon, Jayasumana, Rawat, Jain, Veit & Kumar (2021), "Long-tail learning via logit adjustment",
        ICLR, Sec. 5, eq. (10) (the logit-adjusted softmax cross-entropy; equation number and page from
        memory, unverified). Weights: Byrd & Lipton (2019, Sec. 3).

    Example:
        >>> z, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> logit_adjusted_loss(z, y, [90, 10], reduction="none")  # -log softmax(z + log [0.9, 0.1])[y]
        tensor([0.0401, 1.4612])
    """
    tau = check_finite_real(tau, "tau")
    return _prior_adjusted_ce(
        logits,
        target,
        class_counts,
        tau,
        0.0,
        class_weight,
        sample_weight,
        normalization,
        reduction,
        validate,
        "logit_adjusted_loss",
    )


def vs_loss(
    logits: Tensor,
    target: Tensor,
    class_counts: Counts,
    *,
    tau: float = 1.0,
    gamma: float = 0.2,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted vector-scaling (VS) loss: ``l_i = -log softmax(Delta * logits_i + tau log pi)[y_i]``.

    ``Delta_c = (n_c / n_max)^gamma`` scales each class's logit (multiplicative adjustment: it shapes the
    margins at the end of training) and ``tau log pi_c`` shifts it (additive: it helps early in training).
    ``gamma = 0`` is :func:`logit_adjusted_loss` (bitwise); ``tau = 0`` is the CDT loss of Ye et al. (2020);
    both 0 the cross-entropy. Kini et al.'s ``omega_y`` is ``class_weight``.

    Args:
        logits, target, class_counts, class_weight, sample_weight, normalization, reduction, validate:
            as :func:`logit_adjusted_loss`.
        tau: the additive adjustment's temperature, a finite real.
        gamma: the multiplicative adjustment's exponent, a finite real (Kini et al. tune it in about
            ``[0, 0.5]``).

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits), in nats.

    Raises:
        TypeError, ValueError: as :func:`logit_adjusted_loss`, and ``gamma`` NaN, infinite or not a real.

    Source:
        Kini, Paraskevas, Oymak & Thrampoulidis (2021), "Label-Imbalanced and Group-Sensitive
        Classification under Overparameterization", NeurIPS, Sec. 2, the VS-loss with ``Delta_y`` and
        ``iota_y = tau log pi_y`` (equation number and page from memory, unverified). CDT: Ye, Chen, Zhan &
        Chao (2020), "Identifying and Compensating for Feature Deviation in Imbalanced Deep Learning".

    Example:
        >>> z, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
        >>> vs_loss(z, y, [90, 10], gamma=0.0, reduction="none")  # the logit-adjusted loss
        tensor([0.0401, 1.4612])
        >>> vs_loss(z, y, [90, 10], tau=0.0, gamma=1.0, reduction="none")  # CE([1, 0]) and CE([0, 1/9])
        tensor([0.3133, 0.6391])
    """
    tau = check_finite_real(tau, "tau")
    gamma = check_finite_real(gamma, "gamma")
    return _prior_adjusted_ce(
        logits,
        target,
        class_counts,
        tau,
        gamma,
        class_weight,
        sample_weight,
        normalization,
        reduction,
        validate,
        "vs_loss",
    )


def logit_adjust(logits: Tensor, class_counts: Counts, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment: ``logits - tau log pi``, ``pi_c = n_c / sum_k n_k``; its argmax is the prediction.

    For a model trained with the plain cross-entropy on imbalanced data, ``argmax_c (l_c - log pi_c)``
    estimates the classifier that minimizes the balanced error.

    Args:
        logits: ``(..., C)`` float16, bfloat16, float32 or float64.
        class_counts: ``(C,)`` training counts (a tensor on the logits' device, or a sequence), positive integers.
        tau: a finite real (1 in Menon et al.).

    Returns:
        ``(..., C)`` in the dtype of ``logits`` (float32 for float16/bfloat16 logits, as the losses compute).

    Raises:
        TypeError: ``logits`` not a tensor; ``tau`` not a real; ``class_counts`` not counts.
        ValueError: ``logits`` not floating or 0-d; ``tau`` NaN or infinite; ``class_counts`` not 1-d, not
            ``C`` entries, on another device, or with a zero, negative, fractional or non-finite count.

    Source:
        Menon et al. (2021), "Long-tail learning via logit adjustment", ICLR, Sec. 4, eq. (9) (post-hoc
        logit adjustment; equation number and page from memory, unverified).

    Example:
        >>> logit_adjust(torch.tensor([2.0, 0.0]), [90, 10]).argmax()  # 2 + 0.105 < 0 + 2.303
        tensor(1)
    """
    tau = check_finite_real(tau, "tau")
    dtype = compute_dtype(logits)
    if logits.dim() < 1:
        raise ValueError("logits must have shape (..., C); got a 0-d tensor")
    n = counts_for(class_counts, logits, validate=True)  # (C,) float64
    return logits.to(dtype) - (tau * _log_prior(n)).to(dtype)  # (..., C)


def ldam_margins(class_counts: Counts, max_margin: float = 0.5) -> Tensor:
    """LDAM's per-class margins ``m_c = max_margin * (n_min / n_c)^(1/4)``, largest for the rarest class.

    ``m_c`` is proportional to ``n_c^(-1/4)``, scaled so that ``max_c m_c = max_margin``.

    Args:
        class_counts: ``(C,)`` positive integer counts (tensor or sequence).
        max_margin: the rarest class's margin, a finite real ``>= 0`` (Cao et al.'s ``C``; 0.5 in their code).

    Returns:
        ``(C,)`` float64 on the counts' device (CPU for a sequence).

    Raises:
        TypeError: ``max_margin`` not a real; ``class_counts`` not counts.
        ValueError: ``max_margin`` negative, NaN or infinite; bad counts (as
            :func:`~iwlab.functional.weighting.check_class_counts`).

    Source:
        Cao, Wei, Gaidon, Arechiga & Ma (2019), "Learning Imbalanced Datasets with Label-Distribution-Aware
        Margin Loss", NeurIPS, Sec. 3.2, eq. (12) ``Delta_j = C / n_j^(1/4)`` (equation numbers as cited by
        third-party code; page from memory, unverified); the rescaling to ``max_margin`` is their code's.

    Example:
        >>> ldam_margins([5000, 500, 50])
        tensor([0.1581, 0.2812, 0.5000], dtype=torch.float64)
    """
    max_margin = check_finite_real(max_margin, "max_margin", 0.0)
    n = check_class_counts(class_counts)  # (C,) float64
    # (n_min / n_c)^(1/4) <= 1 is n_c^(-1/4) / max_k n_k^(-1/4), without forming n^(-1/4) for huge counts
    return max_margin * (n.min() / n) ** 0.25


def ldam_loss(
    logits: Tensor,
    target: Tensor,
    class_counts: Counts,
    *,
    max_margin: float = 0.5,
    scale: float = 30.0,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted LDAM loss: ``l_i = -log softmax(scale * (logits_i - m_{y_i} e_{y_i}))[y_i]``.

    The true class's logit is lowered by its margin ``m_y`` (:func:`ldam_margins`, larger for rarer
    classes), then every logit is multiplied by ``scale``, in that order, as Cao et al.'s code does (their
    logits are cosines of normalized features, hence the scale). Their deferred re-weighting (DRW) is
    ``class_weight`` (e.g. :func:`~iwlab.functional.weighting.class_balanced_weights`) from a later epoch;
    their code's ``F.cross_entropy(weight=...)`` is ``normalization="weight_sum"``. With ``max_margin = 0``
    this is the cross-entropy of ``scale * logits``.

    Args:
        logits, target, class_counts, class_weight, sample_weight, normalization, reduction, validate:
            as :func:`logit_adjusted_loss`.
        max_margin: the rarest class's margin, a finite real ``>= 0`` (0.5 in Cao et al.'s code).
        scale: the logits' scale ``s``, a finite real ``> 0`` (30 in their code).

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits), in nats.

    Raises:
        TypeError, ValueError: as :func:`logit_adjusted_loss`, and ``max_margin`` negative, ``scale`` not
            ``> 0``, either NaN, infinite or not a real.

    Source:
        Cao et al. (2019), "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
        NeurIPS, Sec. 3.2, eq. (13) (equation number as cited by third-party code; page from memory,
        unverified), and the authors' code (github.com/kaidic/LDAM-DRW, ``LDAMLoss``: ``max_m=0.5, s=30``).

    Example:
        >>> z, y = torch.zeros(1, 2), torch.tensor([1])
        >>> ldam_loss(z, y, [16, 1], max_margin=0.5, scale=2.0)  # log(1 + e^(2 * 0.5)) = softplus(1)
        tensor(1.3133)
    """
    max_margin = check_finite_real(max_margin, "max_margin", 0.0)
    scale = check_finite_real(scale, "scale", 0.0, strict=True)
    dtype, cw, sw, index = prepare_multiclass(
        logits, target, class_weight, sample_weight, normalization, reduction, validate, "ldam_loss"
    )
    n = counts_for(class_counts, logits, validate)  # (C,) float64
    m = (max_margin * (n.min() / n) ** 0.25).to(dtype)  # (C,) as ldam_margins, on the logits' device
    z = logits.to(dtype)  # (..., B, C)
    true = index.unsqueeze(-1)  # (..., B, 1)
    is_true = torch.arange(z.shape[-1], device=z.device) == true  # (..., B, C) one-hot of y
    shifted = torch.where(is_true, z - m, z)  # (..., B, C): l - m_y e_y
    logp = F.log_softmax(scale * shifted, dim=-1)  # (..., B, C)
    loss = -logp.gather(-1, true).squeeze(-1)  # (..., B)
    return finish_multiclass(loss, index, cw, sw, logits, normalization, reduction, validate)
