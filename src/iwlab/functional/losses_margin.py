"""The polynomially-tailed loss (Wang et al. 2022), multiclass and binary, and the checks of the remedy losses.

``l(z)`` is a function of the margin ``z`` of an example: ``z = logit_y - max_{j != y} logit_j`` for
``(..., B, C)`` logits (:func:`poly_tailed_loss`) and ``z = (2y - 1) f`` for one logit ``f`` per example
(:func:`binary_poly_tailed_loss`). For ``z >= 1`` it decays as the power ``z^(-alpha)``, where the logistic
and cross-entropy losses decay as ``e^(-z)``: with an exponential tail, gradient descent on separable data
converges to the max-margin classifier whatever the importance weights, while a polynomial tail keeps
their effect. Below 1 the loss has one of three forms (``kind``), each equal to the tail at ``z = 1``:

========== =============================================== ============================
kind       ``z < 1``                                       ``z >= 1``
========== =============================================== ============================
"logit"    ``softplus(-z) / log(1 + e^(-1))``               ``z^(-alpha)``
"linear"   ``alpha / (alpha - 1) - z``                      ``z^(-alpha) / (alpha - 1)``
"exp"      ``exp(1 - z)``                                   ``z^(-alpha)``
========== =============================================== ============================

The loss is continuous at ``z = 1``; its derivative in general is not (a kink, as a hinge has). Weights,
normalizations, reductions, precision (half logits run in float32), leading model axes and ``validate``
are those of :mod:`iwlab.functional.losses`. This module also holds the checks that
:mod:`iwlab.functional.losses_remedies` (LDAM, logit adjustment, VS) shares with it.

Example:
    >>> z = torch.tensor([[3.0, 1.0], [0.0, 0.0]])  # margins 2 and 0 for targets 0 and 1
    >>> poly_tailed_loss(z, torch.tensor([0, 1]), alpha=1.0, reduction="none")  # 1/2, log 2 / log(1 + 1/e)
    tensor([0.5000, 2.2127])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from iwlab.functional._multiclass import finish_multiclass, prepare_multiclass
from iwlab.functional._scaling import check_overflow, reduce_weighted, scaled_weights
from iwlab.functional._validation import (
    Normalization,
    Reduction,
    check_device,
    shape_of,
)
from iwlab.functional.checks import check_choice, check_real
from iwlab.functional.losses_binary import prepare_binary_args
from iwlab.functional.weighting import check_class_counts

__all__ = [
    "POLY_KINDS",
    "binary_poly_tailed_loss",
    "check_finite_real",
    "check_poly_args",
    "counts_for",
    "poly_tail_terms",
    "poly_tailed_loss",
]

#: The left branches (``z < 1``) of the polynomially-tailed loss.
POLY_KINDS = ("logit", "linear", "exp")

Counts = Tensor | Sequence[int]


def check_finite_real(value: object, name: str, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite Python float, ``>= minimum`` (``> minimum`` if ``strict``); bool, NaN and inf refused.

    Raises:
        TypeError: not a real number (a bool included).
        ValueError: NaN, infinite or below the bound.
    """
    v = check_real(value, name)
    ok = math.isfinite(v) and (minimum is None or (v > minimum if strict else v >= minimum))
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}; got {v!r}")
    return v


def counts_for(class_counts: Counts, logits: Tensor, validate: bool) -> Tensor:
    """``class_counts`` checked against ``logits`` ``(..., C)``: float64 ``(C,)`` on the logits' device.

    A tensor must already be on the logits' device (as the weights must); a sequence is moved there.
    ``validate=False`` skips the value checks (a tensor's would sync the device).

    Raises:
        TypeError, ValueError: as :func:`~iwlab.functional.weighting.check_class_counts`; a tensor on
            another device; a number of counts other than ``C``.
    """
    if isinstance(class_counts, Tensor):
        check_device(class_counts, "class_counts", logits)
    n = check_class_counts(class_counts, values=validate).to(logits.device)  # (C,)
    C = logits.shape[-1] if logits.dim() >= 1 else 0
    if n.numel() != C:
        raise ValueError(
            f"class_counts has {n.numel()} entries but logits has shape {shape_of(logits)} (C={C} classes); "
            "give one count per class"
        )
    return n


def check_poly_args(alpha: object, kind: object) -> tuple[float, str]:
    """``(alpha, kind)`` checked: ``kind`` in :data:`POLY_KINDS`; ``alpha`` finite, ``> 0`` (``> 1`` for "linear").

    Raises:
        TypeError: ``alpha`` not a real number (a bool included).
        ValueError: ``kind`` unknown; ``alpha`` NaN, infinite or not above its bound.
    """
    check_choice(kind, "kind", POLY_KINDS)
    a = check_real(alpha, "alpha")
    low = 1.0 if kind == "linear" else 0.0
    if not (math.isfinite(a) and a > low):
        why = " (the tail is z^(-alpha) / (alpha - 1))" if kind == "linear" else ""
        raise ValueError(f"alpha must be a finite number > {low:g} for kind={kind!r}{why}; got {a!r}")
    return a, str(kind)


# softplus(-1) = log(1 + e^(-1)): divides the "logit" branch so that it is 1 = 1^(-alpha) at z = 1
_SOFTPLUS_MINUS_1 = math.log1p(math.exp(-1.0))


def poly_tail_terms(z: Tensor, alpha: float, kind: str) -> Tensor:
    """The polynomially-tailed loss of margins ``z`` ``(..., B)`` (float32/float64), differentiably.

    ``torch.where`` evaluates both branches everywhere and backpropagates zeros into the one it does not
    select, but ``0 * inf = NaN``: ``z^(-alpha)`` is inf or NaN at ``z <= 0`` and ``exp(1 - z)`` overflows
    for ``z`` far above 1, so either branch's derivative can be non-finite where it is not used. Each
    branch therefore reads ``z`` only where it is selected and the constant 1 elsewhere (``z_tail``,
    ``z_left``). This is a guard of the unused branch, not a clamp of the input: every selected entry
    sees its own ``z``, and the replaced entries' values and gradients are discarded by the outer ``where``.
    """
    tail = z >= 1  # (..., B)
    z_tail = torch.where(tail, z, 1.0)  # (..., B) >= 1: z^(-alpha) finite, its derivative too
    z_left = torch.where(tail, 1.0, z)  # (..., B) <= 1: exp(1 - z) cannot overflow from the tail's entries
    right = z_tail.pow(-alpha)  # (..., B)
    if kind == "linear":
        right = right / (alpha - 1.0)
        left = (alpha / (alpha - 1.0)) - z_left  # equals 1 / (alpha - 1) at z = 1
    elif kind == "exp":
        left = torch.exp(1.0 - z_left)
    else:  # "logit": softplus(-z) = -log sigmoid(z), exact for any |z| (as the binary cross-entropy)
        left = -F.logsigmoid(z_left) / _SOFTPLUS_MINUS_1
    return torch.where(tail, right, left)  # (..., B)


def poly_tailed_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    kind: str = "logit",
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted multiclass polynomially-tailed loss of the margin ``z = logit_y - max_{j != y} logit_j``.

    ``l_i = l(z_i)`` with the branches of the module docstring (``z^(-alpha)`` for ``z >= 1``); ``w_i =
    class_weight[y_i] * sample_weight_i``. Weights, ``normalization`` and ``reduction`` as in
    :func:`~iwlab.functional.losses_focal.focal_loss`. The gradient flows into the true logit and the largest
    other one (split evenly between tied maxima).

    Args:
        logits: ``(..., B, C)`` float16, bfloat16, float32 or float64, ``C >= 2``; leading dims are models.
        target: ``(..., B)`` class indices in ``[0, C)``, any integer dtype (not bool).
        alpha: the tail's exponent, a finite real ``> 0`` (``> 1`` for ``kind="linear"``).
        kind: the branch below ``z = 1``: ``"logit"`` (default), ``"linear"`` or ``"exp"``.
        class_weight: ``(C,)`` or ``(..., C)`` per-class weights, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B)`` of ``w_i l_i``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (labels, weights, zero weight sum, overflow: ``"exp"``
            overflows below ``z`` of about -708 in float64, -87 in float32); forces a device sync.

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits).

    Raises:
        TypeError: ``alpha`` not a real; otherwise as :func:`~iwlab.functional.losses.weighted_cross_entropy`.
        ValueError: ``alpha`` NaN, infinite or too small; ``kind`` unknown; a floating or bool ``target``;
            otherwise as :func:`~iwlab.functional.losses.weighted_cross_entropy`.

    Source:
        Wang, Chatterji, Haque & Hashimoto (2022), "Is Importance Weighting Incompatible with
        Interpolating Classifiers?", ICLR: the polynomially-tailed loss ``l_{alpha,beta}`` with ``beta = 1``
        and its multiclass form on the margin, Sec. 3-4 (section, equation number and page from memory,
        unverified). The three left branches and their normalization at ``z = 1`` are iwlab's (issue 15).

    Example:
        >>> z, y = torch.tensor([[4.0, 0.0, 2.0]]), torch.tensor([0])  # margin 2
        >>> poly_tailed_loss(z, y, alpha=2.0), poly_tailed_loss(z, y, alpha=2.0, kind="linear")
        (tensor(0.2500), tensor(0.2500))
    """
    alpha, kind = check_poly_args(alpha, kind)
    dtype, cw, sw, index = prepare_multiclass(
        logits, target, class_weight, sample_weight, normalization, reduction, validate, "poly_tailed_loss"
    )
    z = logits.to(dtype)  # (..., B, C); half logits run in float32
    true = index.unsqueeze(-1)  # (..., B, 1)
    is_true = torch.arange(z.shape[-1], device=z.device) == true  # (..., B, C)
    other = torch.where(is_true, -math.inf, z).amax(-1)  # (..., B) max_{j != y} logit_j (C >= 2: finite)
    margin = z.gather(-1, true).squeeze(-1) - other  # (..., B)
    loss = poly_tail_terms(margin, alpha, kind)  # (..., B)
    return finish_multiclass(loss, index, cw, sw, logits, normalization, reduction, validate)


def binary_poly_tailed_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    kind: str = "logit",
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    reduction: Reduction = "mean",
    validate: bool = True,
) -> Tensor:
    """Importance-weighted binary polynomially-tailed loss of the margin ``z = (2y - 1) f``, one logit ``f`` per example.

    ``l_i = l(z_i)`` as :func:`poly_tailed_loss`; ``w_i = class_weight[y_i] * sample_weight_i``. The
    conventions of :func:`~iwlab.functional.losses_focal.binary_focal_loss` hold: ``(..., B)`` is stacked
    models, so logits with two or more axes and a last axis of size 1 are refused (squeeze it).

    Args:
        logits: ``(..., B)`` float16, bfloat16, float32 or float64; leading dims are independent models.
        target: ``(..., B)`` hard labels in {0, 1}: any integer dtype, bool, or a float tensor of 0.0 / 1.0.
        alpha, kind: as :func:`poly_tailed_loss`.
        class_weight: ``(2,)`` or ``(..., 2)``: weights of class 0 and class 1, or None.
        sample_weight: ``(..., B)`` per-example weights, or None.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``, for ``reduction="mean"``.
        reduction: ``"none"`` -> ``(..., B)``; ``"sum"`` / ``"mean"`` -> ``(...)``.
        validate: run the data-dependent checks (forces a device sync); a label other than 0 or 1 raises,
            and so does an overflow (``"exp"`` far below ``z = 1``). Without, any label other than 1 is 0.

    Returns:
        The loss in the dtype of ``logits`` (float32 for float16/bfloat16 logits).

    Raises:
        TypeError: ``alpha`` not a real; otherwise as :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.
        ValueError: ``alpha`` NaN, infinite or too small; ``kind`` unknown; otherwise as
            :func:`~iwlab.functional.losses.weighted_binary_cross_entropy`.

    Source:
        Wang, Chatterji, Haque & Hashimoto (2022), "Is Importance Weighting Incompatible with
        Interpolating Classifiers?", ICLR, the binary polynomially-tailed loss ``l_{alpha,beta}(y f(x))``
        with ``beta = 1`` (section, equation number and page from memory, unverified).

    Example:
        >>> binary_poly_tailed_loss(torch.tensor([2.0, 2.0]), torch.tensor([1, 0]), alpha=1.0, kind="exp", reduction="none")
        tensor([ 0.5000, 20.0855])
    """  # noqa: E501
    alpha, kind = check_poly_args(alpha, kind)
    dtype, cw, sw = prepare_binary_args(logits, target, class_weight, sample_weight, normalization, reduction, validate)
    positive = (target == 1).expand(logits.shape)  # (..., B)
    f = logits.to(dtype)  # half logits run in float32
    loss = poly_tail_terms(torch.where(positive, f, -f), alpha, kind)  # (..., B) of the margin (2y - 1) f
    out = reduce_weighted(
        loss, scaled_weights(positive.long(), cw, sw, logits.shape), normalization, reduction, validate
    )
    if validate:
        # "exp" of a finite margin far below 1 overflows: the error, not inf (the terms are inf, so
        # reduce_weighted's own check, which looks for finite terms, lets it pass).
        check_overflow(out, lambda: torch.isfinite(logits) if reduction == "none" else torch.isfinite(logits).all(-1))
    return out
