"""The stacked backend's kernel: M MLPs as batched matmuls with a hand-written backward.

Parameters are stacked on a leading model axis: weights ``(M, in, out)``, biases ``(M, out)``, in
layer order. A bias-free MLP (``MLP(bias=False)``) keeps the same layout with zero biases that never
move (their gradient is 0), so one kernel serves both. The backward is written out (no autograd), so one
step costs a handful of batched kernels whatever M is; the tests compare it with autograd through M ordinary modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def mlp_forward(
    params: list[Tensor], x: Tensor, masks: list[Tensor] | None, inv_keep: float
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Forward through stacked layers: logits ``(M, B, out)``, each layer's input and pre-activation.

    Args:
        params: ``[W_1, b_1, W_2, b_2, ...]`` with ``W (M, in, out)`` and ``b (M, out)``.
        x: ``(M, B, in)`` inputs, one batch per member.
        masks: per hidden layer, ``(M, B, h)`` dropout keep masks (0/1), or None.
        inv_keep: ``1 / (1 - p)``, the inverted-dropout scale.
    """
    n_layers = len(params) // 2
    inputs, pre = [], []
    h = x
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        z = torch.baddbmm(b.unsqueeze(1), h, w)  # (M, B, out)
        inputs.append(h)
        if i < n_layers - 1:
            pre.append(z)
            h = z.clamp_min(0.0)
            if masks is not None:
                h = h * masks[i] * inv_keep
        else:
            h = z
    return h, inputs, pre


def ce_logit_grads(logits: Tensor, y: Tensor, gw: Tensor, binary: bool) -> Tensor:
    """``d(sum_i gw_i CE_i) / d logits``, ``(M, B, out)``: ``sigmoid(z) - y`` (binary) or ``softmax - onehot``."""
    if binary:
        return ((torch.sigmoid(logits.squeeze(-1)) - y) * gw).unsqueeze(-1)  # (M, B, 1)
    p = torch.softmax(logits, dim=-1)  # (M, B, C)
    p = p - nn.functional.one_hot(y, p.shape[-1]).to(p.dtype)
    return p * gw.unsqueeze(-1)


#: ``fn(logits (M, B, out), y (M, B), gw (M, B), x (M, B, in), params) -> d loss / d logits (M, B, out)``.
LogitGrads = Callable[[Tensor, Tensor, Tensor, Tensor, list[Tensor]], Tensor]


def mlp_grads(
    params: list[Tensor],
    x: Tensor,
    y: Tensor,
    gw: Tensor,
    masks: list[Tensor] | None,
    inv_keep: float,
    binary: bool,
    bias: bool = True,
    logit_grads: LogitGrads | None = None,
) -> list[Tensor]:
    """Gradients of ``sum_i gw_i * l_i`` for every member, in the order of ``params``.

    Args:
        params, x, masks, inv_keep: as :func:`mlp_forward`.
        y: ``(M, B)`` labels: float 0/1 for a binary model (one logit), int64 class indices otherwise.
        gw: ``(M, B)`` per-example gradient weights, the loss normalization already applied.
        binary: one logit with the logistic loss, else softmax cross-entropy.
        bias: False for a bias-free MLP: the (zero) biases get zero gradients.
        logit_grads: the members' losses (see :mod:`iwlab.train.member_losses`); None: cross-entropy.
    """
    logits, inputs, pre = mlp_forward(params, x, masks, inv_keep)
    if logit_grads is None:
        g = ce_logit_grads(logits, y, gw, binary)
    else:
        g = logit_grads(logits, y, gw, x, params)
    n_layers = len(params) // 2
    grads: list[Tensor] = [torch.empty(0)] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = torch.bmm(inputs[i].transpose(1, 2), g)  # (M, in, out)
        grads[2 * i + 1] = g.sum(1) if bias else torch.zeros_like(params[2 * i + 1])  # (M, out)
        if i > 0:
            g = torch.bmm(g, params[2 * i].transpose(1, 2))  # (M, B, in)
            if masks is not None:
                g = g * masks[i - 1] * inv_keep
            g = g * (pre[i - 1] > 0)
    return grads


def stack_mlps(modules: list[nn.Module], device: torch.device) -> list[Tensor]:
    """M :class:`~iwlab.models.MLP` modules as stacked ``[W_1 (M, in, out), b_1 (M, out), ...]`` on ``device``."""
    out = []
    for li in range(len(modules[0].layers)):
        w = torch.stack([m.layers[li].weight.detach().t() for m in modules])  # (M, in, out)
        if modules[0].layers[li].bias is None:  # bias-free MLP: zero biases that never move
            b = torch.zeros(len(modules), w.shape[-1], dtype=w.dtype)
        else:
            b = torch.stack([m.layers[li].bias.detach() for m in modules])  # (M, out)
        out += [w.contiguous().to(device), b.to(device)]
    return out
