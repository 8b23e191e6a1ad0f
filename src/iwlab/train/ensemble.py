"""Train M independent models at once: one step advances every model of a weights x seeds grid.

Each member has its own generator (init, shuffling, dropout), its own class weights, lr and weight decay. The
parameters of all members are stacked on a leading model axis ``M``, so one batched kernel does the
work of M small ones. Two backends sit behind the one API:

* ``"stacked"``, for :class:`~iwlab.models.MLP` (logistic regression and MLPs): batched matmuls with a
  hand-written backward, optionally under ``torch.compile``. This is the fast path for the synthetic
  experiments, where each model is tiny and per-call overhead is everything.
* ``"func"``, for any ``nn.Module`` (conv nets, ResNets with or without BatchNorm):
  ``torch.func.vmap(grad(...))`` over ``functional_call``, buffers stacked per member like the
  parameters; dropout masks come from the trainer's own RNG stream (see
  :mod:`iwlab.train.func_backend`), saved with the checkpoint, so resumed runs are bitwise equal.

The random protocol of one member (:func:`~iwlab.train.batches.member_shuffles`), shared with the
single-model reference the tests compare against: ``g = Generator().manual_seed(seed)``; the model is
built from ``g``; then every epoch draws ``randperm(N, generator=g)`` and, if the model has dropout,
one epoch of keep masks (:func:`~iwlab.models.draw_dropout_masks`).

The epochs, resume, evaluation schedule, checkpoints, divergence and progress belong to the one
training loop, :func:`iwlab.train.fit.fit`: the trainer is its job (a batch source and the M-model step).

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

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from iwlab.files import check_record
from iwlab.functional.checks import check_int, check_real, check_seed
from iwlab.models.mlp import MLP
from iwlab.train import func_backend
from iwlab.train.ensemble_state import EnsembleState
from iwlab.train.ensemble_steps import EnsembleSteps, _EpochData
from iwlab.train.ensemble_views import EnsembleViews
from iwlab.train.fit import Clock, FitState
from iwlab.train.fit import fit as fit_loop
from iwlab.train.inputs import as_data, check_settings, check_shapes, class_indices, data_record, example_weights, rates
from iwlab.train.member_losses import Reweight, logit_grads_fn
from iwlab.train.members import History, Member
from iwlab.train.optim import init_state
from iwlab.train.precision import ConvImpl, Precision, channels_last_weights, check_step_options
from iwlab.train.schedule import log_epochs
from iwlab.train.stacked import stack_mlps

Callback = Callable[["EnsembleTrainer", int], dict[str, Tensor]]
ModelFn = Callable[[torch.Generator], nn.Module]


def output_size(module: nn.Module) -> int:
    """Logits per example of a model: an MLP's ``out_dim``, else the last ``nn.Linear``'s ``out_features``."""
    if isinstance(module, MLP):
        return module.out_dim
    # the last layer with nn.Linear's out_features (a cosine head such as NormedLinear has it too)
    last = [m for m in module.modules() if isinstance(getattr(m, "out_features", None), int)]
    if not last:
        raise ValueError("cannot infer the output size: the model has no nn.Linear layer")
    return last[-1].out_features


class EnsembleTrainer(EnsembleSteps, EnsembleViews, EnsembleState):
    """Minibatch SGD or Adam on M models at once; see the module docstring.

    Args:
        model_fn: builds one initialised model from a generator (e.g. ``lambda g: MLP(..., generator=g)``).
        members: one :class:`Member` per model.
        batch_size: minibatch size B (the last batch of an epoch may be smaller); None: full-batch gradient
            descent (no shuffling, every step on all N examples).
        steps_per_epoch: full-batch steps per epoch (``batch_size=None`` only), so that the one loop's
            per-epoch work (evaluation, checkpoints, progress) is paid once per many steps: for the
            implicit-bias experiments, which run 10**6 steps of gradient descent on small data.
        optimizer: ``"sgd"`` or ``"adam"``; ``momentum`` and ``betas``/``eps`` configure them.
        normalization: ``"batch_size"`` (IW-ERM, default) or ``"weight_sum"``.
        device: ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"`` (stacked for MLPs, func otherwise), ``"stacked"`` or ``"func"``.
        compile: run the step under ``torch.compile`` (faster after a one-off compile).
        precision, channels_last, conv_impl: the func step's ``"fp32"`` (default), ``"tf32"`` or ``"bf16"``, memory
            layout and ``"vmap"`` or ``"grouped"`` convolutions (:mod:`iwlab.train.precision`); in :attr:`step_options`.
        reweight: learned example weights ``fn(logits (M, B, out), y (M, B), x (M, B, ...), params) -> (M, B)``,
            multiplied into every step's weights (see :mod:`iwlab.train.member_losses`; ``params`` is the
            stacked parameter list, or the func backend's parameters in ``named_parameters`` order).
        lr_schedule: ``fn(epoch) -> factor`` (epoch 1-based): in that epoch every member steps with ``lr *
            factor`` (coupled decay ``1 - lr * factor * wd``; frozen diverged members stay at 0), e.g.
            :func:`~iwlab.train.optim.step_warmup_schedule`. None: constant lr (today's numbers, bit for bit).
        transform: training-batch augmentation ``fn(xb (M, B, ...), generator) -> same shape and dtype``, called
            on every step's batch (never on :meth:`logits`) with the trainer's own CPU generator, seeded from
            :func:`~iwlab.train.members.ensemble_rng_seed` + 1 and saved with checkpoints, e.g.
            :func:`~iwlab.train.augment.flip_shift_transform`. Both are recorded in the settings record by
            their ``repr`` (a plain function by its qualified name).

    Each member trains on its own ``Member.loss`` (:mod:`iwlab.train.member_losses`), on either backend.

    Attributes:
        params: stacked parameters (a list for the stacked backend, ``{name: (M, ...)}`` for func).
        buffers: ``{name: (M, ...)}`` stacked buffers of the func backend (e.g. BatchNorm running
            statistics); empty for the stacked backend.
        step_options: ``{"precision", "channels_last", "conv_impl", "compile"}`` as given (checked).

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
        batch_size: int | None,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        normalization: Literal["batch_size", "weight_sum"] = "batch_size",
        device: str | torch.device = "cpu",
        backend: Literal["auto", "stacked", "func"] = "auto",
        compile: bool = False,
        precision: Precision = "fp32",
        channels_last: bool = False,
        conv_impl: ConvImpl = "vmap",
        steps_per_epoch: int = 1,
        reweight: Reweight | None = None,
        lr_schedule: Callable[[int], float] | None = None,
        transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", minimum=1)
        if batch_size is not None and steps_per_epoch != 1:
            raise ValueError(
                "steps_per_epoch is for full-batch gradient descent (batch_size=None); a minibatch epoch is one pass"
            )
        if reweight is not None and not callable(reweight):
            raise TypeError(
                f"reweight must be a callable fn(logits, y, x, params) -> (M, B) weights or None, got {reweight!r}"
            )
        self.reweight = reweight
        for name, fn in (("lr_schedule", lr_schedule), ("transform", transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a callable or None, got {fn!r}")
        self.lr_schedule, self.transform = lr_schedule, transform
        momentum, betas, eps = check_settings(optimizer, momentum, betas, eps, normalization, backend)
        self.members = list(members)
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.momentum, self.betas, self.eps = momentum, betas, eps
        self.normalization = normalization
        self.device = torch.device(device)
        self.M = len(self.members)
        for i, m in enumerate(self.members):
            check_seed(m.seed, f"member {i} seed")
            drw = m.deferred_class_weight
            if drw is not None and not (isinstance(drw, tuple | list) and len(drw) == 2):
                raise ValueError(f"member {i}: deferred_class_weight must be (epoch, class weights), got {drw!r}")
            if drw is not None:
                check_int(drw[0], f"member {i} deferred_class_weight epoch", minimum=1)
                if isinstance(drw[1], str | bytes) or not all(
                    isinstance(c, int | float) and not isinstance(c, bool) for c in drw[1]
                ):
                    raise ValueError(f"member {i}: deferred_class_weight weights must be numbers, got {drw[1]!r}")
        self.generators = [torch.Generator().manual_seed(m.seed) for m in self.members]
        modules = [model_fn(g) for g in self.generators]
        self.template = modules[0]
        if backend == "auto":
            backend = "stacked" if isinstance(self.template, MLP) else "func"
        if backend == "stacked" and not isinstance(self.template, MLP):
            raise ValueError("the stacked backend takes iwlab.models.MLP models only; use backend='func'")
        self.backend = backend
        self.dropout = float(getattr(self.template, "dropout", 0.0)) if backend == "stacked" else 0.0
        if batch_size is None and (self.dropout or backend != "stacked"):
            raise ValueError(
                "full-batch gradient descent (batch_size=None) takes MLPs without dropout (stacked backend)"
            )
        self.out_dim = output_size(self.template)
        self.binary = self.out_dim == 1
        self.bias = bool(getattr(self.template, "bias", True)) if backend == "stacked" else True
        self._logit_grads = logit_grads_fn(self.members, self.binary, reweight, self.out_dim)
        self.buffers: dict[str, Tensor] = {}
        if backend == "stacked":
            self.params: list[Tensor] | dict[str, Tensor] = stack_mlps(modules, self.device)
        else:
            self.params, self.buffers, self.template = func_backend.stack_modules(modules, self.device)
        self.step_options = check_step_options(
            precision, channels_last, conv_impl, compile, backend, self.params, self.template, self.device
        )
        if channels_last:
            self.params = channels_last_weights(self.params)  # each member's conv weights channels-last
        for i, m in enumerate(self.members):
            for name, v in (("lr", m.lr), ("weight_decay", m.weight_decay)):
                if not (math.isfinite(check_real(v, f"member {i} {name}")) and v >= 0):
                    raise ValueError(f"member {i}: {name} must be finite and >= 0, got {v}")
        # lr and weight decay in the parameters' dtype: float64 models keep float64 rates (a decay of 1e-9
        # would vanish in float32's 1 - lr * wd); a rate the dtype cannot hold is refused, not rounded to 0 or inf
        pdtype = self._param_list()[0].dtype
        self.lr = rates([m.lr for m in self.members], "lr", pdtype).to(self.device)  # (M,)
        self.weight_decay = rates([m.weight_decay for m in self.members], "weight_decay", pdtype).to(self.device)
        self.opt_state = init_state(self._param_list(), optimizer, momentum)
        self._run = FitState(diverged_at=[-1] * self.M)  # the loop's state: epoch, history, divergence
        # what the current fit trains on (see data_record), and the data record of a state dict loaded
        # outside fit, checked by the next fit
        self._data_spec: dict[str, Any] | None = None
        self._pending_data: tuple[dict[str, Any], str | Path | None] | None = None
        self._epoch_data: _EpochData | None = None
        self._init_steps(compile)  # the step functions and the private RNG streams (EnsembleSteps)

    # -- the loop's state, as attributes ------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Epochs trained so far (counting those of a resumed checkpoint)."""
        return self._run.epoch

    @property
    def history(self) -> History:
        """The metrics recorded at evaluation epochs."""
        return History(self._run.rows)

    @property
    def diverged_at(self) -> Tensor:
        """``(M,)`` int64: the epoch each member's parameters stopped being finite; -1: never."""
        return torch.tensor(self._run.diverged_at, dtype=torch.long)

    # -- training ------------------------------------------------------------------------------
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
        (:func:`~iwlab.files.load_checkpoint`); the loop is :func:`iwlab.train.fit.fit`. Members whose
        parameters become NaN/inf are frozen and their epoch recorded in :attr:`diverged_at`.

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
            >>> import torch
            >>> from iwlab.models import MLP
            >>> x, y = torch.randn(32, 2), (torch.rand(32) > 0.5).long()
            >>> t = EnsembleTrainer(lambda g: MLP(2, (4,), 1, generator=g), [Member(seed=0)], batch_size=8)
            >>> acc = lambda tr, epoch: {"train_acc": (tr.predict(x) == y).double().mean(1)}
            >>> sorted(t.fit(x, y, epochs=3, callbacks=[acc], progress=False).values("train_acc"))
            [1, 2, 3]
        """
        epochs = check_int(epochs, "epochs", minimum=1)
        if not isinstance(stop_diverged, bool):
            raise TypeError(f"stop_diverged must be True or False, got {stop_diverged!r}")
        x = as_data(x, "x", per_member, self.device)
        y = as_data(y, "y", per_member, self.device)
        mlp = (self.template.in_dim, self.params[0].dtype) if self.backend == "stacked" else None
        check_shapes(x, y, self.M, per_member, mlp)
        if eval_epochs is None:
            eval_epochs = log_epochs(epochs)
        y_dtype = y.dtype
        y_cpu = class_indices(y.cpu(), 2 if self.binary else self.out_dim)  # (N,) or (M, N) int64
        y = y_cpu.to(self.device)
        n_classes, bsz = 2 if self.binary else self.out_dim, self.batch_size or y_cpu.shape[-1]
        w_all, sw = example_weights(
            [m.class_weight for m in self.members], y_cpu, sample_weight, n_classes, self.normalization, bsz
        )
        w_late = switch = None
        if any(m.deferred_class_weight is not None for m in self.members):  # DRW: the weights after the switch
            late = [
                m.class_weight if m.deferred_class_weight is None else m.deferred_class_weight[1] for m in self.members
            ]
            w_late = example_weights(late, y_cpu, sample_weight, n_classes, self.normalization, bsz)[0].to(self.device)
            never = 2**62
            switch = torch.tensor(
                [[m.deferred_class_weight[0] if m.deferred_class_weight else never] for m in self.members]
            )
            switch = switch.to(self.device)  # (M, 1)
        data = data_record(x, y_cpu, y_dtype, sw, per_member)
        if self.epoch > 0 and self._data_spec is not None:  # a second fit continues this one: same data
            try:
                check_record({"data": self._data_spec}, {"data": data}, None)
            except ValueError as err:
                raise ValueError(f"fit() continues this trainer's earlier fit, which had other data: {err}") from None
        self._data_spec = data
        if self._pending_data is not None:  # a state dict loaded by hand: check it against this data
            saved, source = self._pending_data
            check_record({"data": saved}, {"data": self._data_spec}, source)
            self._pending_data = None
        y_loss = y.to(torch.float32) if self.binary else y
        self._epoch_data = _EpochData(x, y_loss, w_all.to(self.device), per_member, callbacks, w_late, switch)
        self._run = fit_loop(
            self,
            epochs=epochs,
            eval_epochs=eval_epochs,
            checkpoint_path=checkpoint_path,
            on_diverged="freeze" if stop_diverged else "continue",
            progress=progress,
            device=self.device,
            run=self._run,
        )
        self._epoch_data = None
        return self.history

    # -- the job the loop runs (iwlab.train.fit.Job) -----------------------------------------------
    uses_global_rng = False  # the func backend swaps in its own stream (see the module docstring)

    def train_epoch(self, epoch: int, clock: Clock) -> None:
        """One epoch of the per-member random protocol (the batch source) into the M-model step."""
        d = self._epoch_data
        assert d is not None, "train_epoch runs inside fit()"
        clock.start()
        if self.batch_size is None:
            self._full_batch_epoch(d, epoch)
        else:
            self._minibatch_epoch(d, epoch)
        clock.stop("training")

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, Tensor]:
        """The callbacks' metrics ``{name: (M,)}`` (NaN: not defined for that member)."""
        d = self._epoch_data
        out: dict[str, Tensor] = {}
        for cb in d.callbacks if d is not None else ():
            out.update(cb(self, epoch))
        return out


def _doc_trainer() -> tuple[EnsembleTrainer, Tensor]:
    """The docstring examples' trainer (two logistic regressions, one epoch) and its ``x`` (16, 2)."""
    x, y = torch.randn(16, 2), (torch.rand(16) > 0.5).long()
    trainer = EnsembleTrainer(lambda g: MLP(2, (), 1, generator=g), [Member(seed=0), Member(seed=1)], batch_size=8)
    trainer.fit(x, y, epochs=1, progress=False)
    return trainer, x
