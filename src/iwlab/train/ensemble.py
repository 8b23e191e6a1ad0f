"""Train M independent models at once: one step advances every model of a weights x seeds grid.

Each member has its own generator (init, shuffling, dropout), its own class weights, lr and L2. The
parameters of all members are stacked on a leading model axis ``M``, so one batched kernel does the
work of M small ones. Two backends sit behind the one API:

* ``"stacked"``, for :class:`~iwlab.models.MLP` (logistic regression and MLPs): batched matmuls with a
  hand-written backward, optionally under ``torch.compile``. This is the fast path for the synthetic
  experiments, where each model is tiny and per-call overhead is everything.
* ``"func"``, for any ``nn.Module`` (conv nets, ResNets with or without BatchNorm):
  ``torch.func.vmap(grad(...))`` over ``functional_call``. Buffers are stacked per member like the
  parameters (``(M, ...)`` each, ``num_batches_tracked`` included). A training step runs the module in
  train mode on each member's own buffers and keeps what its forward wrote into them, so BatchNorm
  normalizes with batch statistics and updates each member's ``running_mean``/``running_var`` (and
  ``num_batches_tracked``) exactly as one ``nn.Module`` in train mode does; :meth:`EnsembleTrainer.logits`
  runs it in eval mode (running statistics, no dropout). BatchNorm with ``momentum=None`` (a cumulative
  average, which reads ``num_batches_tracked`` as a Python number) cannot run under ``vmap`` and is
  refused.

Dropout in the func backend (``nn.Dropout``) draws its masks under ``vmap(randomness="different")``
from the default RNG, so it cannot reproduce a single-model run's masks (only the stacked backend
does). To keep func-backend runs deterministic and resumable anyway, the trainer owns a private RNG
stream, seeded at construction from all members' seeds (:func:`ensemble_rng_seed`): training steps
swap it in for the global RNG and swap the caller's state back afterwards, so the masks depend only
on the members (not on what else the process draws) and the global RNG is left untouched. Its state
(``torch.get_rng_state()`` format, plus the CUDA generator's on a GPU) is part of
:meth:`EnsembleTrainer.state_dict`, so a resumed run is bitwise equal to an uninterrupted one. The
masks depend on the whole ensemble, so a member's dropout run differs between packs of different
composition (see :func:`fit_in_packs`).

The random protocol of one member, shared with :func:`iwlab.train.loop.train_single` (the reference
that the tests compare against): ``g = Generator().manual_seed(seed)``; the model is built from ``g``;
then every epoch draws ``randperm(N, generator=g)`` and, if the model has dropout, one epoch of keep
masks (:func:`~iwlab.models.draw_dropout_masks`).

Loss normalization (see :mod:`iwlab.functional.losses`): ``"batch_size"`` uses (1/B) sum_i w_i l_i,
``"weight_sum"`` uses sum_i w_i l_i / sum_i w_i; both per model and per batch. ``"weight_sum"`` divides
exactly by any positive sum, however small (no epsilon), so it is invariant to a common rescaling of a
member's weights; a batch of zero total weight contributes nothing; a member whose batch sums could
overflow float32 has its weights scaled by an exact power of two first. Weights are used in float32:
entries (or products of class and sample weights) that float32 cannot represent are refused.

Example:
    >>> import torch
    >>> from iwlab.models import MLP
    >>> x, y = torch.randn(64, 2), (torch.rand(64) > 0.5).long()
    >>> members = [Member(seed=s, class_weight=(1.0, w), lr=0.1) for s in (0, 1) for w in (1.0, 0.25)]
    >>> trainer = EnsembleTrainer(lambda g: MLP(2, (8,), 1, generator=g), members, batch_size=8)
    >>> history = trainer.fit(x, y, epochs=3, progress=False)
    >>> trainer.logits(x).shape
    torch.Size([4, 64, 1])
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import inspect
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from iwlab.functional.checks import check_int, check_seed
from iwlab.functional.losses import check_weights
from iwlab.models.mlp import MLP, draw_dropout_masks
from iwlab.train.checkpoint import check_record, fingerprint, load_checkpoint
from iwlab.train.schedule import log_epochs

Callback = Callable[["EnsembleTrainer", int], dict[str, Tensor]]
ModelFn = Callable[[torch.Generator], nn.Module]

logger = logging.getLogger(__name__)


@dataclass
class Member:
    """One model of the ensemble: its seed, importance weights and optimizer settings.

    ``class_weight[c]`` multiplies the loss of every example of class ``c``; ``labels`` travel with
    the results (e.g. ``{"weight": 0.25, "model": "mlp"}``).

    Example:
        >>> Member(seed=3, class_weight=(1.0, 1 / 256), lr=0.045, l2=1e-3).l2
        0.001
    """

    seed: int
    class_weight: tuple[float, ...] | None = None
    lr: float = 0.1
    l2: float = 0.0
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class History:
    """Metrics recorded at evaluation epochs, in long form: ``(epoch, member, name, value)``.

    Example:
        >>> History([(1, 0, "train_loss", 0.5)]).values("train_loss")
        {1: [0.5]}
    """

    rows: list[tuple[int, int, str, float]] = field(default_factory=list)

    def values(self, name: str) -> dict[int, list[float]]:
        """``{epoch: [value of member 0, 1, ...]}`` for one metric.

        Example:
            >>> History([(2, 1, "a", 1.0), (2, 0, "a", 3.0)]).values("a")
            {2: [3.0, 1.0]}
        """
        out: dict[int, dict[int, float]] = {}
        for epoch, member, n, v in self.rows:
            if n == name:
                out.setdefault(epoch, {})[member] = v
        return {e: [d[m] for m in sorted(d)] for e, d in sorted(out.items())}


# ----------------------------------------------------------------------------------------------
# Stacked backend: MLPs as batched matmuls with a hand-written backward.


def _mlp_forward(
    params: list[Tensor], x: Tensor, masks: list[Tensor] | None, inv_keep: float
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Forward through stacked layers. x (M, B, in); W (M, in, out); b (M, out)."""
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


def _mlp_grads(
    params: list[Tensor],
    x: Tensor,
    y: Tensor,
    gw: Tensor,
    masks: list[Tensor] | None,
    inv_keep: float,
    binary: bool,
) -> list[Tensor]:
    """Gradients of sum_i gw_i * CE_i for every member. gw (M, B) already holds the normalization."""
    logits, inputs, pre = _mlp_forward(params, x, masks, inv_keep)
    if binary:
        g = ((torch.sigmoid(logits.squeeze(-1)) - y) * gw).unsqueeze(-1)  # (M, B, 1)
    else:
        p = torch.softmax(logits, dim=-1)  # (M, B, C)
        p = p - nn.functional.one_hot(y, p.shape[-1]).to(p.dtype)
        g = p * gw.unsqueeze(-1)
    n_layers = len(params) // 2
    grads: list[Tensor] = [torch.empty(0)] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = torch.bmm(inputs[i].transpose(1, 2), g)  # (M, in, out)
        grads[2 * i + 1] = g.sum(1)  # (M, out)
        if i > 0:
            g = torch.bmm(g, params[2 * i].transpose(1, 2))  # (M, B, in)
            if masks is not None:
                g = g * masks[i - 1] * inv_keep
            g = g * (pre[i - 1] > 0)
    return grads


# ----------------------------------------------------------------------------------------------
# Optimizers over lists of stacked tensors. lr and l2 are (M,) and broadcast over each parameter.


def _bcast(v: Tensor, p: Tensor) -> Tensor:
    return v.view(-1, *([1] * (p.dim() - 1)))


def _sgd_update(
    params: list[Tensor], grads: list[Tensor], state: dict, lr: Tensor, l2: Tensor, momentum: float
) -> None:
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = g + _bcast(l2, p) * p  # coupled L2, as torch.optim.SGD(weight_decay=l2)
        if momentum:
            buf = state["momentum"][i]
            buf.mul_(momentum).add_(g)
            g = buf
        p.sub_(_bcast(lr, p) * g)


def _adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    state: dict,
    lr: Tensor,
    l2: Tensor,
    betas: tuple[float, float],
    eps: float,
) -> None:
    b1, b2 = betas
    state["step"] += 1
    t = state["step"]
    c1, c2 = 1 - b1**t, 1 - b2**t
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = g + _bcast(l2, p) * p  # as torch.optim.Adam(weight_decay=l2)
        m, v = state["exp_avg"][i], state["exp_avg_sq"][i]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / c2).sqrt_().add_(eps)
        p.sub_(_bcast(lr, p) / c1 * m / denom)


def _as_float64(v: Any) -> Tensor:
    # Python floats are doubles: converting them straight to float32 could flush 1e-50 to 0 unseen
    return torch.as_tensor(v, dtype=torch.float64)


def class_indices(y: Tensor, n_classes: int | None) -> Tensor:
    """Labels as int64 class indices, checked: a one-line error instead of silently wrong training.

    Any integer dtype is accepted (uint8, int8, ..., int64), bool when ``n_classes == 2``, and floats
    only when every value is integral: a float label of 0.5 would pass a range check (``int(0.5) == 0``)
    and train as a soft label on one backend and as class 0 on another.

    Args:
        y: labels of any shape (e.g. ``(N,)`` or ``(M, N)``).
        n_classes: C; labels must lie in ``[0, C)`` (2 for a binary model with one logit). None: only
            non-negative integrality is checked.

    Returns:
        ``y`` as int64, same shape and device.

    Raises:
        TypeError: bool labels for C > 2, complex labels.
        ValueError: a non-integer label (value and index named), or a label outside ``[0, C)``.

    Example:
        >>> class_indices(torch.tensor([0, 1], dtype=torch.uint8), 2)
        tensor([0, 1])
    """
    if y.dtype == torch.bool:
        if n_classes not in (2, None):
            raise TypeError(f"y is a bool tensor but the model has {n_classes} classes; pass class indices")
        return y.long()
    if y.is_complex():
        raise TypeError(f"y must hold integer class indices; got dtype {y.dtype}")
    if y.numel() == 0:
        return y.long()
    if y.is_floating_point():
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            pos = torch.nonzero(bad)[0].tolist()
            at = pos[0] if len(pos) == 1 else tuple(pos)
            raise ValueError(
                f"y has a non-integer label {float(y[tuple(pos)]):g} at index {at}; labels must be class "
                f"indices in [0, {n_classes or 'C'}) (soft labels are not supported)"
            )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes or 'C'}), got range [{lo}, {hi}]")
    return y.long()


# ----------------------------------------------------------------------------------------------


def _rates(values: list[float], name: str, dtype: torch.dtype) -> Tensor:
    """Members' learning rates or L2 strengths (M,) in ``dtype``; a nonzero value that becomes 0 or inf is refused."""
    exact = torch.tensor(values, dtype=torch.float64)
    t = exact.to(dtype)
    lost = ((t == 0) & (exact != 0)) | torch.isinf(t)
    if bool(lost.any()):
        i = int(lost.nonzero()[0])
        raise ValueError(f"member {i}: {name}={values[i]:g} cannot be represented in {dtype} (the parameters' dtype)")
    return t


class EnsembleTrainer:
    """Minibatch SGD or Adam on M models at once; see the module docstring.

    Args:
        model_fn: builds one initialised model from a generator (e.g. ``lambda g: MLP(..., generator=g)``).
        members: one :class:`Member` per model.
        batch_size: minibatch size B (the last batch of an epoch may be smaller).
        optimizer: ``"sgd"`` or ``"adam"``; ``momentum`` and ``betas``/``eps`` configure them.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``.
        device: ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"`` (stacked for MLPs, func otherwise), ``"stacked"`` or ``"func"``.
        compile: run the stacked step under ``torch.compile`` (faster after a one-off compile).

    Attributes:
        params: stacked parameters (a list for the stacked backend, ``{name: (M, ...)}`` for func).
        buffers: ``{name: (M, ...)}`` stacked buffers of the func backend (e.g. BatchNorm running
            statistics); empty for the stacked backend.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from iwlab.models import init_from_generator_
        >>> def conv_bn(g):
        ...     net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        ...                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
        ...     return init_from_generator_(net, g)
        >>> x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
        >>> t = EnsembleTrainer(conv_bn, [Member(seed=0), Member(seed=1)], batch_size=8, optimizer="adam")
        >>> _ = t.fit(x, y, epochs=1, progress=False)
        >>> t.backend, t.buffers["1.running_mean"].shape, t.logits(x).shape
        ('func', torch.Size([2, 4]), torch.Size([2, 16, 3]))
    """

    def __init__(
        self,
        model_fn: ModelFn,
        members: Sequence[Member],
        *,
        batch_size: int,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        normalization: Literal["batch_size", "weight_sum"] = "batch_size",
        device: str | torch.device = "cpu",
        backend: Literal["auto", "stacked", "func"] = "auto",
        compile: bool = False,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got '{optimizer}'")
        if not (math.isfinite(momentum) and momentum >= 0):
            raise ValueError(f"momentum must be finite and >= 0, got {momentum}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be finite and >= 0, got {eps}")
        if normalization not in ("batch_size", "weight_sum"):
            raise ValueError(f"normalization must be 'batch_size' or 'weight_sum', got '{normalization}'")
        if backend not in ("auto", "stacked", "func"):
            raise ValueError(f"backend must be 'auto', 'stacked' or 'func', got '{backend}'")
        self.members = list(members)
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.momentum, self.betas, self.eps = momentum, betas, eps
        self.normalization = normalization
        self.device = torch.device(device)
        self.M = len(self.members)
        for i, m in enumerate(self.members):
            check_seed(m.seed, f"member {i} seed")
        self.generators = [torch.Generator().manual_seed(m.seed) for m in self.members]
        modules = [model_fn(g) for g in self.generators]
        self.template = modules[0]
        if backend == "auto":
            backend = "stacked" if isinstance(self.template, MLP) else "func"
        if backend == "stacked" and not isinstance(self.template, MLP):
            raise ValueError("the stacked backend takes iwlab.models.MLP models only; use backend='func'")
        self.backend = backend
        self.dropout = float(getattr(self.template, "dropout", 0.0)) if backend == "stacked" else 0.0
        self.out_dim = self._out_dim(self.template)
        self.binary = self.out_dim == 1
        self.buffers: dict[str, Tensor] = {}
        self.params = self._stack(modules)
        for m in self.members:
            for name, v in (("lr", m.lr), ("l2", m.l2)):
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"member {m}: {name} must be finite and >= 0, got {v}")
        # lr and L2 in the parameters' dtype: float64 models keep float64 rates (an L2 of 1e-9 would
        # vanish in float32's 1 - lr * l2); a rate the dtype cannot hold is refused, not rounded to 0 or inf
        pdtype = self._param_list()[0].dtype
        self.lr = _rates([m.lr for m in self.members], "lr", pdtype).to(self.device)  # (M,)
        self.l2 = _rates([m.l2 for m in self.members], "l2", pdtype).to(self.device)  # (M,)
        self.opt_state = self._init_opt_state()
        self.epoch = 0
        self.diverged_at = torch.full((self.M,), -1, dtype=torch.long)  # epoch of divergence, -1: never
        self.history = History()
        # what the current fit trains on (see _data_record), and the data record of a state dict loaded
        # outside fit, checked by the next fit
        self._data_spec: dict[str, Any] | None = None
        self._pending_data: tuple[dict[str, Any], str | Path | None] | None = None
        self._step = _mlp_grads
        if compile and backend == "stacked":
            self._step = torch.compile(_mlp_grads, dynamic=False)
        self._func_step: Callable | None = None
        # the func backend's private RNG stream (dropout masks), see the module docstring
        self._rng = self._initial_rng() if backend == "func" else None

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def _out_dim(module: nn.Module) -> int:
        if isinstance(module, MLP):
            return module.out_dim
        last = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not last:
            raise ValueError("cannot infer the output size: the model has no nn.Linear layer")
        return last[-1].out_features

    def _stack(self, modules: list[nn.Module]) -> list[Tensor] | dict[str, Tensor]:
        if self.backend == "stacked":
            out = []
            for li in range(len(self.template.layers)):
                w = torch.stack([m.layers[li].weight.detach().t() for m in modules])  # (M, in, out)
                b = torch.stack([m.layers[li].bias.detach() for m in modules])  # (M, out)
                out += [w.contiguous().to(self.device), b.to(self.device)]
            return out
        for name, mod in self.template.named_modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats and mod.momentum is None:
                raise ValueError(
                    f"the func backend does not support BatchNorm with momentum=None ('{name}'): its buffers "
                    "(a cumulative average over num_batches_tracked) cannot be updated under vmap; set a momentum"
                )
        stacked = {
            n: torch.stack([dict(m.named_parameters())[n].detach() for m in modules]).to(self.device)
            for n, _ in modules[0].named_parameters()
        }
        self.buffers = {
            n: torch.stack([dict(m.named_buffers())[n].detach() for m in modules]).to(self.device)
            for n, _ in modules[0].named_buffers()
        }
        # the template only supplies the architecture to functional_call; keep no real storage
        self.template = copy.deepcopy(self.template).to("meta")
        return stacked

    # -- the func backend's private RNG stream ---------------------------------------------------
    def _initial_rng(self) -> dict[str, Tensor]:
        seed = ensemble_rng_seed([m.seed for m in self.members])
        state = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.Generator(device=self.device).manual_seed(seed).get_state()
        return state

    def _get_global_rng(self) -> dict[str, Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_global_rng(self, state: dict[str, Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Swap the trainer's RNG stream in for the global one; keep its advance, restore the caller's."""
        if self._rng is None:
            yield
            return
        outer = self._get_global_rng()
        self._set_global_rng(self._rng)
        try:
            yield
        finally:
            self._rng = self._get_global_rng()
            self._set_global_rng(outer)

    def _param_list(self) -> list[Tensor]:
        return self.params if isinstance(self.params, list) else list(self.params.values())

    def _init_opt_state(self) -> dict[str, Any]:
        ps = self._param_list()
        if self.optimizer == "sgd":
            return {"momentum": [torch.zeros_like(p) for p in ps]} if self.momentum else {}
        return {
            "step": 0,
            "exp_avg": [torch.zeros_like(p) for p in ps],
            "exp_avg_sq": [torch.zeros_like(p) for p in ps],
        }

    # -- forward -------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor:
        """Evaluation-mode logits of every member: ``(M, N, out)``.

        ``x`` is ``(N, ...)`` shared by all members, or ``(M, N, ...)`` with ``per_member=True``. The
        func backend runs the module in eval mode: BatchNorm uses each member's running statistics and
        dropout is off.

        Example:
            >>> # trainer.logits(x_test).argmax(-1)  -> (M, N) predictions
        """
        x = x.to(self.device)
        parts = []
        for s in range(0, x.shape[1 if per_member else 0], chunk):
            if per_member:
                xc = x[:, s : s + chunk]
            else:
                xc = x[s : s + chunk]
            if self.backend == "stacked":
                xb = xc if per_member else xc.unsqueeze(0).expand(self.M, *xc.shape)
                parts.append(_mlp_forward(self.params, xb, None, 1.0)[0])
            else:
                parts.append(self._func_forward(xc, shared=not per_member))
        return torch.cat(parts, dim=1)

    def predict(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor:
        """Predicted class of every member, ``(M, N)`` int64.

        Example:
            >>> # (trainer.predict(x) == 1).float().mean(1)  -> fraction predicted as class 1
        """
        z = self.logits(x, chunk, per_member)
        return (z.squeeze(-1) > 0).long() if self.binary else z.argmax(-1)

    def _func_forward(self, x: Tensor, shared: bool) -> Tensor:
        from torch.func import functional_call, vmap

        template = self.template

        def f(p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor) -> Tensor:
            return functional_call(template, (p, b), (xi,))

        template.eval()  # running statistics, no dropout; the next training step switches back
        return vmap(f, in_dims=(0, 0, None if shared else 0), randomness="different")(self.params, self.buffers, x)

    def member_module(self, i: int) -> nn.Module:
        """A standalone copy of member ``i`` as an ordinary ``nn.Module`` (for inspection or export).

        Example:
            >>> # trainer.member_module(0)(x)  -> logits of member 0
        """
        if self.backend == "stacked":
            t = self.template
            mod = MLP(t.in_dim, t.hidden, t.out_dim, t.dropout)
            with torch.no_grad():
                for li, layer in enumerate(mod.layers):
                    layer.weight.copy_(self.params[2 * li][i].t())
                    layer.bias.copy_(self.params[2 * li + 1][i])
            return mod
        raise NotImplementedError("member_module is available for the stacked backend; see member_state_dict")

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member ``i``'s parameters and buffers as an ``nn.Module`` state dict (copies, on the CPU).

        For the func backend, ``model_fn(g).load_state_dict(trainer.member_state_dict(i))`` rebuilds
        member ``i`` (BatchNorm running statistics included) as an ordinary module.

        Example:
            >>> # net = model_fn(torch.Generator()); net.load_state_dict(trainer.member_state_dict(0))
        """
        if not 0 <= i < self.M:
            raise IndexError(f"member {i} out of range for an ensemble of {self.M}")
        if self.backend == "stacked":
            return {k: v.detach().clone() for k, v in self.member_module(i).state_dict().items()}
        out = {k: v[i].detach().cpu().clone() for k, v in self.params.items()}
        out.update({k: v[i].detach().cpu().clone() for k, v in self.buffers.items()})
        return out

    def linear_weights(self) -> tuple[Tensor, Tensor]:
        """For logistic regression: ``(w (M, d), b (M,))`` of the binary logit.

        Example:
            >>> # w, b = trainer.linear_weights(); angle(linear_direction(w, b), svm_direction)
        """
        if self.backend != "stacked" or len(self.params) != 2 or not self.binary:
            raise ValueError("linear_weights() needs a binary logistic-regression ensemble")
        return self.params[0][..., 0], self.params[1][..., 0]

    def param_norm(self) -> Tensor:
        """L2 norm of all parameters of each member, ``(M,)``.

        Example:
            >>> # trainer.param_norm()
        """
        sq = sum(p.reshape(self.M, -1).pow(2).sum(1) for p in self._param_list())
        return sq.sqrt()

    # -- training ------------------------------------------------------------------------------
    def _as_data(self, v: Any, name: str, per_member: bool) -> Tensor:
        """``v`` as one tensor on the trainer's device; with ``per_member``, a list of M tensors is stacked."""
        if per_member and isinstance(v, list | tuple):
            if not v or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in v):
                raise TypeError(f"per_member {name} must be a tensor (M, N, ...) or a list of M tensors (N, ...)")
            rows = [int(t.shape[0]) for t in v]
            if len(set(rows)) != 1:
                raise ValueError(f"per_member datasets must all have N rows; got {rows} ({name})")
            if len({(tuple(t.shape), t.dtype) for t in v}) != 1:
                got = [f"{tuple(t.shape)} {t.dtype}" for t in v]
                raise ValueError(f"per_member {name} tensors must all have the same shape and dtype; got {got}")
            return torch.stack([t.to(self.device) for t in v])
        if not isinstance(v, Tensor):
            alt = " (or, with per_member=True, a list of M tensors)" if per_member else ""
            raise TypeError(f"{name} must be a torch.Tensor{alt}; got {type(v).__name__}")
        return v.to(self.device)

    def _labels(self, y: Tensor) -> Tensor:
        """``y`` as int64 class indices after checking them (see :func:`class_indices`)."""
        return class_indices(y, 2 if self.binary else self.out_dim)

    @staticmethod
    def _float32_weights(raw: Tensor, name: str) -> Tensor:
        """``raw`` as float32 (the trainer's weight dtype), refusing entries that would change value class.

        Subnormal results are refused too: they keep only a few bits (1e-44 and 1.5e-44 become 9.8e-45
        and 1.4e-44, a ratio of 1.43), which ``weight_sum`` would then train with.
        """
        check_weights(raw, name=name)
        w = raw.to(torch.float32)
        tiny = torch.finfo(torch.float32).tiny
        lost = ((w == 0) & (raw != 0)) | torch.isinf(w) | ((w != 0) & (w.abs() < tiny))
        if bool(lost.any()):
            pos = torch.nonzero(lost)[0].tolist()
            at = pos[0] if len(pos) == 1 else tuple(pos)
            v = raw[tuple(pos)].item()
            raise ValueError(
                f"{name} entry {v:g} at index {at} is not representable in float32 (the trainer's weight dtype: "
                f"it becomes {w[tuple(pos)].item():g}); rescale the weights"
            )
        return w

    def _sample_weights(self, y: Tensor, sample_weight: Any) -> tuple[Tensor, Tensor | None]:
        """Per-example weights ``class_weight[y] * sample_weight`` (M, N) on the device, and the sample weights.

        ``y`` holds checked int64 labels (N,) or (M, N) on the CPU.
        """
        n_classes = 2 if self.binary else self.out_dim
        n = y.shape[-1]
        w = torch.ones(self.M, n)  # (M, N)
        for i, m in enumerate(self.members):
            if m.class_weight is not None:
                raw = m.class_weight if isinstance(m.class_weight, Tensor) else _as_float64(m.class_weight)
                if raw.shape != (n_classes,):
                    raise ValueError(
                        f"member {i}: class_weight has {raw.numel()} entries, the model has {n_classes} classes"
                    )
                cw = self._float32_weights(raw, f"member {i} class_weight")
                w[i] = cw[y[i] if y.dim() == 2 else y]
        sw = None
        if sample_weight is not None:
            raw = sample_weight.detach().cpu() if isinstance(sample_weight, Tensor) else _as_float64(sample_weight)
            if raw.dim() not in (1, 2) or raw.shape[-1] != n or (raw.dim() == 2 and raw.shape[0] not in (1, self.M)):
                raise ValueError(
                    f"sample_weight must have shape (N,) or (M, N) = ({self.M}, {n}); got {tuple(raw.shape)}"
                )
            sw = self._float32_weights(raw, "sample_weight")
            prod = w * sw
            # a product of two representable weights can still leave float32's normal range
            tiny = torch.finfo(torch.float32).tiny
            lost = ((prod == 0) & (w != 0) & (sw != 0)) | torch.isinf(prod) | ((prod != 0) & (prod.abs() < tiny))
            if bool(lost.any()):
                i, j = torch.nonzero(lost)[0].tolist()
                raise ValueError(
                    f"member {i}: class_weight x sample_weight at index {j} ({w[i, j].item():g} x "
                    f"{sw.expand_as(w)[i, j].item():g}) is not representable in float32; rescale the weights"
                )
            w = prod
        if self.normalization == "weight_sum":
            w = self._fit_weight_sums(w)
        return w.to(self.device), sw

    def _fit_weight_sums(self, w: Tensor) -> Tensor:
        """Scale members whose batch sums could overflow float32 by an exact power of two.

        ``weight_sum`` is invariant to a common rescaling of a member's weights, but an overflowing sum
        (inf) would silently zero every gradient of the batch.
        """
        limit = torch.finfo(w.dtype).max / self.batch_size
        peak = w.double().max(1).values  # (M,)
        for i in torch.nonzero(peak > limit).flatten().tolist():
            e = math.ceil(math.log2(float(peak[i]) / limit))
            scaled = w[i] * 2.0**-e
            if not torch.equal(scaled * 2.0**e, w[i]):  # the smallest weights would lose bits
                raise ValueError(
                    f"member {i}: importance weights span too wide a range for float32 (largest {float(peak[i]):g}): "
                    "a batch's weight sum overflows, and rescaling would flush the smallest to 0; rescale the weights"
                )
            w[i] = scaled
        return w

    def _data_record(self, x: Tensor, y: Tensor, y_dtype: torch.dtype, sw: Tensor | None, per_member: bool) -> dict:
        """What a fit trains on, for the checkpoint's settings record (see :meth:`state_dict`)."""
        return {
            "per_member": per_member,
            "x": {"shape": list(x.shape), "dtype": str(x.dtype)},
            "y": {"shape": list(y.shape), "dtype": str(y_dtype)},
            "sample_weight": None if sw is None else {"shape": list(sw.shape)},
            "fingerprint": fingerprint(x, y, sw),
        }

    def fit(
        self,
        x: Tensor | Sequence[Tensor],
        y: Tensor | Sequence[Tensor],
        *,
        epochs: int,
        sample_weight: Tensor | None = None,
        eval_epochs: Iterable[int] | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_path: str | Path | None = None,
        progress: bool | Callable[[int, int], None] = True,
        stop_diverged: bool = True,
        per_member: bool = False,
    ) -> History:
        """Train every member to ``epochs`` total epochs, resuming from ``checkpoint_path`` if present.

        At each epoch in ``eval_epochs`` (default: log-spaced 1, 2, 3, 5, 10, 20, ... and the last)
        each callback returns ``{name: (M,) tensor}``; values go to :attr:`history`. A checkpoint
        (parameters, optimizer state, generator states, history and the settings record of
        :meth:`state_dict`) is written atomically after each evaluation, so a rerun continues where the
        last one stopped and ends bitwise equal on CPU. A checkpoint made with other settings or data
        is refused (see :meth:`load_state_dict`); one that cannot be read (truncated, empty) is moved
        aside to ``<name>.corrupt`` with a logged warning and training starts afresh
        (:func:`~iwlab.train.checkpoint.load_checkpoint`). Members whose parameters become NaN/inf are
        frozen and their epoch recorded in :attr:`diverged_at`.

        Args:
            x: ``(N, ...)`` inputs shared by all members; for the stacked backend ``(N, in_dim)`` in the
                parameters' dtype. With ``per_member=True``: ``(M, N, ...)``, or a list of M tensors
                ``(N, ...)`` of one shape (stacked), one dataset per member (this packs, e.g., one
                model on three datasets into one ensemble).
            y: ``(N,)`` class indices in ``[0, C)`` of any integer dtype (bool for a binary model;
                floats only if integral: soft labels are refused); ``(M, N)`` or a list with
                ``per_member=True``.
            epochs: total epochs (>= 1) the members end at, counting those of a resumed checkpoint.
            sample_weight: ``(N,)`` or ``(M, N)`` importance weights (finite, >= 0, some positive),
                multiplied with the members' class weights; used in float32.
            eval_epochs: epochs in ``[1, epochs]`` at which callbacks run and checkpoints are written.
            callbacks: ``fn(trainer, epoch) -> {name: (M,) tensor}``.
            checkpoint_path: resume from / save to this file, or None.
            progress: a tqdm bar (True), nothing (False), or ``fn(epoch, epochs)``.
            stop_diverged: freeze members whose parameters stop being finite (lr set to 0).
            per_member: one dataset per member (see ``x``).

        ``x``, ``y`` and ``sample_weight`` may live on any device: the trainer owns the device and moves
        them to it.

        Returns:
            :attr:`history`.

        Raises:
            TypeError: an argument has the wrong type (e.g. ``epochs=2.0``, bool labels for a multiclass
                model, ``x`` of another dtype than the stacked parameters).
            ValueError: one line naming the argument: ``epochs < 1``, no examples, mismatched shapes,
                ragged per-member data, non-integer or out-of-range labels, invalid weights; or the
                checkpoint was made with other settings, or is past ``epochs``.

        Example:
            >>> # trainer.fit(x, y, epochs=100, callbacks=[train_metrics(x, y)])
        """
        epochs = check_int(epochs, "epochs", minimum=1)
        x = self._as_data(x, "x", per_member)
        y = self._as_data(y, "y", per_member)
        if per_member:
            if x.dim() < 2 or y.dim() != 2 or x.shape[0] != self.M or y.shape[0] != self.M:
                raise ValueError(
                    f"per_member data need x (M={self.M}, N, ...) and y (M, N); got {tuple(x.shape)}, {tuple(y.shape)}"
                )
        elif y.dim() != 1 or x.dim() < 1:
            raise ValueError(
                f"x and y must have shapes (N, ...) and (N,); got {tuple(x.shape)}, {tuple(y.shape)} "
                "(for one dataset per member, x (M, N, ...) and y (M, N), pass per_member=True)"
            )
        if x.shape[int(per_member)] != y.shape[-1]:
            raise ValueError(f"x has {x.shape[int(per_member)]} rows but y has {y.shape[-1]}")
        if y.shape[-1] == 0:
            raise ValueError(f"x and y have no examples (N=0; shapes {tuple(x.shape)}, {tuple(y.shape)})")
        if self.backend == "stacked":
            want = (self.M, y.shape[-1], self.template.in_dim) if per_member else (y.shape[-1], self.template.in_dim)
            if tuple(x.shape) != want:
                raise ValueError(
                    f"x must have shape {want} for this MLP (in_dim={self.template.in_dim}); got {tuple(x.shape)}"
                )
            if x.dtype != self.params[0].dtype:
                raise TypeError(
                    f"x has dtype {x.dtype} but the model's parameters are {self.params[0].dtype}; convert x"
                )
        if eval_epochs is None:
            eval_set = set(log_epochs(epochs))
        else:
            eval_set = {check_int(e, "every eval_epochs entry", minimum=1) for e in eval_epochs}
            if max(eval_set, default=1) > epochs:
                raise ValueError(f"eval_epochs entry {max(eval_set)} lies past epochs={epochs}: it would never run")
        y_dtype = y.dtype
        y_cpu = self._labels(y.cpu())  # (N,) or (M, N) int64
        y = y_cpu.to(self.device)
        w_all, sw = self._sample_weights(y_cpu, sample_weight)  # (M, N)
        self._data_spec = self._data_record(x, y_cpu, y_dtype, sw, per_member)
        state = None if checkpoint_path is None else load_checkpoint(checkpoint_path, map_location="cpu")
        if state is not None:
            self._check_state(state, checkpoint_path)
            if state["epoch"] > epochs:
                raise ValueError(
                    f"checkpoint {checkpoint_path} is at epoch {state['epoch']} but fit(epochs={epochs}) was asked "
                    "for; ask for at least that many, or delete the checkpoint to start afresh"
                )
            self._apply_state(state)
        elif self._pending_data is not None:  # a state dict loaded by hand: check it against this data
            saved, source = self._pending_data
            check_record({"data": saved}, {"data": self._data_spec}, source)
        self._pending_data = None
        if self.epoch > epochs:
            raise ValueError(f"this trainer is at epoch {self.epoch} but fit(epochs={epochs}) was asked for")
        y_loss = y.to(torch.float32) if self.binary else y
        n, bsz = y.shape[-1], self.batch_size
        rows = torch.arange(self.M, device=self.device).unsqueeze(1)  # (M, 1) for per-member gathers
        n_steps = math.ceil(n / bsz)
        inv_keep = 1.0 / (1.0 - self.dropout) if self.dropout else 1.0
        decay = 1.0 - self.lr * self.l2  # (M,)
        self._decay = decay if bool((self.l2 > 0).any()) else None
        # any positive weight sum is >= the smallest subnormal, so clamping there divides every positive
        # sum exactly and makes an all-zero batch contribute 0 (rather than NaN)
        tiny = torch.finfo(w_all.dtype).smallest_normal * torch.finfo(w_all.dtype).eps
        bar = _progress(range(self.epoch + 1, epochs + 1), progress, total=epochs, initial=self.epoch)
        for epoch in bar:
            perms, masks = [], []
            for g in self.generators:  # the per-member random protocol, see module docstring
                perms.append(torch.randperm(n, generator=g))
                if self.dropout:
                    masks.append(draw_dropout_masks(g, n_steps, bsz, self.template.hidden, self.dropout))
            perm = torch.stack(perms).to(self.device)  # (M, N)
            stacked_masks = (
                [torch.stack([mk[li] for mk in masks]).to(self.device) for li in range(len(masks[0]))]
                if masks
                else None
            )  # per hidden layer (M, steps, B, h)
            w_epoch = w_all.gather(1, perm)  # (M, N)
            y_epoch = y_loss.gather(1, perm) if per_member else y_loss[perm]  # (M, N)
            fast = self.backend == "stacked" and self.optimizer == "sgd" and not self.momentum
            x_epoch = (
                (x[rows, perm] if per_member else x[perm]) if fast else None
            )  # (M, N, ...) one gather per epoch, slices per step
            if fast and self.normalization == "batch_size":
                # fold lr into the per-example gradient weights: p -= grad(sum_i lr*w_i/B * l_i)
                w_epoch = w_epoch * self.lr.unsqueeze(1)
            with self._own_rng():  # func backend: dropout masks from the trainer's own stream
                for s in range(n_steps):
                    sl = slice(s * bsz, (s + 1) * bsz)
                    wb = w_epoch[:, sl]
                    if self.normalization == "batch_size":
                        gw = wb / wb.shape[1]
                    else:
                        gw = wb / wb.sum(1, keepdim=True).clamp_min(tiny)
                        if fast:
                            gw = gw * self.lr.unsqueeze(1)
                    if fast:
                        self._fast_sgd_step(x_epoch[:, sl], y_epoch[:, sl], gw, stacked_masks, s, inv_keep)
                    else:
                        xb = x[rows, perm[:, sl]] if per_member else x[perm[:, sl]]  # (M, B, ...)
                        self._train_step(xb, y_epoch[:, sl], gw, stacked_masks, s, inv_keep)
            self.epoch = epoch
            self._check_divergence(stop_diverged)
            if epoch in eval_set:
                self._evaluate(callbacks)
                if checkpoint_path is not None:
                    self.save_checkpoint(checkpoint_path)
        return self.history

    def _fast_sgd_step(
        self, xb: Tensor, yb: Tensor, gw: Tensor, stacked_masks: list[Tensor] | None, s: int, inv_keep: float
    ) -> None:
        # plain SGD on the stacked backend: gw already carries lr, so the update is
        # p <- p * (1 - lr * l2) - grad, the same as torch.optim.SGD(weight_decay=l2)
        mk = None
        if stacked_masks is not None:
            mk = [m[:, s, : xb.shape[1]] for m in stacked_masks]  # (M, B, h)
        grads = self._step(self.params, xb, yb, gw, mk, inv_keep, self.binary)
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
            grads = self._step(self.params, xb, yb, gw, mk, inv_keep, self.binary)
        else:
            grad_dict, self.buffers = self._func_grads(xb, yb, gw)
            grads = list(grad_dict.values())
        with torch.no_grad():
            if self.optimizer == "sgd":
                _sgd_update(self._param_list(), grads, self.opt_state, self.lr, self.l2, self.momentum)
            else:
                _adam_update(
                    self._param_list(),
                    grads,
                    self.opt_state,
                    self.lr,
                    self.l2,
                    self.betas,
                    self.eps,
                )

    def _func_grads(self, xb: Tensor, yb: Tensor, gw: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-member gradients and the buffers after the train-mode forward (new tensors)."""
        if self._func_step is None:
            from torch.func import functional_call, grad, vmap

            template, binary = self.template, self.binary

            def loss(
                p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor, yi: Tensor, wi: Tensor
            ) -> tuple[Tensor, dict[str, Tensor]]:
                # clone inside the transforms: the forward writes running statistics into these
                # (in place, as nn.BatchNorm does); the clones come back as aux, the inputs stay intact
                b = {k: v.clone() for k, v in b.items()}
                z = functional_call(template, (p, b), (xi,))
                if binary:
                    per = nn.functional.binary_cross_entropy_with_logits(z.squeeze(-1), yi, reduction="none")
                else:
                    per = nn.functional.cross_entropy(z, yi, reduction="none")
                return (per * wi).sum(), b

            self._func_step = vmap(grad(loss, has_aux=True), randomness="different")
        self.template.train()  # batch statistics and running-stat updates, dropout on
        return self._func_step(self.params, self.buffers, xb, yb, gw)

    def _check_divergence(self, freeze: bool) -> None:
        finite = torch.stack([torch.isfinite(p.reshape(self.M, -1)).all(1) for p in self._param_list()]).all(0)
        new = (~finite.cpu()) & (self.diverged_at < 0)
        if new.any():
            self.diverged_at[new] = self.epoch
            if freeze:  # a diverged member keeps its NaNs but stops stepping; others go on
                self.lr[new.to(self.device)] = 0.0

    @torch.no_grad()
    def _evaluate(self, callbacks: Sequence[Callback]) -> None:
        for cb in callbacks:
            for name, values in cb(self, self.epoch).items():
                vals = values.detach().double().cpu().tolist()
                if len(vals) != self.M:
                    raise ValueError(f"callback metric '{name}' returned {len(vals)} values for {self.M} members")
                # NaN marks "not defined for this member" (e.g. an angle on non-separable data)
                self.history.rows.extend((self.epoch, i, name, v) for i, v in enumerate(vals) if v == v)

    # -- checkpoints ---------------------------------------------------------------------------
    def _config_record(self) -> dict[str, Any]:
        """The trainer's settings for the checkpoint's settings record (see :meth:`state_dict`)."""
        return {
            "members": [
                {
                    "seed": int(m.seed),
                    "lr": float(m.lr),  # the configured lr: a diverged member's live lr is 0
                    "l2": float(m.l2),
                    "class_weight": None if m.class_weight is None else [float(c) for c in m.class_weight],
                }
                for m in self.members
            ],
            "optimizer": {
                "name": self.optimizer,
                "momentum": float(self.momentum),
                "betas": [float(b) for b in self.betas],
                "eps": float(self.eps),
            },
            "batch_size": self.batch_size,
            "normalization": self.normalization,
            "backend": self.backend,
            "dropout": self.dropout,
            "parameters": {n: [list(p.shape), str(p.dtype)] for n, p in self.template.named_parameters()},
            "buffers": {n: [list(b.shape), str(b.dtype)] for n, b in self.template.named_buffers()},
            # after the shapes, so a shape change is named as such; this catches the rest the repr shows
            # (dropout rates, activations, BatchNorm momentum), as a hash to keep messages on one line
            "model_repr_sha256": hashlib.sha256(repr(self.template).encode()).hexdigest()[:16],
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit, and a record of the settings it was made with.

        Keys: ``"epoch"``, ``"params"``, ``"buffers"``, ``"opt_state"``, ``"lr"`` (the live per-member
        lr: 0 for frozen diverged members), ``"generators"``, ``"rng"`` (the func backend's private RNG
        stream in ``torch.get_rng_state()`` format under ``"cpu"``, plus ``"cuda"`` on a GPU; ``None``
        for the stacked backend), ``"diverged_at"``, ``"history"``, ``"seeds"`` and ``"spec"``.

        ``"spec"`` records what the state was made from: the members (seed, configured lr, L2, class
        weights), the optimizer (name, momentum, betas, eps), batch size, normalization, backend,
        dropout (stacked), the model's parameter and buffer names, shapes and dtypes and a hash of its
        ``repr``,
        and under ``"data"`` (once :meth:`fit` has run) ``per_member``, the shapes and dtypes of ``x``,
        ``y`` and ``sample_weight`` and a :func:`~iwlab.train.checkpoint.fingerprint` of the inputs
        ``x`` (up to 65,536 evenly spaced elements), the labels and the sample weights.

        What the record does not catch: changes to elements of a large ``x`` between the sampled ones
        (e.g. a different preprocessing that leaves those equal); model code changes invisible in the
        ``repr`` and the parameter shapes (a different activation or initialisation in custom code);
        ``callbacks`` and ``eval_epochs`` (they do not change training); ``device`` and ``compile``.

        Example:
            >>> # torch.save(trainer.state_dict(), "ckpt.pt")
        """
        return {
            "epoch": self.epoch,
            "params": self.params,
            "buffers": self.buffers,
            "opt_state": self.opt_state,
            "lr": self.lr,
            "generators": [g.get_state() for g in self.generators],
            "rng": self._rng,
            "diverged_at": self.diverged_at,
            "history": list(self.history.rows),
            "seeds": [m.seed for m in self.members],
            "spec": {**self._config_record(), "data": self._data_spec},
        }

    def _check_state(self, state: Any, source: str | Path | None) -> None:
        """Raise unless ``state`` was made with this trainer's settings (and, inside fit, its data)."""
        if not isinstance(state, dict) or "epoch" not in state:
            what = "the state dict" if source is None else f"checkpoint {source}"
            raise ValueError(f"{what} is not an EnsembleTrainer state (got {type(state).__name__})")
        spec = state.get("spec")
        config = None if spec is None else {k: v for k, v in spec.items() if k != "data"}
        check_record(config, self._config_record(), source)
        if spec.get("data") is not None and self._data_spec is not None:
            check_record({"data": spec["data"]}, {"data": self._data_spec}, source)

    def _apply_state(self, state: dict[str, Any]) -> None:
        def dev(v: Any) -> Any:  # a checkpoint made on another device resumes on this one
            if isinstance(v, Tensor):
                return v.to(self.device)
            if isinstance(v, dict):
                return {k: dev(u) for k, u in v.items()}
            if isinstance(v, list):
                return [dev(u) for u in v]
            return v

        self.epoch = state["epoch"]
        self.params = dev(state["params"])
        self.buffers = dev(state["buffers"])
        self.opt_state = dev(state["opt_state"])
        self.lr = dev(state["lr"])  # the live lr: diverged members stay frozen
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)
        if state.get("rng") is not None and self._rng is not None:
            self._rng = {k: v for k, v in state["rng"].items() if k == "cpu" or self.device.type == "cuda"}
            if self.device.type == "cuda" and "cuda" not in self._rng:  # a CPU checkpoint resumed on a GPU
                self._rng["cuda"] = self._initial_rng()["cuda"]
        self.diverged_at = state["diverged_at"]
        self.history = History(list(state["history"]))

    def load_state_dict(self, state: dict[str, Any], *, source: str | Path | None = None) -> None:
        """Restore :meth:`state_dict` output, after checking it was made with this trainer's settings.

        The settings record (``state["spec"]``, see :meth:`state_dict`) is compared field by field
        with this trainer's; its data record is compared by the next :meth:`fit` (or at once, inside
        one). The frozen lr of diverged members is restored; the comparison uses the configured lr.

        Args:
            state: a :meth:`state_dict`.
            source: where it came from (a checkpoint path), for error messages.

        Raises:
            ValueError: one line naming the first differing field with both values, e.g. ``checkpoint
                c.pt was made with member 3 lr=0.1; this run has lr=0.05 (...)``; or the state has no
                settings record (made by an older iwlab).

        Example:
            >>> # trainer.load_state_dict(torch.load("ckpt.pt", weights_only=False), source="ckpt.pt")
        """
        self._check_state(state, source)
        self._apply_state(state)
        data = state["spec"].get("data")
        if data is not None and self._data_spec is None:
            self._pending_data = (data, source)

    def save_checkpoint(self, path: str | Path) -> None:
        """Write :meth:`state_dict` atomically (temp file + rename), so a kill never leaves half a file.

        Example:
            >>> # trainer.save_checkpoint(run_dir / "checkpoints" / "cell.pt")
        """
        from iwlab.train.checkpoint import atomic_save

        atomic_save(self.state_dict(), path)


# ----------------------------------------------------------------------------------------------
# packs: an ensemble too large for the device, trained as several smaller ensembles


def ensemble_rng_seed(seeds: Sequence[int]) -> int:
    """Seed of the func backend's private RNG stream for an ensemble with these members' seeds.

    A stable hash (SHA-256, independent of ``PYTHONHASHSEED``) of the ordered seeds, in ``[0, 2**63)``.

    Example:
        >>> ensemble_rng_seed([0, 1]) == ensemble_rng_seed([0, 1]) != ensemble_rng_seed([1, 0])
        True
    """
    digest = hashlib.sha256(",".join(str(int(s)) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


_TRAINER_KWARGS = frozenset(inspect.signature(EnsembleTrainer.__init__).parameters) - {"self", "model_fn", "members"}
_FIT_KWARGS = frozenset(inspect.signature(EnsembleTrainer.fit).parameters) - {"self", "x", "y"}


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    unknown = sorted(set(kwargs) - _TRAINER_KWARGS - _FIT_KWARGS)
    if unknown:
        raise TypeError(f"fit_in_packs got unexpected keyword arguments {unknown}")
    return (
        {k: v for k, v in kwargs.items() if k in _TRAINER_KWARGS},
        {k: v for k, v in kwargs.items() if k in _FIT_KWARGS},
    )


def pack_checkpoint_path(path: str | Path, lo: int, hi: int) -> Path:
    """Checkpoint file of the pack holding global members ``lo .. hi - 1`` (used by :func:`fit_in_packs`).

    Example:
        >>> pack_checkpoint_path("ck/cell.pt", 0, 4).as_posix()
        'ck/cell.members0-3.pt'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.members{lo}-{hi - 1}{path.suffix}")


def fit_in_packs(
    model_fn: ModelFn,
    members: Sequence[Member],
    x: Tensor,
    y: Tensor,
    *,
    pack_size: int | None = None,
    **kwargs: Any,
) -> list[EnsembleTrainer]:
    """Train ``members`` as consecutive packs of at most ``pack_size`` members (one trainer per pack).

    ``kwargs`` go to :class:`EnsembleTrainer` (``batch_size``, ``optimizer``, ``device``, ...) and to
    :meth:`EnsembleTrainer.fit` (``epochs``, ``callbacks``, ``eval_epochs``, ...) by name. With
    ``pack_size=None`` the first pack holds every member. When a pack runs out of memory
    (``torch.OutOfMemoryError``, or a ``RuntimeError`` saying "out of memory") it is discarded, the
    pack size is halved (logged as a warning) and the pack is retrained from scratch; later packs keep
    the smaller size; a single member that does not fit re-raises the error. Members are independent,
    so the result equals one big ensemble (up to float rounding of the batched kernels), except for
    the func backend's dropout masks, which come from one stream per pack (see the module docstring).

    Per-pack data: with ``per_member=True`` the rows of ``x``/``y`` (and a 2-D ``sample_weight``) are
    split with the members; each must hold one row per member (a ``(1, N)`` ``sample_weight`` is
    shared by every pack). ``checkpoint_path`` becomes one file per pack, named by the global member
    range (:func:`pack_checkpoint_path`), so a rerun with the same packs resumes each of them.
    Member ``j`` of pack ``k`` is global member ``sum(t.M for t in trainers[:k]) + j``;
    :func:`merge_histories` gives one :class:`History` with the global indices.

    Example:
        >>> import torch
        >>> from iwlab.models import MLP
        >>> x, y = torch.randn(32, 2), (torch.rand(32) > 0.5).long()
        >>> trainers = fit_in_packs(lambda g: MLP(2, (8,), 1, generator=g), [Member(seed=s) for s in range(5)],
        ...                         x, y, pack_size=2, batch_size=8, epochs=2, progress=False)
        >>> [t.M for t in trainers]
        [2, 2, 1]
        >>> torch.cat([t.logits(x) for t in trainers]).shape
        torch.Size([5, 32, 1])

    Raises:
        TypeError: unknown keyword arguments, or ``pack_size`` not an integer.
        ValueError: ``pack_size < 1``, per-member data or weights with another count than the members,
            and whatever :class:`EnsembleTrainer` and :meth:`EnsembleTrainer.fit` raise.
    """
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if pack_size is not None:
        pack_size = check_int(pack_size, "pack_size", minimum=1)
    init_kw, fit_kw = _split_kwargs(kwargs)
    per_member = bool(fit_kw.get("per_member", False))
    sample_weight = fit_kw.get("sample_weight")
    # packs take consecutive slices of the per-member data: a count that differs from the members
    # would silently drop datasets or pair them with the wrong members
    if per_member:
        for name, v in (("x", x), ("y", y)):
            if len(v) != len(members):
                raise ValueError(f"per_member {name} holds {len(v)} datasets for {len(members)} members")
    split_weights = sample_weight is not None and torch.as_tensor(sample_weight).dim() == 2 and len(sample_weight) > 1
    if split_weights and len(sample_weight) != len(members):
        raise ValueError(f"sample_weight has {len(sample_weight)} rows for {len(members)} members (expected 1 or M)")
    checkpoint_path = fit_kw.get("checkpoint_path")
    size = len(members) if pack_size is None else pack_size
    trainers: list[EnsembleTrainer] = []
    lo = 0
    while lo < len(members):
        hi = min(lo + size, len(members))
        kw = dict(fit_kw)
        if split_weights:
            kw["sample_weight"] = torch.as_tensor(sample_weight)[lo:hi]
        if checkpoint_path is not None:
            kw["checkpoint_path"] = pack_checkpoint_path(checkpoint_path, lo, hi)
        xs, ys = (x[lo:hi], y[lo:hi]) if per_member else (x, y)
        trainer: EnsembleTrainer | None = None
        out_of_memory = False
        try:
            trainer = EnsembleTrainer(model_fn, members[lo:hi], **init_kw)
            trainer.fit(xs, ys, **kw)
        except RuntimeError as err:
            if not _is_oom(err) or hi - lo == 1:
                raise
            out_of_memory = True  # retry outside the handler, so the traceback's tensors are freed
        if out_of_memory:
            trainer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, (hi - lo) // 2)
            logger.warning(
                "out of memory training members %d-%d as one pack of %d; retrying in packs of %d",
                lo,
                hi - 1,
                hi - lo,
                size,
            )
            continue
        assert trainer is not None
        trainers.append(trainer)
        lo = hi
    return trainers


def merge_histories(trainers: Sequence[EnsembleTrainer]) -> History:
    """One :class:`History` of consecutive packs, member indices remapped to the global index.

    Pack ``k``'s member ``j`` becomes ``sum(t.M for t in trainers[:k]) + j``. Rows are ordered by epoch,
    then metric (in order of first appearance), then member: the order a single ensemble of all the
    members records them in (for callbacks that return the same metrics at every evaluation).

    Example:
        >>> # history = merge_histories(fit_in_packs(model_fn, members, x, y, pack_size=4, epochs=10, ...))
    """
    rows: list[tuple[int, int, str, float]] = []
    offset = 0
    for t in trainers:
        rows.extend((epoch, offset + member, name, value) for epoch, member, name, value in t.history.rows)
        offset += t.M
    order: dict[str, int] = {}
    for _, _, name, _ in rows:
        order.setdefault(name, len(order))
    rows.sort(key=lambda r: (r[0], order[r[2]], r[1]))
    return History(rows)


def _progress(it: Iterable[int], enabled: Any, total: int, initial: int) -> Iterable[int]:
    if callable(enabled):  # a reporter from the sweep driver: called with (epoch, total) after each epoch
        return _report_epochs(it, enabled, total)
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, initial=initial, desc="epochs", leave=False, mininterval=0.5)


def _report_epochs(it: Iterable[int], report: Callable[[int, int], None], total: int) -> Iterable[int]:
    for epoch in it:
        yield epoch
        report(epoch, total)
