"""The ensemble trainer's steps: plain SGD on the stacked backend, the general step, and full-batch epochs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from iwlab.train import func_backend
from iwlab.train.optim import adam_update, sgd_update

Callback = Callable[[Any, int], dict[str, Tensor]]


@dataclass
class _EpochData:
    """What every epoch of one fit reads: the data on the device and the per-example weights."""

    x: Tensor  # (N, ...) or (M, N, ...)
    y: Tensor  # (N,) or (M, N): float 0/1 for a binary model, int64 otherwise
    w: Tensor  # (M, N) float32 per-example weights
    per_member: bool
    callbacks: Sequence[Callback]
    w_late: Tensor | None = None  # (M, N) the weights after each member's deferred re-weighting epoch
    switch: Tensor | None = None  # (M, 1) int64: that epoch (a huge number for members without DRW)

    def weights_at(self, epoch: int) -> Tensor:
        """``(M, N)`` the per-example weights of ``epoch``: ``w``, or ``w_late`` from a member's DRW epoch on."""
        if self.w_late is None or self.switch is None:
            return self.w
        return torch.where(self.switch <= epoch, self.w_late, self.w)


class EnsembleSteps:
    """Step methods of :class:`~iwlab.train.ensemble.EnsembleTrainer` (its base class)."""

    M: int
    params: Any
    buffers: dict[str, Tensor]
    backend: str
    template: Any
    binary: bool
    bias: bool
    optimizer: str
    opt_state: Any
    lr: Tensor
    weight_decay: Tensor
    momentum: float
    betas: tuple[float, float]
    eps: float
    normalization: str
    steps_per_epoch: int
    _step: Callable
    _logit_grads: Callable | None
    _func_step: Callable | None
    _decay: Tensor | None

    _param_list: Callable[[], list[Tensor]]  # from EnsembleViews

    def _fast_sgd_step(
        self, xb: Tensor, yb: Tensor, gw: Tensor, stacked_masks: list[Tensor] | None, s: int, inv_keep: float
    ) -> None:
        # plain SGD on the stacked backend: gw already carries lr, so the update is
        # p <- p * (1 - lr * wd) - grad, the same as torch.optim.SGD(weight_decay=wd)
        mk = None
        if stacked_masks is not None:
            mk = [m[:, s, : xb.shape[1]] for m in stacked_masks]  # (M, B, h)
        grads = self._step(self.params, xb, yb, gw, mk, inv_keep, self.binary, self.bias, self._logit_grads)
        with torch.no_grad():
            if self._decay is not None:
                torch._foreach_mul_(self.params, [self._decay.view(-1, *([1] * (p.dim() - 1))) for p in self.params])
            torch._foreach_sub_(self.params, grads)

    def _train_step(
        self, xb: Tensor, yb: Tensor, gw: Tensor, stacked_masks: list[Tensor] | None, s: int, inv_keep: float
    ) -> None:
        if self.backend == "stacked":
            mk = None
            if stacked_masks is not None:
                mk = [m[:, s, : xb.shape[1]] for m in stacked_masks]  # (M, B, h)
            grads = self._step(self.params, xb, yb, gw, mk, inv_keep, self.binary, self.bias, self._logit_grads)
        else:
            if self._func_step is None:
                if self._logit_grads is None:
                    self._func_step = func_backend.grads_fn(self.template, self.binary)
                else:  # per-member losses or a reweight hook: pull d loss / d logits back through the forward
                    self._func_step = func_backend.logit_grads_step(self.template, self._logit_grads)
            self.template.train()  # batch statistics and running-stat updates, dropout on
            grad_dict, self.buffers = self._func_step(self.params, self.buffers, xb, yb, gw)
            grads = list(grad_dict.values())
        with torch.no_grad():
            if self.optimizer == "sgd":
                sgd_update(self._param_list(), grads, self.opt_state, self.lr, self.weight_decay, self.momentum)
            else:
                adam_update(self._param_list(), grads, self.opt_state, self.lr, self.weight_decay, self.betas, self.eps)

    def _full_batch_epoch(self, d: _EpochData, epoch: int) -> None:
        """``steps_per_epoch`` steps of full-batch gradient descent: no shuffling, every step on all N examples."""
        n = d.y.shape[-1]
        x = d.x if d.per_member else d.x.unsqueeze(0).expand(self.M, *d.x.shape)  # (M, N, in)
        y = d.y if d.per_member else d.y.unsqueeze(0).expand(self.M, n)  # (M, N)
        decay = 1.0 - self.lr * self.weight_decay  # (M,)
        self._decay = decay if bool((self.weight_decay > 0).any()) else None
        w = d.weights_at(epoch).to(self.lr.dtype)  # (M, N): float64 models step with float64 weights
        if self.normalization == "batch_size":
            gw = w / n  # (M, N)
        else:
            # as the minibatch path: any positive sum divides exactly, an all-zero member contributes 0
            tiny = torch.finfo(w.dtype).smallest_normal * torch.finfo(w.dtype).eps
            gw = w / w.sum(1, keepdim=True).clamp_min(tiny)
        fast = self.optimizer == "sgd" and not self.momentum
        if fast:
            gw = gw * self.lr.unsqueeze(1)  # fold lr in, as the minibatch fast path does
        for _ in range(self.steps_per_epoch):
            if fast:
                self._fast_sgd_step(x, y, gw, None, 0, 1.0)
            else:
                self._train_step(x, y, gw, None, 0, 1.0)
