"""Importance-weighted focal loss (Lin et al. 2017), multiclass and binary, on logits.

``l_i = -(1 - p_t)^gamma log p_t`` where ``p_t`` is the probability the model gives the true class of
example ``i``; ``gamma = 0`` is the cross-entropy. Two functions, as for the cross-entropy:
:func:`focal_loss` takes ``(..., B, C)`` logits and class indices (``p_t = softmax(z)[y]``) and
:func:`binary_focal_loss` one logit per example, ``(..., B)``, and labels in {0, 1}
(``p_t = sigmoid(z)`` if ``y = 1`` else ``sigmoid(-z)``). The weights ``w_i = class_weight[y_i] *
sample_weight_i`` multiply ``l_i``; normalizations, reductions, precision (half logits run in float32),
leading model axes and ``validate`` are those of :mod:`iwlab.functional.losses`, whose argument checks
and weighted reduction these functions call. Lin et al.'s ``alpha_t`` is ``class_weight``
(``[1 - alpha, alpha]`` for the binary loss).

Numerics: ``log p_t`` comes from ``log_softmax`` / ``logsigmoid`` (finite for any finite logits) and
``1 - p_t = -expm1(log p_t)`` keeps its relative precision as ``p_t -> 1``, where ``1 - exp(.)`` would
cancel to 0; see :func:`focal_terms` for the modulating factor and its gradient.

Example:
    >>> z, y = torch.tensor([[0.0, 0.0]]), torch.tensor([1])
    >>> focal_loss(z, y, gamma=2.0)  # (1 - 0.5)**2 * log 2
    tensor(0.1733)
    >>> binary_focal_loss(torch.zeros(1), torch.tensor([1]), gamma=2.0)
    tensor(0.1733)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._multiclass import finish_multiclass, prepare_multiclass
from iwlab.functional._scaling import reduce_weighted, scaled_weights
from iwlab.functional._validation import (
    Normalization,
    Reduction,
)
from iwlab.functional.checks import check_real
from iwlab.functional.losses_binary import prepare_binary_args

__all__ = ["binary_focal_loss", "check_gamma", "focal_loss", "focal_terms"]


def check_gamma(gamma: object) -> float:
    """``gamma`` as a Python float: a finite real ``>= 0`` (bool, NaN, infinities and negatives are refused).

    Raises:
        TypeError: not a real number (a bool included).
        ValueError: NaN, infinite or negative.
    """
    g = check_real(gamma, "gamma")
    if not (math.isfinite(g) and g >= 0):
        raise ValueError(f"gamma must be a finite number >= 0 (the focusing parameter); got {g!r}")
    return g


def focal_terms(logpt: Tensor, gamma: float) -> Tensor:
    """``-(1 - p_t)^gamma log p_t`` from ``log p_t`` ``(..., B)`` (float32/float64, ``<= 0``), differentiably.

    ``gamma = 0`` returns ``-log p_t`` itself, so the loss is bitwise the cross-entropy (0**0 = 1).

    For ``gamma > 0`` the factor is ``exp(gamma log q)`` with ``q = 1 - p_t = -expm1(log p_t)``, not
    ``q**gamma``: the true derivative of the whole term in ``log p_t`` is ``-q^gamma (1 + gamma p_t r)``
    with ``r = -log(p_t) / q`` in ``[1, inf)``, finite everywhere, but ``pow``'s backward forms
    ``gamma q^(gamma - 1)`` first, which overflows for tiny ``q`` and ``gamma < 1`` (then times a tiny
    upstream gradient: inf or NaN). Through ``exp`` and ``log`` autograd instead multiplies the upstream
    gradient by ``q^gamma`` and then divides by ``q``, so no intermediate overflows.

    Where ``q`` is exactly 0 (``log p_t`` rounds to 0: from a softmax margin of about 17 in float32 and
    37 in float64; ``logsigmoid`` keeps ``e^-z`` until it underflows, at about 104 and 745) the term is 0,
    and so is its derivative (the limit of ``-q^gamma (1 + gamma p_t r)`` as ``q -> 0`` for ``gamma > 0``);
    ``log 0`` would put ``0 * inf = NaN`` in the gradient. So the factor is taken as 0 there through
    ``torch.where`` and ``log`` is fed 1 at those entries, whose gradient ``where`` discards: a guard of
    the derivative at exactly ``q = 0``, not a clamp of any input (tested by gradcheck at such logits).
    """
    nll = -logpt  # (..., B) the cross-entropy term, >= 0
    if gamma == 0:
        return nll
    q = -torch.expm1(logpt)  # (..., B) 1 - p_t, accurate as p_t -> 1
    positive = q > 0
    log_q = torch.log(torch.where(positive, q, 1.0))  # (..., B); 1 where q == 0 (see the guard above)
    factor = torch.where(positive, torch.exp(gamma * log_q), 0.0)  # (..., B) (1 - p_t)^gamma
    return factor * nll


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted multiclass focal loss on logits.

    ``l_i = -(1 - p_t)^gamma log p_t`` with ``p_t = softmax(logits_i)[y_i]``, and ``w_i =
    class_weight[y_i] * sample_weight_i``. ``"batch_size"`` gives ``(1/B) sum_i w_i l_i``,
    ``"weight_sum"`` ``sum_i w_i l_i / sum_i w_i`` (the focal factor is not a weight: it is not in the
    denominator). ``gamma = 0`` is exactly :func:`~iwlab.functional.losses.weighted_cross_entropy`.
    Class-index targets in the stacked layout only (no probability targets, ``ignore_index``,
    ``label_smoothing`` or ``class_dim=1``); one logit per example is :func:`binary_focal_loss`.

    Args:
        logits: ``(..., B, C)`` float16, bfloat16, float32 or float64, ``C >= 2``; leading dims are
            independent models.
        target: ``(..., B)`` labels in ``[0, C)`` of any integer dtype (not bool); leading dims
            broadcast to the logits'.
        gamma: the focusing parameter, a finite real ``>= 0`` (Lin et al. use 2).
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights (Lin et al.'s ``alpha_t``), or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (labels in range, weights finite and ``>= 0``, a
            non-zero weight sum for ``"weight_sum"``, no overflow); forces a device sync.

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits), in nats.

    Raises:
        TypeError: an argument is not a tensor or has the wrong kind of dtype; ``gamma`` not a real.
        ValueError: ``gamma`` NaN, infinite or negative; a floating or bool ``target``; otherwise as
            :func:`~iwlab.functional.losses.weighted_cross_entropy` (shapes, devices, empty batch with
            ``"mean"``, and with ``validate`` labels, weights, a zero weight sum, overflow).

    Source:
        Lin, Goyal, Girshick, He & Dollar (2017), "Focal Loss for Dense Object Detection", ICCV,
        Sec. 3.2, eq. (4), p. 3 (arXiv:1708.02002); its ``alpha``-balanced form, eq. (5), with
        ``alpha_t = class_weight[y]``. The weights: Byrd & Lipton (2019, Sec. 3).

    Example:
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> focal_loss(z, torch.tensor([0, 1]), gamma=0.0)  # the cross-entropy
        tensor(0.4100)
        >>> focal_loss(z, torch.tensor([0, 1]), class_weight=torch.tensor([1.0, 0.5]), reduction="none")
        tensor([0.0018, 0.0866])
    """
    gamma = check_gamma(gamma)
    hint = "for one logit per example use binary_focal_loss"
    dtype, cw, sw, index = prepare_multiclass(
        logits, target, class_weight, sample_weight, normalization, reduction, validate, "focal_loss", hint
    )
    # log_softmax + gather as in weighted_cross_entropy: stable for any finite logits, half runs in float32.
    logp = F.log_softmax(logits.to(dtype), dim=-1)  # (..., B, C)
    logpt = logp.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (..., B) log p_t
    loss = focal_terms(logpt, gamma)  # (..., B)
    return finish_multiclass(loss, index, cw, sw, logits, normalization, reduction, validate)


def binary_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted binary focal loss with one logit per example.

    ``l_i = -(1 - p_t)^gamma log p_t`` with ``p_t = sigmoid(z_i)`` if ``y_i = 1`` else ``sigmoid(-z_i)``,
    and ``w_i = class_weight[y_i] * sample_weight_i``; ``gamma = 0`` is exactly
    :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`, whose conventions hold: ``(..., B)``
    is ``M`` stacked models of ``B`` examples, so logits with two or more axes and a last axis of size 1
    are refused (squeeze it). Lin et al.'s ``alpha`` is ``class_weight=[1 - alpha, alpha]``.

    Args:
        logits: ``(..., B)`` float16, bfloat16, float32 or float64; leading dims are independent models.
        target: ``(..., B)`` hard labels in {0, 1}: any integer dtype, bool, or a float tensor of 0.0 / 1.0.
        gamma: the focusing parameter, a finite real ``>= 0`` (Lin et al. use 2).
        class_weight: ``(2,)`` or ``(..., 2)``: weights of class 0 and class 1, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B)``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (forces a device sync); a label other than 0 or 1
            raises. Without, any label other than 1 is read as 0.

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits), in nats.

    Raises:
        TypeError: an argument is not a tensor or has the wrong kind of dtype; ``gamma`` not a real.
        ValueError: ``gamma`` NaN, infinite or negative; otherwise as
            :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.

    Source:
        Lin, Goyal, Girshick, He & Dollar (2017), "Focal Loss for Dense Object Detection", ICCV,
        Sec. 3.2, eq. (4), p. 3 (arXiv:1708.02002), binary form with ``p_t`` of eq. (2); ``alpha_t``:
        eq. (5). The weights: Byrd & Lipton (2019, Sec. 3).

    Example:
        >>> z = torch.tensor([3.0, 0.0, -1.0])
        >>> binary_focal_loss(z, torch.tensor([1, 1, 0]), gamma=2.0, reduction="none")  # (1 - p_t)**2 * -log p_t
        tensor([1.0928e-04, 1.7329e-01, 2.2658e-02])
    """
    gamma = check_gamma(gamma)
    dtype, cw, sw = prepare_binary_args(logits, target, class_weight, sample_weight, normalization, reduction, validate)
    positive = (target == 1).expand(logits.shape)  # (..., B)
    z = logits.to(dtype)  # half logits run in float32
    # log p_t = logsigmoid(+-z), as in weighted_binary_cross_entropy: exact for any |z|, in every dtype.
    logpt = F.logsigmoid(torch.where(positive, z, -z))  # (..., B)
    loss = focal_terms(logpt, gamma)  # (..., B)
    weight = scaled_weights(positive.long(), cw, sw, logits.shape)
    return reduce_weighted(loss, weight, normalization, reduction, validate)
