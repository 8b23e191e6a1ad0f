"""The sampler base class: draw a pool, score it, draw a minibatch from it and weight it.

:class:`ImportanceSampler` holds what every strategy shares (the pool, the smoothing, the weights
``alpha = 1/(P p^k)`` of :mod:`iwlab.functional.sampling`, the update checks and checkpoints); the
strategies in :mod:`iwlab.sampling.strategies` and :mod:`iwlab.sampling.approx` supply the scores.
Source: Katharopoulos & Fleuret (2017), "Biased Importance Sampling for Deep Neural Network
Training", eq. 10-12 and §3.3.

Example:
    >>> import torch
    >>> SampledBatch(torch.tensor([1]), torch.ones(1), torch.ones(1), (torch.zeros(1, 2),)).indices.tolist()
    [1]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from iwlab.functional.checks import check_int, check_real, check_seed
from iwlab.functional.sampling import (
    MULTINOMIAL_MAX_CATEGORIES,
    draw,
    importance_weights,
    sampling_probabilities,
)
from iwlab.sampling.checks import and_more, check_indices, check_interval, first_entries, state_equal, state_int

__all__ = ["MAX_POOL", "ImportanceSampler", "SampledBatch", "Smoothing", "fetch"]

Smoothing = float | Literal["adaptive"]
# largest pre-sampled pool (scored by a forward pass every step); beyond it, score the whole dataset
# (presample=None) instead
MAX_POOL = MULTINOMIAL_MAX_CATEGORIES


@dataclass
class SampledBatch:
    """One drawn minibatch.

    Attributes:
        indices: (B,) int64 dataset indices, on the CPU (with replacement: an index may repeat).
        weights: (B,) float32 ``alpha``, on the data's device; multiply the per-example losses by these.
        probs: (B,) float32, the probability each example was drawn with, within the pool.
        data: the fetched items, collated (e.g. ``(x, y)``).
    """

    indices: Tensor
    weights: Tensor
    probs: Tensor
    data: tuple[Any, ...]


def fetch(dataset: Dataset, indices: Tensor) -> tuple[Any, ...]:
    """The dataset's items at ``indices``, collated into a tuple of batched tensors.

    Tensor-backed datasets (``TensorDataset``, anything with ``.tensors``) are indexed directly (on
    whatever device they live); others go through ``__getitems__`` or ``__getitem__`` + the default
    collate, as ``DataLoader`` does.

    Args:
        dataset: a map-style dataset.
        indices: (B,) integer tensor (any integer dtype, any device) of positions in ``[0, len(dataset))``.

    Returns:
        The collated items, e.g. ``(x, y)`` with ``x`` (B, ...), on the dataset's device.

    Raises:
        TypeError: ``indices`` is not an integer tensor (a bool mask or a float tensor is refused:
            it would select other items than the positions it holds).
        ValueError: ``indices`` is not 1-D, or holds a negative index or one >= ``len(dataset)``
            (which plain indexing would wrap around or fail on), named with its position.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> fetch(TensorDataset(torch.arange(5.0)), torch.tensor([4, 0]))
        (tensor([4., 0.]),)
    """
    try:
        n: int | None = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        n = None
    idx = check_indices(indices, n, "indices")  # (B,) int64
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tuple(t[idx.to(t.device)] for t in tensors)
    items = (
        dataset.__getitems__(idx.tolist()) if hasattr(dataset, "__getitems__") else [dataset[i] for i in idx.tolist()]
    )
    out = default_collate(items)
    return tuple(out) if isinstance(out, list | tuple) else (out,)


class ImportanceSampler:
    """Base class: draws a pool, scores it (``_scores``), samples B from it and weights them.

    Args:
        dataset: any map-style ``Dataset`` (``len`` and integer indexing), at least one example.
        batch_size: B, examples per minibatch: an integer >= 1 (Python, numpy or 0-d torch integer).
        k: the bias exponent in ``alpha = 1/(P p^k)``, finite and in (-inf, 1]; 1 is unbiased (eq. 11-12).
        presample: pool size as a multiple of B (pool = round(presample * B), drawn uniformly with
            replacement; finite, with a pool of 1 to :data:`MAX_POOL` examples); ``None`` scores the
            whole dataset every step.
        smoothing: additive smoothing c, finite and >= 0, or ``"adaptive"`` (c = EMA(minibatch loss) / 2,
            paper §4.2).
        ema: decay in [0, 1) of the minibatch-loss moving average used by adaptive smoothing.
        seed: integer seed of the sampler's own ``torch.Generator`` (independent of the global RNG).
        match_unbiased_sum: for k < 1, rescale each minibatch's weights so that their score-weighted
            sum equals the unbiased (k = 1) weights' (the authors' code does this; see
            :func:`~iwlab.functional.sampling.importance_weights`). Off: eq. 12 as written, whose
            scale differs from k = 1 and varies from batch to batch. No effect for k = 1.

    Raises:
        TypeError: an integer argument that is not integer-like (a bool or float is refused), or a
            real argument that is not a number.
        ValueError: an empty dataset, or an argument out of the range above.
    """

    method = "base"
    # what the scores are called in error messages
    _score_source = "scores"

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        k: float = 1.0,
        presample: float | None = 3.0,
        smoothing: Smoothing = 0.0,
        ema: float = 0.9,
        seed: int = 0,
        match_unbiased_sum: bool = False,
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if n < 1:
            raise ValueError("dataset is empty")
        batch_size = check_int(batch_size, "batch_size")
        if not 1 <= batch_size <= MAX_POOL:  # 2**40 would loop (and allocate) without end
            raise ValueError(f"batch_size must be in [1, {MAX_POOL}], got {batch_size!r}")
        kk = check_real(k, "k")
        if not (kk <= 1.0 and math.isfinite(kk)):
            raise ValueError(f"k must be finite and in (-inf, 1] (k = 1 is unbiased), got {k}")
        if presample is not None:
            ps = check_real(presample, "presample")
            if not (ps > 0 and math.isfinite(ps)):
                raise ValueError(
                    f"presample must be a finite number > 0 (a multiple of batch_size) or None, got {presample}"
                )
            pool = round(ps * batch_size)
            if not 1 <= pool <= MAX_POOL:
                raise ValueError(
                    f"presample * batch_size = {ps:g} * {batch_size} gives a pool of {pool} examples; it must be "
                    f"in [1, {MAX_POOL}] (use presample=None to score the whole dataset)"
                )
            presample = ps
        if smoothing != "adaptive":
            if isinstance(smoothing, str):
                raise ValueError(f"smoothing must be a number >= 0 or 'adaptive', got {smoothing!r}")
            c = check_real(smoothing, "smoothing")
            if not (c >= 0 and math.isfinite(c)):
                raise ValueError(f"smoothing must be a finite number >= 0 or 'adaptive', got {smoothing!r}")
            smoothing = c
        ema = check_interval(ema, "ema", 0.0, 1.0, hi_open=True)
        seed = check_seed(seed)  # torch.Generator.manual_seed would wrap -1 to 2**64 - 1 silently
        if not isinstance(match_unbiased_sum, bool):  # "false" would be truthy
            raise TypeError(f"match_unbiased_sum must be True or False, got {match_unbiased_sum!r}")
        self.match_unbiased_sum = match_unbiased_sum
        self.dataset = dataset
        self.batch_size = batch_size
        self.k = kk
        self.presample = presample
        self.smoothing = smoothing
        self.ema = ema
        self.seed = seed
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_ = 0
        self.ema_loss_: float | None = None  # moving average of the minibatch mean loss

    # -- the sampling step ----------------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        """Examples scored per step (P)."""
        if self.presample is None:
            return self.n
        return round(self.presample * self.batch_size)  # in [1, MAX_POOL], checked in __init__

    def smoothing_constant(self) -> float:
        """The additive smoothing c used now (adaptive: half the loss EMA, 0 before any update)."""
        if self.smoothing == "adaptive":
            return 0.0 if self.ema_loss_ is None else 0.5 * self.ema_loss_
        return float(self.smoothing)

    def _draw_pool(self) -> Tensor:
        if self.presample is None:
            return torch.arange(self.n)
        return torch.randint(self.n, (self.pool_size,), generator=self.generator)

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        raise NotImplementedError

    def _pool_scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        """The pool's scores (P,) on the CPU, checked finite and >= 0 (in their own dtype)."""
        with torch.no_grad():
            raw = self._scores(pool, score_fn).detach().cpu()  # (P,)
        if raw.dtype == torch.bool or raw.is_complex():
            raise TypeError(f"{self._score_source} must be real numbers, got dtype {raw.dtype}")
        if not raw.is_floating_point():  # uint16..uint64 have no < on the CPU; every integer fits float64's check
            raw = raw.to(torch.float64)
        bad = ~torch.isfinite(raw) | (raw < 0)
        if bool(bad.any()):
            where = first_entries(bad, 3)
            shown = "; ".join(
                f"pool position {j} (dataset index {int(pool[j])}) has score {raw[j].item()}" for j in where
            )
            raise ValueError(
                f"{self._score_source} must be finite and >= 0 (losses); {shown}{and_more(bad, len(where))}"
            )
        return raw

    def sample(self, score_fn: Callable[..., Tensor] | None = None) -> SampledBatch:
        """Draw one minibatch. ``score_fn(*items) -> (P,)`` losses is needed by the oracle only.

        Probabilities are ``p ∝ score + c`` over the pool (eq. 10), weights ``1 / (P p^k)`` (eq. 11-12).

        Returns:
            A :class:`SampledBatch` of B examples.

        Raises:
            ValueError: a score that is negative or not finite (named by pool position and dataset
                index), or a weight that float32 cannot represent.

        Example:
            >>> from torch.utils.data import TensorDataset
            >>> from iwlab.sampling import OracleSampler
            >>> model = torch.nn.Linear(2, 3)
            >>> ds = TensorDataset(torch.randn(20, 2), torch.randint(0, 3, (20,)))
            >>> sampler = OracleSampler(ds, batch_size=4, presample=2.0, seed=0)
            >>> ce = torch.nn.functional.cross_entropy
            >>> batch = sampler.sample(score_fn=lambda x, y: ce(model(x), y, reduction="none"))
            >>> batch.weights.shape
            torch.Size([4])
        """
        pool = self._draw_pool()  # (P,)
        raw = self._pool_scores(pool, score_fn)  # (P,)
        scores = raw.float()
        c = self.smoothing_constant()
        tiny = torch.finfo(torch.float32).tiny
        # float64 scores beyond float32's range, or so small that float32 flushes them (1e-50 -> 0 would
        # make every score 0 and sampling silently uniform): normalize them in float64, keep float32
        # probabilities
        if raw.dtype == torch.float64 and not bool(
            (torch.isfinite(scores) & ((scores.abs() >= tiny) | (raw == 0))).all()
        ):
            probs = sampling_probabilities(raw, c).float()  # (P,)
        else:
            probs = sampling_probabilities(scores, c)  # (P,)
        pick = draw(probs, self.batch_size, self.generator)  # (B,) positions in the pool
        p = probs[pick]
        w = importance_weights(p, self.k, n=pool.numel(), match_unbiased_sum=self.match_unbiased_sum)
        idx = pool[pick]
        data = fetch(self.dataset, idx)
        dev = data[0].device if data and isinstance(data[0], Tensor) else torch.device("cpu")
        self.steps_ += 1
        return SampledBatch(indices=idx, weights=w.to(dev), probs=p, data=data)

    # -- learning from observed losses ----------------------------------------------------------
    def _check_update(self, indices: Tensor, losses: Tensor, *, values: bool = True) -> tuple[Tensor, Tensor]:
        """Validated (B,) int64 CPU indices and (B,) float32 CPU losses; raises before any state changes."""
        idx = check_indices(indices, self.n, "indices", flatten=True)
        if not isinstance(losses, Tensor):
            raise TypeError(f"losses must be a torch.Tensor of per-example losses, got {type(losses).__name__}")
        if losses.dtype == torch.bool or losses.is_complex():
            raise TypeError(f"losses must be real per-example losses, got dtype {losses.dtype}")
        if losses.numel() != idx.numel():
            raise ValueError(f"losses {tuple(losses.shape)} and indices {tuple(indices.shape)} must match")
        if not values:
            return idx, losses
        raw = losses.detach().cpu().reshape(-1)  # (B,)
        if not raw.is_floating_point():  # uint16..uint64 have no < on the CPU
            raw = raw.to(torch.float64)
        loss = raw.float()
        bad = ~torch.isfinite(raw) | (raw < 0)
        if bool(bad.any()):
            what = "finite and >= 0"
        else:
            bad = ~torch.isfinite(loss)
            what = "within float32's range (the sampler keeps losses in float32)"
        if bool(bad.any()):
            where = first_entries(bad)
            shown = ", ".join(f"losses[{j}] = {raw[j].item()} (dataset index {int(idx[j])})" for j in where)
            raise ValueError(f"losses must be {what}; got {shown}{and_more(bad, len(where))}; the sampler is unchanged")
        return idx, loss

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record the per-example training losses observed for the drawn ``indices``.

        Updates the strategy's statistics (histories, predictor, class means) and the adaptive-smoothing
        EMA. Everything is checked before anything changes; an empty update changes nothing.

        Args:
            indices: (B,) integer dataset indices in ``[0, n)`` (any shape with B entries).
            losses: (B,) unweighted per-example losses, finite and >= 0 (detached; any device).

        Raises:
            TypeError: ``indices`` not an integer tensor, or ``losses`` not a real tensor.
            ValueError: sizes that differ, an index outside ``[0, n)``, or a loss that is NaN,
                infinite, negative or beyond float32 (each named with its dataset index).
        """
        idx, loss = self._check_update(indices, losses)
        if idx.numel() == 0:
            return  # no observation: in particular no EMA step toward the NaN mean of nothing
        self._observe(idx, loss)  # may still refuse (approx), before the EMA below changes
        m = float(loss.mean())
        if not math.isfinite(m):  # a float32 sum past 3.4e38: the mean itself is representable
            m = float(loss.double().mean())
        self.ema_loss_ = m if self.ema_loss_ is None else self.ema * self.ema_loss_ + (1 - self.ema) * m

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        pass

    # -- checkpoints ------------------------------------------------------------------------------
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, batch_size={self.batch_size}, k={self.k}, "
            f"presample={self.presample}, smoothing={self.smoothing!r}, seed={self.seed}"
            + (", match_unbiased_sum=True)" if self.match_unbiased_sum else ")")
        )
