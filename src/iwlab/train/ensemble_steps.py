"""The ensemble trainer's steps: plain SGD on the stacked backend, the general step, minibatch and full-batch
epochs, the per-epoch learning-rate factor and training-batch transform they apply, the func backend's private
RNG stream, and the divergence hooks (finite, freeze)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from iwlab.functional.checks import check_real
from iwlab.train import func_backend
from iwlab.train.batches import member_shuffles
from iwlab.train.compiled import compile_step
from iwlab.train.fit import global_rng_state, set_global_rng_state
from iwlab.train.members import ensemble_rng_seed
from iwlab.train.optim import adam_update, sgd_update
from iwlab.train.stacked import mlp_grads
from iwlab.train.stacked_fused import compiled_sgd_steps, steps_per_call

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
    batch_size: int | None
    dropout: float
    device: torch.device
    generators: list[torch.Generator]
    lr_schedule: Callable[[int], float] | None
    transform: Callable[[Tensor, torch.Generator], Tensor] | None
    _transform_gen: torch.Generator | None
    _step: Callable
    _logit_grads: Callable | None
    _func_step: Callable | None
    _fused: Callable | None
    step_options: dict[str, Any]
    _decay: Tensor | None

    members: Any
    _rng: dict[str, Tensor] | None

    _param_list: Callable[[], list[Tensor]]  # from EnsembleViews

    def _init_steps(self, compile: bool) -> None:
        """The step functions (the settings' compiled or eager kernels) and the trainer's private RNG streams."""
        stacked = self.backend == "stacked"
        self._step = compile_step(mlp_grads, "the stacked step") if compile and stacked else mlp_grads
        # compile: plain-SGD epochs run their full batches K steps per compiled call (iwlab.train.stacked_fused)
        self._fused = compiled_sgd_steps() if compile and stacked else None
        self._func_step = None
        if not stacked:  # built once, with its options (precision, layout, conv form, compile); per-member losses
            # or a reweight hook pull d loss / d logits back through the forward (func_backend.logit_grads_step)
            opts = {**self.step_options, "device": self.device}
            self._func_step = func_backend.make_step(self.template, self.binary, self._logit_grads, **opts)
        # the func backend's private RNG stream (dropout masks), see iwlab.train.func_backend
        self._rng = None if stacked else self._initial_rng()
        # the transform's own stream: apart from the members' shuffles and the dropout stream, so adding a
        # transform leaves both as they were; + 1 keeps it distinct from the dropout stream's seed
        self._transform_gen = None
        if self.transform is not None:
            self._transform_gen = torch.Generator().manual_seed(ensemble_rng_seed([m.seed for m in self.members]) + 1)

    # -- the func backend's private RNG stream ---------------------------------------------------
    def _initial_rng(self) -> dict[str, Tensor]:
        seed = ensemble_rng_seed([m.seed for m in self.members])
        state = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.Generator(device=self.device).manual_seed(seed).get_state()
        return state

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Swap the trainer's RNG stream in for the global one; keep its advance, restore the caller's."""
        if self._rng is None:
            yield
            return
        outer = global_rng_state(self.device)
        set_global_rng_state(self._rng, self.device)
        try:
            yield
        finally:
            self._rng = global_rng_state(self.device)
            set_global_rng_state(outer, self.device)

    def finite(self) -> Tensor:
        """``(M,)`` bool: which members' parameters are all finite."""
        return torch.stack([torch.isfinite(p.reshape(self.M, -1)).all(1) for p in self._param_list()]).all(0)

    def freeze(self, members: Tensor) -> None:
        """A diverged member keeps its NaNs but stops stepping (live lr 0, so ``lr_schedule``'s factor keeps it at
        0); the others go on. The configured lr stays in ``members`` (the settings record)."""
        self.lr[members.to(self.device)] = 0.0

    def _epoch_lr(self, epoch: int) -> Tensor:
        """``(M,)`` the learning rates of ``epoch``: the live lr (0 for frozen members) times ``lr_schedule(epoch)``.

        The product is taken in float64 and rounded once to the parameters' dtype; a factor that is not finite and
        >= 0, or that turns a member's nonzero lr into 0 or inf in that dtype, is refused (never clamped).
        """
        if self.lr_schedule is None:
            return self.lr  # today's numbers, bit for bit
        f = check_real(self.lr_schedule(epoch), f"lr_schedule({epoch})")
        if not (math.isfinite(f) and f >= 0):
            raise ValueError(f"lr_schedule must return a finite factor >= 0, got {f} for epoch {epoch}")
        lr = (self.lr.double() * f).to(self.lr.dtype)  # (M,) frozen members: 0 * f = 0
        lost = ((lr == 0) & (self.lr != 0) & (f != 0)) | torch.isinf(lr)
        if bool(lost.any()):
            i = int(lost.nonzero()[0])
            raise ValueError(
                f"lr_schedule factor {f:g} of epoch {epoch} turns member {i}'s lr {float(self.lr[i]):g} "
                f"into {float(lr[i]):g} in {self.lr.dtype} (the parameters' dtype)"
            )
        return lr

    def _augment(self, xb: Tensor) -> Tensor:
        """The training batch ``xb`` (M, B, ...) through ``transform`` with the trainer's generator (or as is)."""
        if self.transform is None:
            return xb
        # a copy: a transform that works in place must not reach the caller's data (the full-batch path passes
        # a view of it)
        out = self.transform(xb.clone(), self._transform_gen)
        if not isinstance(out, Tensor) or (out.shape, out.dtype, out.device) != (xb.shape, xb.dtype, xb.device):
            got = f"{tuple(out.shape)} {out.dtype} on {out.device}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"transform must return the batch's shape, dtype and device ({tuple(xb.shape)} {xb.dtype} on "
                f"{xb.device}), got {got}"
            )
        return out

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
        self,
        xb: Tensor,
        yb: Tensor,
        gw: Tensor,
        stacked_masks: list[Tensor] | None,
        s: int,
        inv_keep: float,
        lr: Tensor,
    ) -> None:
        if self.backend == "stacked":
            mk = None
            if stacked_masks is not None:
                mk = [m[:, s, : xb.shape[1]] for m in stacked_masks]  # (M, B, h)
            grads = self._step(self.params, xb, yb, gw, mk, inv_keep, self.binary, self.bias, self._logit_grads)
        else:
            assert self._func_step is not None  # built with its options by _init_steps
            self.template.train()  # batch statistics and running-stat updates, dropout on
            grad_dict, self.buffers = self._func_step(self.params, self.buffers, xb, yb, gw)
            grads = list(grad_dict.values())
        with torch.no_grad():
            if self.optimizer == "sgd":
                # _decay is None when no member decays (set once per epoch: no device sync per step)
                wd = None if self._decay is None else self.weight_decay
                sgd_update(self._param_list(), grads, self.opt_state, lr, wd, self.momentum)
            else:
                adam_update(self._param_list(), grads, self.opt_state, lr, self.weight_decay, self.betas, self.eps)

    def _fused_full_batches(
        self,
        x_epoch: Tensor,
        y_epoch: Tensor,
        w_epoch: Tensor,
        lr: Tensor,
        stacked_masks: list[Tensor] | None,
        inv_keep: float,
        n_full: int,
        tiny: float,
    ) -> int:
        """The epoch's ``n_full`` full batches, K steps per compiled call (:mod:`iwlab.train.stacked_fused`); returns
        ``n_full``, the step the per-step loop goes on from (a last, partial batch)."""
        if n_full == 0:
            return 0
        bsz = x_epoch.shape[1] if self.batch_size is None else self.batch_size
        k = steps_per_call(n_full)
        span = n_full * bsz
        if self.normalization == "batch_size":
            gw = w_epoch[:, :span] / bsz  # (M, span); w_epoch already carries lr
        else:  # as the per-step path: each batch's weights over their sum, then lr
            wb = w_epoch[:, :span].reshape(self.M, n_full, bsz)  # (M, steps, B)
            gw = (wb / wb.sum(2, keepdim=True).clamp_min(tiny) * lr.view(-1, 1, 1)).reshape(self.M, span)
        for c in range(n_full // k):
            sl = slice(c * k * bsz, (c + 1) * k * bsz)
            mk = [m[:, c * k : (c + 1) * k, :bsz] for m in stacked_masks] if stacked_masks else None  # (M, k, B, h)
            self._fused(
                self.params, x_epoch[:, sl], y_epoch[:, sl], gw[:, sl], self._decay, mk, inv_keep, self.binary,
                self.bias, k,
            )  # fmt: skip
        return n_full

    def _full_batch_epoch(self, d: _EpochData, epoch: int) -> None:
        """``steps_per_epoch`` steps of full-batch gradient descent: no shuffling, every step on all N examples."""
        n = d.y.shape[-1]
        x = d.x if d.per_member else d.x.unsqueeze(0).expand(self.M, *d.x.shape)  # (M, N, in)
        y = d.y if d.per_member else d.y.unsqueeze(0).expand(self.M, n)  # (M, N)
        lr = self._epoch_lr(epoch)  # (M,)
        decay = 1.0 - lr * self.weight_decay  # (M,)
        self._decay = decay if bool((self.weight_decay > 0).any()) else None
        # (M, N): the weights are float32 (rounded once, as everywhere in the trainer); a float64 model steps
        # with those values in float64 arithmetic
        w = d.weights_at(epoch).to(self.lr.dtype)
        if self.normalization == "batch_size":
            gw = w / n  # (M, N)
        else:
            # as the minibatch path: any positive sum divides exactly, an all-zero member contributes 0
            tiny = torch.finfo(w.dtype).smallest_normal * torch.finfo(w.dtype).eps
            gw = w / w.sum(1, keepdim=True).clamp_min(tiny)
        fast = self.optimizer == "sgd" and not self.momentum
        if fast:
            gw = gw * lr.unsqueeze(1)  # fold lr in, as the minibatch fast path does
        for _ in range(self.steps_per_epoch):
            if fast:
                self._fast_sgd_step(self._augment(x), y, gw, None, 0, 1.0)
            else:
                self._train_step(self._augment(x), y, gw, None, 0, 1.0, lr)

    def _minibatch_epoch(self, d: _EpochData, epoch: int) -> None:
        """One epoch of the per-member random protocol (shuffles, dropout masks) into the M-model step."""
        x, per_member = d.x, d.per_member
        n, bsz = d.y.shape[-1], self.batch_size
        assert bsz is not None, "minibatch epochs need a batch size"
        rows = torch.arange(self.M, device=self.device).unsqueeze(1)  # (M, 1) for per-member gathers
        n_steps = -(-n // bsz)
        inv_keep = 1.0 / (1.0 - self.dropout) if self.dropout else 1.0
        lr = self._epoch_lr(epoch)  # (M,)
        decay = 1.0 - lr * self.weight_decay  # (M,)
        self._decay = decay if bool((self.weight_decay > 0).any()) else None
        # any positive weight sum is >= the smallest subnormal, so clamping there divides every positive
        # sum exactly and makes an all-zero batch contribute 0 (rather than NaN)
        tiny = torch.finfo(d.w.dtype).smallest_normal * torch.finfo(d.w.dtype).eps
        hidden = self.template.hidden if self.dropout else ()
        perm, masks = member_shuffles(
            self.generators, n, n_steps=n_steps, batch_size=bsz, hidden=hidden, dropout=self.dropout
        )
        perm = perm.to(self.device)  # (M, N)
        stacked_masks = [m.to(self.device) for m in masks] if masks else None  # per hidden layer (M, steps, B, h)
        w_epoch = d.weights_at(epoch).gather(1, perm)  # (M, N)
        y_epoch = d.y.gather(1, perm) if per_member else d.y[perm]  # (M, N)
        fast = self.backend == "stacked" and self.optimizer == "sgd" and not self.momentum
        # (M, N, ...): one gather per epoch, slices per step
        x_epoch = (x[rows, perm] if per_member else x[perm]) if fast else None
        if fast and self.normalization == "batch_size":
            # fold lr into the per-example gradient weights: p -= grad(sum_i lr*w_i/B * l_i)
            w_epoch = w_epoch * lr.unsqueeze(1)
        first = 0  # the first step the per-step loop below takes
        if fast and self._fused is not None and self._logit_grads is None and self.transform is None:
            assert x_epoch is not None
            first = self._fused_full_batches(x_epoch, y_epoch, w_epoch, lr, stacked_masks, inv_keep, n // bsz, tiny)
        with self._own_rng():  # func backend: dropout masks from the trainer's own stream
            for s in range(first, n_steps):
                sl = slice(s * bsz, (s + 1) * bsz)
                wb = w_epoch[:, sl]
                if self.normalization == "batch_size":
                    gw = wb / wb.shape[1]
                else:
                    gw = wb / wb.sum(1, keepdim=True).clamp_min(tiny)
                    if fast:
                        gw = gw * lr.unsqueeze(1)
                # the transform sees each step's batch, on every path, so its draws follow the same order
                if fast:
                    xb = self._augment(x_epoch[:, sl])  # (M, B, ...)
                    self._fast_sgd_step(xb, y_epoch[:, sl], gw, stacked_masks, s, inv_keep)
                else:
                    xb = self._augment(x[rows, perm[:, sl]] if per_member else x[perm[:, sl]])  # (M, B, ...)
                    self._train_step(xb, y_epoch[:, sl], gw, stacked_masks, s, inv_keep, lr)
