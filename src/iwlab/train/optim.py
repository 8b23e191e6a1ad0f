"""Per-member SGD and Adam over stacked parameters: pure functions, each member with its own lr and
weight decay; and the per-epoch learning-rate factor of the LDAM-DRW recipe (:func:`step_warmup_schedule`).

Every parameter is stacked on a leading model axis ``M``; ``lr`` and ``weight_decay`` are ``(M,)``
tensors broadcast over it. The updates are those of ``torch.optim.SGD`` and ``torch.optim.Adam`` with
coupled weight decay (the gradient gains ``weight_decay * p``); the tests compare them with torch's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from iwlab.functional.checks import check_int, check_real


def _bcast(v: Tensor, p: Tensor) -> Tensor:
    # (M,) -> (M, 1, ..., 1): one value per member, broadcast over that member's parameter
    return v.view(-1, *([1] * (p.dim() - 1)))


def sgd_update(
    params: list[Tensor], grads: list[Tensor], state: dict, lr: Tensor, weight_decay: Tensor | None, momentum: float
) -> None:
    """One in-place SGD step of every member (``torch.optim.SGD`` with ``dampening=0``, no Nesterov).

    Args:
        params: stacked parameters ``(M, ...)``, updated in place.
        grads: their gradients, same shapes.
        state: ``{"momentum": [buffers]}`` when ``momentum > 0`` (see :func:`init_state`), else ``{}``.
        lr: ``(M,)`` learning rates.
        weight_decay: ``(M,)`` coupled weight decay, or None when every member's is 0: the same update for
            finite parameters (``g + 0 * p`` is ``g``) without two passes over them, which dominate the step of a
            big model stacked M times.
        momentum: the momentum factor (0: plain SGD).
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if weight_decay is not None:
            g = g + _bcast(weight_decay, p) * p  # coupled decay, as torch.optim.SGD(weight_decay=...)
        if momentum:
            buf = state["momentum"][i]
            buf.mul_(momentum).add_(g)
            g = buf
        p.sub_(_bcast(lr, p) * g)


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: dict,
    lr: Tensor,
    weight_decay: Tensor,
    betas: tuple[float, float],
    eps: float,
) -> None:
    """One in-place Adam step of every member (Kingma & Ba 2015, Alg. 1; ``torch.optim.Adam``).

    Args:
        params, grads, lr, weight_decay: as :func:`sgd_update`.
        state: ``{"step": int, "exp_avg": [...], "exp_avg_sq": [...]}`` (see :func:`init_state`).
        betas: ``(beta1, beta2)``.
        eps: added to the denominator.
    """
    b1, b2 = betas
    state["step"] += 1
    t = state["step"]
    c1, c2 = 1 - b1**t, 1 - b2**t
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = g + _bcast(weight_decay, p) * p  # as torch.optim.Adam(weight_decay=...)
        m, v = state["exp_avg"][i], state["exp_avg_sq"][i]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / c2).sqrt_().add_(eps)
        p.sub_(_bcast(lr, p) / c1 * m / denom)


def init_state(params: list[Tensor], optimizer: str, momentum: float) -> dict[str, Any]:
    """Fresh optimizer state for :func:`sgd_update` (``optimizer="sgd"``) or :func:`adam_update`.

    Example:
        >>> init_state([torch.zeros(2, 3)], "adam", 0.0)["exp_avg"][0].shape
        torch.Size([2, 3])
    """
    if optimizer == "sgd":
        return {"momentum": [torch.zeros_like(p) for p in params]} if momentum else {}
    return {
        "step": 0,
        "exp_avg": [torch.zeros_like(p) for p in params],
        "exp_avg_sq": [torch.zeros_like(p) for p in params],
    }


class StepWarmup:
    """The factor function of :func:`step_warmup_schedule`; its ``repr`` shows the parameters (settings records)."""

    def __init__(self, warmup_epochs: int, milestones: tuple[int, ...], gamma: float) -> None:
        self.warmup_epochs, self.milestones, self.gamma = warmup_epochs, milestones, gamma

    def __call__(self, epoch: int) -> float:
        """The factor of 1-based ``epoch``: ``epoch / warmup_epochs`` while warming up, else ``gamma ** k``, k the
        milestones passed (``epoch > m``)."""
        epoch = check_int(epoch, "epoch", minimum=1)
        if epoch <= self.warmup_epochs:
            return epoch / self.warmup_epochs
        return self.gamma ** sum(epoch > m for m in self.milestones)

    def __repr__(self) -> str:
        return (
            f"step_warmup_schedule(warmup_epochs={self.warmup_epochs}, milestones={self.milestones}, "
            f"gamma={self.gamma!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepWarmup) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def step_warmup_schedule(
    warmup_epochs: int = 5, milestones: Sequence[int] = (160, 180), gamma: float = 0.01
) -> StepWarmup:
    """The learning-rate factor per epoch of the LDAM-DRW CIFAR recipe: linear warm-up, then step decays.

    With ``e0 = epoch - 1`` (0-based): ``(e0 + 1) / warmup_epochs`` for ``e0 < warmup_epochs``, else ``gamma ** k``
    with ``k`` the number of milestones ``m`` with ``e0 >= m``. The defaults give 0.2, 0.4, ..., 1.0 in epochs 1-5,
    1 up to epoch 160, 0.01 in epochs 161-180 and 1e-4 from epoch 181 (of 200). Pass it as
    ``EnsembleTrainer(..., lr_schedule=step_warmup_schedule())``.

    Source: Cao et al. (2019), "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", Sec. 4.2
    (CIFAR: lr 0.1, decayed by 0.01 at epochs 160 and 180, linear warm-up over the first 5 epochs); code
    kaidic/LDAM-DRW ``cifar_train.py``, ``adjust_learning_rate``.

    Args:
        warmup_epochs: epochs of linear warm-up (>= 0; 0: none).
        milestones: strictly increasing epochs (>= 1, >= ``warmup_epochs``) after which the factor is multiplied by
            ``gamma``.
        gamma: the decay per milestone, finite and >= 0.

    Returns:
        A callable ``fn(epoch: int) -> float`` (epoch >= 1) whose ``repr`` names these parameters, so a
        checkpoint's settings record refuses a resume with other ones.

    Raises:
        TypeError: a non-integer ``warmup_epochs`` or milestone, a non-real ``gamma``.
        ValueError: one line naming the argument: ``warmup_epochs < 0``, milestones not increasing, below 1 or
            inside the warm-up, ``gamma`` not finite and >= 0.

    Example:
        >>> f = step_warmup_schedule()
        >>> [f(e) for e in (1, 5, 6, 160, 161, 180, 181, 200)]
        [0.2, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001, 0.0001]
        >>> f
        step_warmup_schedule(warmup_epochs=5, milestones=(160, 180), gamma=0.01)
    """
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)
    if isinstance(milestones, str) or not isinstance(milestones, Sequence):
        raise TypeError(f"milestones must be a sequence of epochs, got {milestones!r}")
    ms = tuple(check_int(m, "every milestone", minimum=1) for m in milestones)
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)) or (ms and ms[0] < warmup_epochs):
        raise ValueError(f"milestones must increase strictly from warmup_epochs={warmup_epochs} on, got {ms}")
    gamma = check_real(gamma, "gamma")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
    return StepWarmup(warmup_epochs, ms, gamma)
