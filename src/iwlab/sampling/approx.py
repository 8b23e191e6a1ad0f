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
from iwlab.functional.sampling import floored_scores
from iwlab.sampling.base import ImportanceSampler
from iwlab.sampling.checks import state_equal, state_tensor
from iwlab.sampling.predictor import LossPredictor
from iwlab.sampling.strategies import ClassAwareSampler

__all__ = ["ApproxSampler", "append_losses"]

# the largest loss whose squared error against a prediction of similar size stays within float32
_MAX_LOSS = math.sqrt(torch.finfo(torch.float32).max) / 2  # about 9.2e18


def append_losses(history: Tensor, lengths: Tensor, indices: Tensor, losses: Tensor) -> None:
    """Append ``losses`` to the left-aligned ``history`` rows of ``indices``, in place, on any device.

    Each row keeps its last H losses, oldest first: a row with room gets the loss at position
    ``lengths[i]``; a full row drops its oldest. An index drawn more than once in the batch keeps its
    last loss only ("last write wins"). Vectorized, without a host sync: every occurrence of a repeated
    index computes the same new row (from the old row and the last occurrence's loss), so the order in
    which the duplicate writes land does not matter.

    Args:
        history: (N, H) float losses, updated in place.
        lengths: (N,) int64 counts in [0, H], updated in place.
        indices: (B,) int64 dataset indices in [0, N), on ``history``'s device (repeats allowed).
        losses: (B,) losses, on ``history``'s device.

    Raises:
        ValueError: shapes that do not fit, or indices that are not int64 (the range is not checked).

    Example:
        >>> h, n = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
        >>> append_losses(h, n, torch.tensor([0, 1, 0]), torch.tensor([1.0, 2.0, 3.0]))
        >>> h.tolist(), n.tolist()
        ([[3.0, 0.0], [2.0, 0.0], [0.0, 0.0]], [1, 1, 0])
    """
    # shapes and dtypes only: checking the index range would need a host sync (the sampler's update
    # checks it before calling this); an index out of range raises in the scatter below
    if history.dim() != 2 or lengths.shape != history.shape[:1]:
        raise ValueError(
            f"history must be (N, H) and lengths (N,), got {tuple(history.shape)} and {tuple(lengths.shape)}"
        )
    if indices.dtype != torch.long or indices.dim() != 1 or losses.shape != indices.shape:
        raise ValueError(
            f"indices must be (B,) int64 and losses (B,), got {tuple(indices.shape)} {indices.dtype} and "
            f"{tuple(losses.shape)}"
        )
    B, H = indices.numel(), history.shape[1]
    pos = torch.arange(B, device=indices.device)  # (B,)
    # position of each index's last occurrence in the batch
    last = torch.full((history.shape[0],), -1, dtype=torch.long, device=indices.device)
    last.scatter_reduce_(0, indices, pos, reduce="amax")
    val = losses.to(history.dtype)[last[indices]]  # (B,): every occurrence takes the last loss
    rows, n = history[indices], lengths[indices]  # (B, H), (B,)
    full = (n >= H).unsqueeze(1)  # (B, 1)
    rows = torch.where(full, rows.roll(-1, dims=1), rows)  # a full row drops its oldest
    rows.scatter_(1, n.clamp(max=H - 1).unsqueeze(1), val.unsqueeze(1))
    history[indices] = rows
    lengths[indices] = (n + 1).clamp(max=H)


class ApproxSampler(ClassAwareSampler):
    """Scores from the paper's :class:`LossPredictor`, trained online alongside the model (§3.3).

    ``history_`` (N, H) keeps each example's last ``history`` observed losses (oldest first, left
    aligned) and ``lengths_`` (N,) how many there are. ``update`` first takes one Adam step on the
    predictor's MSE between its prediction from the old history and the observed losses (Algorithm 1,
    line 9), then appends the losses to the histories (line 10).

    Scores: the predictions, floored by :func:`~iwlab.functional.sampling.floored_scores` at
    ``score_floor`` times the pool's mean positive prediction. A prediction can be <= 0 or far too
    small; clamping it to 0 would give the example p = 0, so it would never be drawn again, its loss
    never observed, the predictor never corrected, and the k = 1 estimate biased (issue 12: a whole
    class starved). With the floor every pool member has p > 0 and weight ``alpha <= (1 + f)/f``,
    while ``p ∝ predicted loss`` is kept for every example predicted above the floor.

    State lives on the device of the dataset's tensors (``device`` overrides it): the histories,
    lengths, labels and predictor. A step is one batched predictor call on the pool and one on the
    minibatch; the history update is a vectorized scatter, with no Python loop and no host sync
    (the pool's scores are copied to the host once per step, where the draw happens, and the observed
    losses once, where ``update`` checks them: a wrong loss is refused, not learned).

    Args:
        history: H >= 1, losses kept per example.
        hidden: the predictor's LSTM and embedding size, >= 1.
        predictor_lr: the predictor's Adam learning rate, finite and > 0.
        score_floor: f in (0, 1], the score floor as a fraction of the pool's mean positive prediction.
        device: where the state lives; default the device of ``dataset.tensors[0]`` (CPU without).
        **kw: as :class:`ImportanceSampler`, plus ``labels`` and ``num_classes``.

    Attributes:
        history_: (N, H) float32 loss histories, on ``device``.
        lengths_: (N,) int64 history lengths in [0, H], on ``device``.
        predictor_loss_: the predictor's last training MSE (float), or None before any update.

    Raises:
        ValueError: as :class:`ImportanceSampler`, a label outside ``[0, num_classes)``, or an
            argument above out of range; ``update`` raises for losses above 9.2e18, whose squared
            error would overflow float32 and turn every predictor weight into NaN; ``sample`` raises
            if the predictor's output is not finite.

    References:
        Katharopoulos & Fleuret (2017), §3.3, §3.3.1 and Algorithm 1.

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
    needs_indices = True
    _score_source = "the loss predictor's floored predictions"
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
        score_floor: float = 0.1,
        device: str | torch.device | None = None,
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
        floor = check_real(score_floor, "score_floor")
        if not 0 < floor <= 1:
            raise ValueError(
                f"score_floor must be in (0, 1] (a fraction of the pool's mean prediction), got {score_floor}"
            )
        if device is None:
            tensors = getattr(dataset, "tensors", None)
            device = tensors[0].device if tensors and isinstance(tensors[0], Tensor) else "cpu"
        self.device = torch.device(device)
        self.history = history
        self.hidden = hidden
        self.predictor_lr = lr
        self.score_floor = floor
        # the predictor's init comes from the sampler's seed, not the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919)
            self.predictor = LossPredictor(self.num_classes, hidden=hidden)
        self.predictor.to(self.device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.labels_ = self.labels.to(self.device)  # (N,) on the state's device
        self.history_ = torch.zeros(self.n, history, device=self.device)
        self.lengths_ = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self._predictor_loss: Tensor | None = None  # a device scalar: reading it would sync

    @property
    def predictor_loss_(self) -> float | None:
        """The predictor's MSE at its last training step (read on demand: a host sync on a GPU)."""
        return None if self._predictor_loss is None else float(self._predictor_loss)

    def predict(self, indices: Tensor) -> Tensor:
        """The predictor's loss estimates (P,) for dataset ``indices`` (P,), from current histories.

        Returned on the sampler's ``device``; raw predictions, of any sign (see :meth:`sample` for the
        scores drawn with).
        """
        idx = indices.to(self.device)
        return self.predictor(self.history_[idx], self.lengths_[idx], self.labels_[idx])

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None, data: Any = None) -> Tensor:
        # positive by construction: the caller copies them to the host and checks they are finite
        return floored_scores(self.predict(pool), self.score_floor, validate=False)

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        # indices, losses: (B,) validated CPU int64 / float32. The squared error of a loss past this
        # bound overflows float32, and its inf gradient would make every predictor weight NaN for good
        top = float(losses.max())
        if top > _MAX_LOSS:
            raise ValueError(
                f"the loss predictor's squared error overflows float32 for losses above {_MAX_LOSS:.2g} (largest "
                f"{top:g}); the sampler is unchanged"
            )
        idx = indices.to(self.device, non_blocking=True)
        val = losses.to(self.device, non_blocking=True)
        pred = self.predict(idx)  # (B,), from the history before this step
        # the MSE as a sum of squares / B: the mean of squares would overflow float32 in its sum for
        # losses near the bound above, while this stays finite
        loss = ((pred - val).pow(2) / idx.numel()).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._predictor_loss = loss.detach()
        append_losses(self.history_, self.lengths_, idx, val)

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
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                # a NaN weight makes every prediction NaN: the sampler could only refuse every step
                raise ValueError(f"checkpoint field 'predictor' entry '{key}' has a non-finite value")
        trial = torch.optim.Adam(copy.deepcopy(self.predictor).parameters(), lr=self.predictor_lr)
        try:
            trial.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())
            raise ValueError(f"checkpoint field 'optimizer' does not fit this sampler's predictor: {msg}") from None
        loss = state["predictor_loss_"]
        if loss is not None:
            try:
                v = float(check_real(loss, "checkpoint field 'predictor_loss_'"))
            except (TypeError, OverflowError):  # a bool, a string, an int past float's range
                raise ValueError(f"checkpoint field 'predictor_loss_' must be a number or None, got {loss!r}") from None
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"checkpoint field 'predictor_loss_' must be finite and >= 0 or None, got {loss!r}")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.history_ = state["history_"].detach().to(self.device).clone()
        self.lengths_ = state["lengths_"].detach().to(self.device).long().clone()
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])  # moves its moments to the parameters' device
        loss = state["predictor_loss_"]
        self._predictor_loss = None if loss is None else torch.tensor(float(loss), device=self.device)
