"""An ensemble's checkpoints: its settings record and the state the one loop saves and restores."""

from __future__ import annotations

import functools
import hashlib
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from iwlab.files import atomic_save, check_record
from iwlab.train.fit import FitState, checkpoint_dict, restore
from iwlab.train.members import Member
from iwlab.train.precision import channels_last_weights


def _plain(v: Any) -> Any:
    """A settings value as plain JSON-able Python (tensors and tuples become lists)."""
    if isinstance(v, Tensor):
        return v.detach().cpu().tolist()
    if isinstance(v, dict):
        return {k: _plain(u) for k, u in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(u) for u in v]
    return v


def describe(fn: Any) -> str:
    """How the settings record names a callable option: its ``repr``, or a plain function's qualified name.

    An object with its own ``__repr__`` (e.g. :func:`~iwlab.train.optim.step_warmup_schedule`'s) is named by it,
    so a resume with other parameters is refused; a function or an object with the default ``repr`` (which holds a
    memory address, different in every process) by ``module.qualname``, which does not see its code.

    Example:
        >>> describe(len), describe(lambda e: 1.0)
        ('builtins.len', 'iwlab.train.ensemble_state.<lambda>')
    """
    if isinstance(fn, functools.partial):  # its repr shows the wrapped function's address
        args = [describe(fn.func), *map(repr, fn.args), *(f"{k}={v!r}" for k, v in fn.keywords.items())]
        return f"functools.partial({', '.join(args)})"
    if isinstance(fn, types.FunctionType | types.BuiltinFunctionType | types.MethodType) or (
        type(fn).__repr__ is object.__repr__
    ):
        qualname = getattr(fn, "__qualname__", type(fn).__qualname__)
        return f"{getattr(fn, '__module__', type(fn).__module__)}.{qualname}"
    return repr(fn)


class EnsembleState:
    """Checkpoint methods of :class:`~iwlab.train.ensemble.EnsembleTrainer` (its base class)."""

    M: int
    members: list[Member]
    device: torch.device
    params: Any
    buffers: dict[str, Tensor]
    _run: FitState
    _data_spec: dict[str, Any] | None
    _pending_data: tuple[dict[str, Any], str | Path | None] | None
    lr_schedule: Any
    transform: Any
    step_options: dict[str, Any]
    _transform_gen: torch.Generator | None
    _param_list: Any  # from EnsembleViews

    def _config_record(self) -> dict[str, Any]:
        """The trainer's settings for the checkpoint's settings record (see :meth:`state_dict`)."""
        return {
            "members": [
                {
                    "seed": int(m.seed),
                    "lr": float(m.lr),  # the configured lr: a diverged member's live lr is 0
                    "weight_decay": float(m.weight_decay),
                    "class_weight": None if m.class_weight is None else [float(c) for c in m.class_weight],
                    # only when set, so records (and checkpoints) of cross-entropy members stay as they were
                    **({"loss": m.loss, "loss_kwargs": _plain(m.loss_kwargs)} if m.loss != "ce" else {}),
                    **(
                        {"deferred_class_weight": [int(m.deferred_class_weight[0]), _plain(m.deferred_class_weight[1])]}
                        if m.deferred_class_weight is not None
                        else {}
                    ),
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
            **({"steps_per_epoch": self.steps_per_epoch} if self.batch_size is None else {}),
            **({"reweight": getattr(self.reweight, "__qualname__", repr(self.reweight))} if self.reweight else {}),
            # only when set, so records of runs without them stay as they were
            **({"lr_schedule": describe(self.lr_schedule)} if self.lr_schedule is not None else {}),
            **({"transform": describe(self.transform)} if self.transform is not None else {}),
            "normalization": self.normalization,
            "backend": self.backend,
            # only when set: bf16/tf32 change the numbers; channels_last, conv_impl and compile only how they are
            # computed (float32 round-off; conv_impl and compile draw other dropout masks), as device does
            **({"precision": self.step_options["precision"]} if self.step_options["precision"] != "fp32" else {}),
            "dropout": self.dropout,
            "parameters": {n: [list(p.shape), str(p.dtype)] for n, p in self.template.named_parameters()},
            "buffers": {n: [list(b.shape), str(b.dtype)] for n, b in self.template.named_buffers()},
            # after the shapes, so a shape change is named as such; this catches the rest the repr shows
            # (dropout rates, activations, BatchNorm momentum), as a hash to keep messages on one line
            "model_repr_sha256": hashlib.sha256(repr(self.template).encode()).hexdigest()[:16],
        }

    def spec(self) -> dict[str, Any]:
        """The settings record: :meth:`_config_record` and the current fit's data record."""
        return {**self._config_record(), "data": self._data_spec}

    def training_state(self) -> dict[str, Any]:
        """Parameters, buffers, optimizer state, live lr, generators, the func backend's RNG stream and, with a
        ``transform``, its generator's state."""
        state = {
            "params": self.params,
            "buffers": self.buffers,
            "opt_state": self.opt_state,
            "lr": self.lr,
            "generators": [g.get_state() for g in self.generators],
            "rng": self._rng,
            "seeds": [m.seed for m in self.members],
        }
        if self._transform_gen is not None:  # only then, so checkpoints without a transform stay as they were
            state["transform_rng"] = self._transform_gen.get_state()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` output, moving tensors to this trainer's device."""

        def dev(v: Any) -> Any:  # a checkpoint made on another device resumes on this one
            if isinstance(v, Tensor):
                return v.to(self.device)
            if isinstance(v, dict):
                return {k: dev(u) for k, u in v.items()}
            if isinstance(v, list):
                return [dev(u) for u in v]
            return v

        if len(state["generators"]) != self.M or tuple(state["lr"].shape) != (self.M,):
            raise ValueError(
                f"the saved training state holds {len(state['generators'])} generators and lr of shape "
                f"{tuple(state['lr'].shape)} for an ensemble of {self.M} members: it is damaged"
            )
        if self._transform_gen is not None and not isinstance(state.get("transform_rng"), Tensor):
            raise ValueError("the saved training state holds no transform generator state for this transform")
        self.params = dev(state["params"])
        # a resume may switch channels_last: the parameters take this trainer's layout, and the optimizer's buffers
        # their parameters' (the in-place updates are several times slower on mismatched strides)
        if self.step_options["channels_last"]:
            self.params = channels_last_weights(self.params)
        elif isinstance(self.params, dict):
            self.params = {n: p.contiguous() for n, p in self.params.items()}
        self.buffers = dev(state["buffers"])
        self.opt_state = dev(state["opt_state"])
        for key, bufs in self.opt_state.items():
            if isinstance(bufs, list):
                self.opt_state[key] = [
                    torch.empty_like(p).copy_(b) for p, b in zip(self._param_list(), bufs, strict=True)
                ]
        self.lr = dev(state["lr"])  # the live lr: diverged members stay frozen
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)
        if self._transform_gen is not None:
            self._transform_gen.set_state(state["transform_rng"].cpu())
        if state.get("rng") is not None and self._rng is not None:
            self._rng = {k: v for k, v in state["rng"].items() if k == "cpu" or self.device.type == "cuda"}
            if self.device.type == "cuda" and "cuda" not in self._rng:  # a CPU checkpoint resumed on a GPU
                self._rng["cuda"] = self._initial_rng()["cuda"]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit, and a record of the settings it was made with.

        The one checkpoint format of the training loop (:func:`iwlab.train.fit.checkpoint_dict`):
        ``"format"``, ``"epoch"``, ``"rows"`` (the history), ``"diverged_at"``, ``"clock"``, ``"spec"``
        and ``"job"``, which holds ``"params"``, ``"buffers"``, ``"opt_state"``, ``"lr"`` (the live
        per-member lr: 0 for frozen diverged members), ``"generators"``, ``"rng"`` (the func backend's
        private RNG stream in ``torch.get_rng_state()`` format under ``"cpu"``, plus ``"cuda"`` on a GPU;
        ``None`` for the stacked backend), ``"seeds"`` and, with a ``transform``, ``"transform_rng"`` (its
        generator's state).

        ``"spec"`` records what the state was made from: the members (seed, configured lr, weight decay,
        class weights), the optimizer (name, momentum, betas, eps), batch size, normalization, backend,
        dropout (stacked), ``precision`` when not ``"fp32"``, ``lr_schedule`` and ``transform`` when set (see
        :func:`describe`), the model's parameter and buffer names, shapes and dtypes and a hash of its ``repr``,
        and under ``"data"`` (once :meth:`fit` has run) ``per_member``, the shapes and dtypes of ``x``,
        ``y`` and ``sample_weight`` and a :func:`~iwlab.files.fingerprint` of the inputs
        ``x`` (up to 65,536 evenly spaced elements), the labels and the sample weights.

        What the record does not catch: changes to elements of a large ``x`` between the sampled ones
        (e.g. a different preprocessing that leaves those equal); model code changes invisible in the
        ``repr`` and the parameter shapes (a different activation or initialisation in custom code);
        ``callbacks`` and ``eval_epochs`` (they do not change training); ``device``, ``compile``, ``channels_last``
        and ``conv_impl`` (how a step is computed, not what: a resume may switch them); the code of
        an ``lr_schedule`` or ``transform`` that is a plain function (only its name is recorded).

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> state = trainer.state_dict()
            >>> state["format"], state["epoch"], sorted(state["spec"])[:3]
            ('iwlab.fit/1', 1, ['backend', 'batch_size', 'buffers'])
        """
        return checkpoint_dict(self, self._run, self.device)

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
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> from iwlab.train import EnsembleTrainer, Member
            >>> again = EnsembleTrainer(lambda g: MLP(2, (), 1, generator=g), [Member(seed=0), Member(seed=1)],
            ...                         batch_size=8)
            >>> again.load_state_dict(trainer.state_dict())
            >>> again.epoch, torch.equal(again.logits(x), trainer.logits(x))
            (1, True)
        """
        if not isinstance(state, dict) or "epoch" not in state:
            what = "the state dict" if source is None else f"checkpoint {source}"
            raise ValueError(f"{what} is not an EnsembleTrainer state (got {type(state).__name__})")
        spec = state.get("spec")
        config = None if spec is None else {k: v for k, v in spec.items() if k != "data"}
        check_record(config, self._config_record(), source)
        data = spec.get("data")
        if data is not None and self._data_spec is not None:
            check_record({"data": data}, {"data": self._data_spec}, source)
        self._run = restore(self, state, epochs=None, source=source, check=False)
        if data is not None and self._data_spec is None:
            self._pending_data = (data, source)

    def save_checkpoint(self, path: str | Path) -> None:
        """Write :meth:`state_dict` atomically (temp file + rename), so a kill never leaves half a file.

        Example:
            >>> import torch
            >>> from iwlab.models import MLP
            >>> from iwlab.train.ensemble import _doc_trainer
            >>> trainer, x = _doc_trainer()  # two logistic regressions fitted for one epoch on x (16, 2)
            >>> import tempfile, pathlib
            >>> with tempfile.TemporaryDirectory() as d:
            ...     trainer.save_checkpoint(pathlib.Path(d) / "cell.pt")
            ...     sorted(p.name for p in pathlib.Path(d).iterdir())
            ['cell.pt']
        """
        atomic_save(self.state_dict(), path)
