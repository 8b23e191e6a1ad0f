"""Checkpoints of the importance samplers: the state every strategy shares, checked before it is loaded.

:class:`SamplerState` is the base of :class:`~iwlab.sampling.base.ImportanceSampler`: ``state_dict()``
holds the random generator, the step count and the loss EMA (and the dataset size ``n``, to refuse a
state of another dataset); strategies add their fields through ``_state_keys``, ``_check_state`` and
``_set_state``. Every field is checked before anything changes.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from iwlab.sampling import UniformSampler
    >>> sorted(UniformSampler(TensorDataset(torch.zeros(4)), batch_size=2).state_dict())[:3]
    ['cursor_', 'ema_loss_', 'generator']
"""

from __future__ import annotations

import math
from typing import Any

import torch

from iwlab.functional.checks import check_real
from iwlab.sampling.checks import state_equal, state_int

__all__ = ["SamplerState"]


class SamplerState:
    """Mixin: the checkpoint of what every sampler shares (method, n, generator, steps_, ema_loss_)."""

    method: str
    n: int
    generator: torch.Generator
    steps_: int
    ema_loss_: float | None

    _state_keys: tuple[str, ...] = ("generator", "steps_", "ema_loss_")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue sampling exactly where this sampler is, and the dataset size ``n``.

        Example:
            >>> from torch.utils.data import TensorDataset
            >>> from iwlab.sampling import UniformSampler
            >>> state = UniformSampler(TensorDataset(torch.zeros(6)), batch_size=2).state_dict()
            >>> state["method"], state["n"]
            ('uniform', 6)
        """
        return {
            "method": self.method,
            "n": self.n,
            "generator": self.generator.get_state(),
            "steps_": self.steps_,
            "ema_loss_": self.ema_loss_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` of a sampler of the same method on a same-size dataset.

        Every field is checked before anything changes (tensors are moved to the CPU, where the
        sampler keeps its state).

        Raises:
            TypeError: ``state`` is not a dict.
            ValueError: another method, a missing field, or a field that does not fit this sampler
                (the dataset size ``n``, ``num_classes``, ``history``, a tensor's shape), named with
                the checkpoint's value and this sampler's.

        Example:
            >>> from torch.utils.data import TensorDataset
            >>> from iwlab.sampling import UniformSampler
            >>> ds = TensorDataset(torch.arange(6.0))
            >>> a, b = UniformSampler(ds, batch_size=2, seed=1), UniformSampler(ds, batch_size=2, seed=2)
            >>> b.load_state_dict(a.state_dict())
            >>> torch.equal(a.sample().indices, b.sample().indices)
            True
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        if state.get("method") != self.method:
            raise ValueError(f"checkpoint is for the '{state.get('method')}' sampler, this is '{self.method}'")
        missing = [key for key in self._state_keys if key not in state]
        if missing:
            raise ValueError(f"checkpoint for a '{self.method}' sampler lacks field(s) {', '.join(missing)}")
        self._check_state(state)
        self._set_state(state)

    def _check_state(self, state: dict[str, Any]) -> None:
        state_equal(state, "n", self.n, "dataset size")
        gen = state["generator"]
        try:
            torch.Generator().set_state(gen.detach().cpu())
        except (AttributeError, TypeError, RuntimeError):
            raise ValueError("checkpoint field 'generator' is not a torch.Generator state") from None
        if state_int(state, "steps_") < 0:
            raise ValueError(f"checkpoint field 'steps_' must be >= 0, got {state['steps_']}")
        ema = state["ema_loss_"]
        if ema is not None:
            try:
                v = check_real(ema, "checkpoint field 'ema_loss_'")
            except TypeError as e:
                raise ValueError(str(e)) from None
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"checkpoint field 'ema_loss_' must be finite and >= 0 or None, got {ema}")

    def _set_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].detach().cpu())
        self.steps_ = state_int(state, "steps_")
        self.ema_loss_ = None if state["ema_loss_"] is None else float(state["ema_loss_"])
