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
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from iwlab.functional.checks import check_int, check_real, check_seed
from iwlab.functional.sampling import (
    MULTINOMIAL_MAX_CATEGORIES,
    draw,
    importance_weights,
    sampling_probabilities,
)
from iwlab.sampling.batch import SampledBatch, data_device, fetch, pool_length, take
from iwlab.sampling.checks import and_more, check_indices, check_interval, first_entries
from iwlab.sampling.state import SamplerState

__all__ = ["MAX_POOL", "ImportanceSampler", "SampledBatch", "Smoothing", "fetch"]

Smoothing = float | Literal["adaptive"]
# largest pre-sampled pool (scored by a forward pass every step); beyond it, score the whole dataset
# (presample=None) instead
MAX_POOL = MULTINOMIAL_MAX_CATEGORIES


class ImportanceSampler(SamplerState):
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
    #: scores come from a forward pass on the pool's data (the oracle): no index-only draw
    needs_data = False
    #: scores come from per-example state, so the pool pattern needs the pool's dataset indices
    needs_indices = False
    #: ``update`` learns from the loss values (all but uniform), so they are checked and shared
    learns = True

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
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            # drawing by index needs random access; a stream can still go through the pool pattern
            raise TypeError(
                f"{type(self).__name__} needs a map-style dataset (len() and integer indexing), got "
                f"{type(dataset).__name__}; for a stream, use sampler.select on its batches (the pool pattern)"
            )
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

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None, data: Any = None) -> Tensor:
        """The pool's raw scores (P,); ``data`` is the pool's collated items when the caller has them."""
        raise NotImplementedError

    def _pool_scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None, data: Any = None) -> Tensor:
        """The pool's scores (P,) on the CPU, checked finite and >= 0 (in their own dtype)."""
        with torch.no_grad():
            raw = self._scores(pool, score_fn, data).detach().cpu()  # (P,)
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
        pick, p, w = self._pick(raw)
        idx = pool[pick]
        data = fetch(self.dataset, idx)
        self.steps_ += 1
        return SampledBatch(indices=idx, weights=w.to(data_device(data)), probs=p, data=data)

    def draw_indices(self) -> tuple[Tensor, Tensor, Tensor]:
        """One minibatch's dataset indices, weights and probabilities, without fetching any data.

        What :class:`~iwlab.sampling.loader.ImportanceBatchSampler` yields to a ``DataLoader``, whose
        workers then fetch the items. Only for strategies whose scores need no forward pass (uniform,
        approx, pcg); the oracle scores its pool with the model, so use :meth:`select` (the pool
        pattern) for it.

        Returns:
            ``(indices, weights, probs)``: (B,) int64, (B,) float32 ``1/(P p^k)``, (B,) float32; CPU.

        Raises:
            TypeError: the strategy needs the pool's data to score it (the oracle).
        """
        if self.needs_data:
            raise TypeError(
                f"{type(self).__name__} scores its pool with a forward pass, so it cannot draw indices alone; "
                "use sampler.select(pool, score_fn=...) on a pool batch from any DataLoader (the pool pattern)"
            )
        pool = self._draw_pool()  # (P,)
        raw = self._pool_scores(pool, None)  # (P,)
        pick, p, w = self._pick(raw)
        self.steps_ += 1
        return pool[pick], w, p

    def select(
        self, pool: Any, *, indices: Tensor | None = None, score_fn: Callable[..., Tensor] | None = None
    ) -> SampledBatch:
        """The pool pattern: keep B examples of a pool batch with the paper's probabilities, and weight them.

        Take a pool of P examples from any ``DataLoader`` (any Dataset, workers, pinned memory; a
        shuffled loader draws it uniformly, as the paper's presampling does), score it (the oracle:
        ``score_fn``, a forward pass; approx and pcg: their state, by dataset index), draw B of the P
        with ``p ∝ score + c`` (with replacement) and weight them ``1/(P p^k)`` (eq. 10-12), P being
        the pool's actual size. Works unchanged under DDP, Lightning and the Hugging Face Trainer:
        each rank selects from the pool its own loader gave it.

        Args:
            pool: a collated batch of P examples: a tensor, or a tuple/list/dict of tensors (or of
                lists of length P, e.g. strings) whose first dimension is P.
            indices: (P,) integer dataset indices of the pool's examples (from
                :class:`~iwlab.sampling.loader.IndexedDataset`); required by approx and pcg, which score
                by example; optional for the oracle and uniform.
            score_fn: the oracle's scorer: ``score_fn(*pool)`` for a tuple/list pool, else
                ``score_fn(pool)``, returning (P,) per-example losses.

        Returns:
            A :class:`SampledBatch`: ``data`` is ``pool`` restricted to the B kept examples (same
            structure), ``indices`` their dataset indices (their pool positions when ``indices`` was
            not given: enough for the oracle's ``update``, which reads no index), ``weights`` (B,) on
            the pool's device.

        Raises:
            TypeError: ``pool`` holds no tensor.
            ValueError: an empty pool or one above :data:`MAX_POOL`, members of different lengths,
                ``indices`` missing (approx, pcg), of another length or outside ``[0, n)``, or
                scores as in :meth:`sample`.

        Example:
            >>> from torch.utils.data import TensorDataset
            >>> from iwlab.sampling import OracleSampler
            >>> ds = TensorDataset(torch.randn(20, 2), torch.randint(0, 3, (20,)))
            >>> s = OracleSampler(ds, batch_size=4, seed=0)
            >>> pool = (torch.randn(12, 2), torch.randint(0, 3, (12,)))  # a batch of 12 from any DataLoader
            >>> b = s.select(pool, score_fn=lambda x, y: x.pow(2).sum(1))
            >>> b.data[0].shape, b.weights.shape
            (torch.Size([4, 2]), torch.Size([4]))
        """
        P, idx = self._check_pool(pool, indices)
        raw = self._pool_scores(torch.arange(P) if idx is None else idx, score_fn, data=pool)  # (P,)
        before = self.generator.get_state()
        try:
            pick, p, w = self._pick(raw)
            kept = take(pool, pick, P)
        except BaseException:
            self.generator.set_state(before)  # a refused call leaves the sampler as it was
            raise
        self.steps_ += 1
        return SampledBatch(
            indices=pick if idx is None else idx[pick], weights=w.to(data_device(kept)), probs=p, data=kept
        )

    def _check_pool(self, pool: Any, indices: Tensor | None) -> tuple[int, Tensor | None]:
        """The pool's size P and its (P,) int64 dataset indices (None when not given and not needed)."""
        P = pool_length(pool)
        if not 1 <= P <= MAX_POOL:
            raise ValueError(f"the pool has {P} examples; it must hold 1 to {MAX_POOL}")
        if indices is not None:
            idx = check_indices(indices, self.n, "indices")  # (P,)
            if idx.numel() != P:
                raise ValueError(f"indices has {idx.numel()} entries but the pool has {P} examples")
            return P, idx
        if self.needs_indices:
            raise ValueError(
                f"{type(self).__name__} scores each example from its own state: pass indices=(P,) dataset indices of "
                "the pool (wrap the dataset in iwlab.sampling.IndexedDataset)"
            )
        return P, None

    def _pick(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Draw B pool positions from the pool's checked scores (P,); (positions, probs, weights), each (B,)."""
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
        before = self.generator.get_state()
        pick = draw(probs, self.batch_size, self.generator)  # (B,) positions in the pool
        p = probs[pick]
        try:
            w = importance_weights(p, self.k, n=raw.numel(), match_unbiased_sum=self.match_unbiased_sum)
        except ValueError:  # a weight float32 cannot hold: refused, and the draw undone
            self.generator.set_state(before)
            raise
        return pick, p, w

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed`` (a new epoch of a DataLoader, a rank's own stream).

        The learned state (histories, predictor, class statistics, the loss EMA) is kept.
        """
        self.generator.manual_seed(check_seed(seed))

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
        self._record(*self._check_update(indices, losses))

    def _record(self, idx: Tensor, loss: Tensor) -> None:
        """Learn from checked (B,) CPU int64 indices and float32 losses (:meth:`_check_update`'s output)."""
        if idx.numel() == 0:
            return  # no observation: in particular no EMA step toward the NaN mean of nothing
        self._observe(idx, loss)  # may still refuse (approx), before the EMA below changes
        m = float(loss.mean())
        if not math.isfinite(m):  # a float32 sum past 3.4e38: the mean itself is representable
            m = float(loss.double().mean())
        self.ema_loss_ = m if self.ema_loss_ is None else self.ema * self.ema_loss_ + (1 - self.ema) * m

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        pass

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, batch_size={self.batch_size}, k={self.k}, "
            f"presample={self.presample}, smoothing={self.smoothing!r}, seed={self.seed}"
            + (", match_unbiased_sum=True)" if self.match_unbiased_sum else ")")
        )
