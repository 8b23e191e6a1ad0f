"""The approximate strategy: scores are a learned model's predictions of each example's next loss.

Source: Katharopoulos & Fleuret (2017), "Biased Importance Sampling for Deep Neural Network
Training", §3.3 and Algorithm 1; the predictor is :class:`~iwlab.sampling.predictor.LossPredictor`.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> s = ApproxSampler(TensorDataset(torch.randn(8, 2), torch.tensor([0, 1] * 4)), batch_size=2, seed=0)
    >>> s.sample().indices.shape
    torch.Size([2])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from iwlab.functional.checks import check_int, check_real
from iwlab.sampling.base import ImportanceSampler
from iwlab.sampling.checks import state_equal, state_tensor
from iwlab.sampling.predictor import LossPredictor
from iwlab.sampling.strategies import ClassAwareSampler

__all__ = ["ApproxSampler"]


class ApproxSampler(ClassAwareSampler):
    """Scores from the paper's :class:`LossPredictor`, trained online alongside the model (§3.3).

    ``history_`` (N, H) keeps each example's last ``history`` observed losses (oldest first, left
    aligned) and ``lengths_`` (N,) how many there are. ``update`` first takes one Adam step on the
    predictor's MSE between its prediction from the old history and the observed losses (Algorithm 1,
    line 9), then appends the losses to the histories (line 10).

    Args:
        history: H >= 1, losses kept per example.
        hidden: the predictor's LSTM and embedding size, >= 1.
        predictor_lr: the predictor's Adam learning rate, finite and > 0.
        **kw: as :class:`ImportanceSampler`, plus ``labels`` and ``num_classes``.

    Raises:
        ValueError: as :class:`ImportanceSampler`, a label outside ``[0, num_classes)``, or an
            argument above out of range; ``update`` raises when the predictor's squared error on
            the observed losses overflows float32 (losses above about 1e19).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.randn(50, 2), torch.randint(0, 3, (50,)))
        >>> s = ApproxSampler(ds, batch_size=4, seed=0)
        >>> b = s.sample()
        >>> s.update(b.indices, torch.rand(4))
        >>> int(s.lengths_.sum()) == len(set(b.indices.tolist()))
        True
    """

    method = "approx"
    _score_source = "the loss predictor's predictions"
    _state_keys = (
        *ImportanceSampler._state_keys,
        "history_",
        "lengths_",
        "predictor",
        "optimizer",
        "predictor_loss_",
    )

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        history: int = 10,
        hidden: int = 32,
        predictor_lr: float = 1e-3,
        **kw: Any,
    ) -> None:
        super().__init__(dataset, batch_size, **kw)
        history = check_int(history, "history")
        hidden = check_int(hidden, "hidden")
        if history < 1 or hidden < 1:
            raise ValueError(f"history and hidden must be >= 1, got history={history}, hidden={hidden}")
        lr = check_real(predictor_lr, "predictor_lr")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"predictor_lr must be a finite number > 0, got {predictor_lr}")
        self.history = history
        self.hidden = hidden
        self.predictor_lr = lr
        # the predictor's init comes from the sampler's seed, not the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919)
            self.predictor = LossPredictor(self.num_classes, hidden=hidden)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.history_ = torch.zeros(self.n, history)
        self.lengths_ = torch.zeros(self.n, dtype=torch.long)
        self.predictor_loss_: float | None = None

    def predict(self, indices: Tensor) -> Tensor:
        """The predictor's loss estimates (P,) for dataset ``indices`` (P,), from current histories."""
        return self.predictor(self.history_[indices], self.lengths_[indices], self.labels[indices])

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        # predicted losses <= 0 are clamped to 0; issue 12 replaces this
        return self.predict(pool).clamp_min(0.0)

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        pred = self.predict(indices)  # (B,), from the history before this step
        loss = torch.nn.functional.mse_loss(pred, losses)
        if not bool(torch.isfinite(loss)):
            # an inf/NaN gradient would turn every predictor weight into NaN for good
            raise ValueError(
                f"the loss predictor's squared error overflows float32 for these losses (largest "
                f"{float(losses.max()):g}); the sampler is unchanged"
            )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.predictor_loss_ = float(loss.detach())
        # an index drawn twice keeps its last loss only (indexed assignment with repeats is undefined)
        last = {int(i): j for j, i in enumerate(indices.tolist())}
        idx = torch.tensor(list(last.keys()), dtype=torch.long)
        val = losses[torch.tensor(list(last.values()), dtype=torch.long)]
        h, n = self.history_[idx], self.lengths_[idx]  # (U, H), (U,)
        full = n >= self.history
        h[full] = torch.roll(h[full], -1, dims=1)  # drop the oldest to make room
        pos = n.clamp(max=self.history - 1)
        h[torch.arange(idx.numel()), pos] = val
        self.history_[idx] = h
        self.lengths_[idx] = (n + 1).clamp(max=self.history)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            **super().state_dict(),
            "history": self.history,
            "history_": self.history_.clone(),
            "lengths_": self.lengths_.clone(),
            "predictor": copy.deepcopy(self.predictor.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "predictor_loss_": self.predictor_loss_,
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        super()._check_state(state)
        state_equal(state, "history", self.history, "history")
        what = f"n={self.n}, history={self.history}"
        h = state_tensor(state, "history_", (self.n, self.history), "float", what)
        if h.dtype != torch.float32:  # the predictor runs in float32; another dtype fails at the next sample()
            raise ValueError(f"checkpoint field 'history_' must be float32, got {h.dtype}")
        lengths = state_tensor(state, "lengths_", (self.n,), "int", what)
        if bool(((lengths < 0) | (lengths > self.history)).any()):
            raise ValueError(f"checkpoint field 'lengths_' must be in [0, {self.history}]")
        mine, theirs = self.predictor.state_dict(), state["predictor"]
        if not isinstance(theirs, dict) or set(theirs) != set(mine):
            raise ValueError("checkpoint field 'predictor' does not hold this sampler's LossPredictor parameters")
        for key, v in mine.items():
            t = theirs[key]
            if not isinstance(t, Tensor) or t.shape != v.shape:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(
                    f"checkpoint field 'predictor' entry '{key}' has shape {got} but this sampler's is "
                    f"{tuple(v.shape)} (hidden={self.hidden}, num_classes={self.num_classes})"
                )
        trial = torch.optim.Adam(copy.deepcopy(self.predictor).parameters(), lr=self.predictor_lr)
        try:
            trial.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())
            raise ValueError(f"checkpoint field 'optimizer' does not fit this sampler's predictor: {msg}") from None
        loss = state["predictor_loss_"]
        if loss is not None and not isinstance(loss, int | float):
            raise ValueError(f"checkpoint field 'predictor_loss_' must be a number or None, got {type(loss).__name__}")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.history_ = state["history_"].detach().cpu().clone()
        self.lengths_ = state["lengths_"].detach().cpu().long().clone()
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.predictor_loss_ = state["predictor_loss_"]
