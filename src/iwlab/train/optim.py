"""Per-member SGD and Adam over stacked parameters: pure functions, each member with its own lr and
weight decay.

Every parameter is stacked on a leading model axis ``M``; ``lr`` and ``weight_decay`` are ``(M,)``
tensors broadcast over it. The updates are those of ``torch.optim.SGD`` and ``torch.optim.Adam`` with
coupled weight decay (the gradient gains ``weight_decay * p``); the tests compare them with torch's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _bcast(v: Tensor, p: Tensor) -> Tensor:
    # (M,) -> (M, 1, ..., 1): one value per member, broadcast over that member's parameter
    return v.view(-1, *([1] * (p.dim() - 1)))


def sgd_update(
    params: list[Tensor], grads: list[Tensor], state: dict, lr: Tensor, weight_decay: Tensor, momentum: float
) -> None:
    """One in-place SGD step of every member (``torch.optim.SGD`` with ``dampening=0``, no Nesterov).

    Args:
        params: stacked parameters ``(M, ...)``, updated in place.
        grads: their gradients, same shapes.
        state: ``{"momentum": [buffers]}`` when ``momentum > 0`` (see :func:`init_state`), else ``{}``.
        lr: ``(M,)`` learning rates.
        weight_decay: ``(M,)`` coupled weight decay.
        momentum: the momentum factor (0: plain SGD).
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
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
