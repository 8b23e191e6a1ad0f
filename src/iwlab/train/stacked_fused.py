"""The stacked backend's compiled multi-step kernel: K plain-SGD steps of M MLPs in one ``torch.compile`` graph.

With ``compile=True`` a minibatch epoch of plain SGD (no momentum, cross-entropy, no ``transform``) runs its full
batches K at a time through :func:`sgd_steps`, compiled once per trainer. Two things make it fast where the
per-step path (:func:`~iwlab.train.stacked.mlp_grads` under ``torch.compile``) is not:

* **K steps per call.** The synthetic grid steps M tiny models (2 -> 64 -> 1, batch 8) about 1.3 million times
  per run; what a step costs is dispatch (Python, guards, a dozen kernel launches and the update), not
  arithmetic. One call now covers K steps and the parameter update, so that cost is paid once per K steps.
* **Thin layers as broadcasts.** A layer with at most :data:`THIN` inputs or outputs (the 2-D input layer, the
  one-logit output layer) is written as a broadcast product and a sum instead of a batched GEMM, so inductor fuses
  it with its neighbours into one loop instead of calling a small-matrix GEMM per layer and step.

Measured on the 2-core dev CPU, one thread, M = 54 MLPs (2 -> 64 -> 1), batch 8: ~104 us per step on the
per-step compiled path, ~16 us here with K = 8 (``benchmarks/bench_ensemble.py`` has the side-by-side numbers).

The arithmetic is the per-step path's (same gradients, same update ``p <- p * (1 - lr wd) - grad``, same order
of steps), but summation order differs inside the fused loops, so results agree with the eager path to
float round-off, not bitwise (``tests/train/test_stacked_fused.py`` states the tolerance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from iwlab.train.compiled import compile_step
from iwlab.train.stacked import ce_logit_grads

#: A layer with at most this many inputs or outputs is computed as a broadcast and a sum (fused by inductor).
THIN = 4
#: Most steps fused into one compiled call; more makes the graph (and its compile time) grow for little gain.
MAX_STEPS_PER_CALL = 8


def _thin(w: Tensor) -> bool:
    return min(w.shape[1], w.shape[2]) <= THIN


def _linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``h @ w + b``: ``h (M, B, in)``, ``w (M, in, out)``, ``b (M, out)`` -> ``(M, B, out)``."""
    if _thin(w):
        return b.unsqueeze(1) + (h.unsqueeze(-1) * w.unsqueeze(1)).sum(2)  # (M, B, in, out) summed over in
    return torch.baddbmm(b.unsqueeze(1), h, w)


def _weight_grad(h: Tensor, g: Tensor, w: Tensor) -> Tensor:
    """``h^T g``: ``h (M, B, in)``, ``g (M, B, out)`` -> ``(M, in, out)``."""
    if _thin(w):
        return (h.unsqueeze(-1) * g.unsqueeze(2)).sum(1)  # (M, B, in, out) summed over B
    return torch.bmm(h.transpose(1, 2), g)


def _input_grad(g: Tensor, w: Tensor) -> Tensor:
    """``g w^T``: ``g (M, B, out)``, ``w (M, in, out)`` -> ``(M, B, in)``."""
    if _thin(w):
        return (g.unsqueeze(2) * w.unsqueeze(1)).sum(-1)  # (M, B, in, out) summed over out
    return torch.bmm(g, w.transpose(1, 2))


def sgd_steps(
    params: list[Tensor],
    x: Tensor,
    y: Tensor,
    gw: Tensor,
    decay: Tensor | None,
    masks: list[Tensor] | None,
    inv_keep: float,
    binary: bool,
    bias: bool,
    k: int,
) -> list[Tensor]:
    """``k`` consecutive plain-SGD steps of M stacked MLPs; returns the new parameters (the inputs are untouched).

    Args:
        params: ``[W_1 (M, in, out), b_1 (M, out), ...]`` (:func:`~iwlab.train.stacked.stack_mlps`).
        x: ``(M, k * B, in)`` the k batches back to back, each member's own.
        y: ``(M, k * B)`` labels: float 0/1 (binary) or int64 classes.
        gw: ``(M, k * B)`` per-example gradient weights with the learning rate folded in (``lr * w_i / B``).
        decay: ``(M,)`` ``1 - lr * weight_decay``, or None when no member decays.
        masks: per hidden layer ``(M, k, B, h)`` dropout keep masks (0/1), or None.
        inv_keep: ``1 / (1 - p)``.
        binary: one logit with the logistic loss, else softmax cross-entropy.
        bias: False for a bias-free MLP (its zero biases get zero gradients).
        k: the number of steps.

    Returns:
        The parameters after the k steps, in the order of ``params``.
    """
    n_layers = len(params) // 2
    bsz = x.shape[1] // k
    for s in range(k):
        sl = slice(s * bsz, (s + 1) * bsz)
        xb, yb, gb = x[:, sl], y[:, sl], gw[:, sl]  # (M, B, in), (M, B), (M, B)
        inputs, pre = [], []
        h = xb
        for i in range(n_layers):
            z = _linear(h, params[2 * i], params[2 * i + 1])  # (M, B, out)
            inputs.append(h)
            if i < n_layers - 1:
                pre.append(z)
                h = z.clamp_min(0.0)
                if masks is not None:
                    h = h * masks[i][:, s] * inv_keep
            else:
                h = z
        g = ce_logit_grads(h, yb, gb, binary)  # (M, B, out): d (sum_i lr w_i / B * l_i) / d logits
        grads: list[Tensor] = [torch.empty(0)] * len(params)
        for i in reversed(range(n_layers)):
            w = params[2 * i]
            grads[2 * i] = _weight_grad(inputs[i], g, w)  # (M, in, out)
            grads[2 * i + 1] = g.sum(1) if bias else torch.zeros_like(params[2 * i + 1])  # (M, out)
            if i > 0:
                g = _input_grad(g, w)  # (M, B, in)
                if masks is not None:
                    g = g * masks[i - 1][:, s] * inv_keep
                g = g * (pre[i - 1] > 0)
        if decay is None:
            params = [p - d for p, d in zip(params, grads, strict=True)]
        else:  # torch.optim.SGD's coupled decay: the gradient is taken at the undecayed parameters
            params = [p * decay.view(-1, *([1] * (p.dim() - 1))) - d for p, d in zip(params, grads, strict=True)]
    return params


def _sgd_steps_in_place(params: list[Tensor], *args: Any) -> None:
    """:func:`sgd_steps` (same arguments), writing the new parameters into ``params``."""
    new = sgd_steps(params, *args)
    for p, n in zip(params, new, strict=True):
        p.copy_(n)  # inside the graph: inductor writes the result straight into the trainer's tensors


def compiled_sgd_steps() -> Callable[..., None]:
    """``fn(params, x, y, gw, decay, masks, inv_keep, binary, bias, k)``: :func:`sgd_steps` compiled, updating
    ``params`` in place. Compiles on the first call (a few seconds; ~0.2 s for a graph compiled before), again
    only for a new shape or setting; each call of this function compiles its own copy
    (:func:`~iwlab.train.compiled.compile_step`: no shared recompile limit across trainers).

    Raises:
        RuntimeError: (from the call) torch.compile failed; one line, saying to run with ``compile=False``.
    """
    return compile_step(_sgd_steps_in_place, "the fused SGD steps")


def steps_per_call(n_full: int) -> int:
    """The largest ``k <= MAX_STEPS_PER_CALL`` that divides ``n_full`` full batches (one compiled shape per epoch).

    Example:
        >>> steps_per_call(128), steps_per_call(125), steps_per_call(7)
        (8, 5, 7)
    """
    return max(k for k in range(1, min(MAX_STEPS_PER_CALL, max(n_full, 1)) + 1) if n_full % k == 0)
