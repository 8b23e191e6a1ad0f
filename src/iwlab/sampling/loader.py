"""Importance sampling inside an ordinary ``DataLoader``: a batch sampler, a dataset wrapper, a collate.

:class:`ImportanceBatchSampler` is a ``torch.utils.data.Sampler`` over index batches: it draws each
minibatch from an :class:`~iwlab.sampling.base.ImportanceSampler`'s state (uniform, approx, pcg; the
oracle needs a forward pass on its pool, see :meth:`~iwlab.sampling.base.ImportanceSampler.select`)
and yields it as a list of :class:`WeightedIndex` (dataset index, weight, probability). The
``DataLoader``'s workers fetch the items once, through :class:`WeightedDataset`, and
:class:`ImportanceCollate` batches them into a :class:`~iwlab.sampling.batch.SampledBatch`, so the
loop gets each example's weight and index with the data, with workers and pinned memory::

    batch_sampler = ImportanceBatchSampler(ApproxSampler(train_set, batch_size=128))
    for b in batch_sampler.loader(num_workers=2, pin_memory=True):
        losses = F.cross_entropy(model(b.data[0]), b.data[1], reduction="none")  # (B,)
        (b.weights * losses).mean().backward(); opt.step(); opt.zero_grad()
        batch_sampler.update(b.indices, losses.detach())

Staleness: a ``DataLoader`` with ``num_workers = w > 0`` draws ``prefetch_factor * w`` batches ahead of
the one the loop trains on (it asks the batch sampler for the next index batch as it hands one out), so
each batch is drawn from the sampler's state as it was ``prefetch_factor * w`` updates earlier (4 with
the defaults and 2 workers); with ``num_workers=0`` a batch is drawn when it is needed (staleness 0).
``benchmarks/bench_dataloader.py --staleness`` measures what it costs.

Distributed: each rank draws its own batches (its stream is seeded from the sampler's seed, the rank
and the epoch, by :func:`~iwlab.sampling.collectives.stream_seed`), and ``update`` all-gathers every
rank's indices and losses before learning from them, so the loss histories, the predictor, the class
statistics and the loss EMA are the same on every rank.

Source: Katharopoulos & Fleuret (2017), "Biased Importance Sampling for Deep Neural Network
Training", Algorithm 1 (the draw and the weights).

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from iwlab.sampling import PerClassGaussianSampler
    >>> ds = TensorDataset(torch.randn(40, 3), torch.arange(40) % 2)
    >>> bs = ImportanceBatchSampler(PerClassGaussianSampler(ds, batch_size=8, seed=0))
    >>> b = next(iter(bs.loader()))
    >>> b.data[0].shape, b.weights.shape, b.indices.dtype
    (torch.Size([8, 3]), torch.Size([8]), torch.int64)
    >>> bs.update(b.indices, torch.rand(8))
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, default_collate

from iwlab.functional.checks import check_int
from iwlab.sampling.base import ImportanceSampler
from iwlab.sampling.batch import ImportanceCollate, WeightedDataset, WeightedIndex
from iwlab.sampling.checks import check_indices, state_int
from iwlab.sampling.collectives import all_gather_pairs, ranks_refusing, stream_seed

__all__ = ["ImportanceBatchSampler"]

# pending batches (drawn, not yet updated) beyond this mean update() is not being called
_MAX_PENDING = 1024
_MAX_BATCHES = 2**48


_F32_MAX = torch.finfo(torch.float32).max


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ImportanceBatchSampler(Sampler[list[WeightedIndex]]):
    """A ``DataLoader`` batch sampler that draws each minibatch from an importance sampler's state.

    Each index batch is one :meth:`~iwlab.sampling.base.ImportanceSampler.draw_indices` of ``sampler``:
    B :class:`WeightedIndex` entries drawn with ``p ∝ score + c`` from a uniform pool and weighted
    ``1/(P p^k)`` (K&F eq. 10-12). Use it with :class:`WeightedDataset` and :class:`ImportanceCollate`
    (:meth:`loader` builds that ``DataLoader``) and call :meth:`update` with every batch's indices and
    losses, in order: it is how the sampler learns (histories, predictor, class means, EMA) and how the
    batch sampler knows a batch was consumed.

    An epoch is ``num_batches`` batches. Each epoch's random stream is seeded from (``sampler.seed``,
    rank, epoch): :meth:`set_epoch` to a new epoch restarts it; the same epoch again is a no-op (so a
    resumed run that calls it is not reset). Batches drawn but not yet updated (the ``DataLoader``'s
    prefetch) are kept in the state and yielded first by the next iterator, so an abandoned iterator or a
    resume from :meth:`state_dict` loses no drawn batch and repeats none: a resumed run trains on
    exactly the batches an uninterrupted one would.

    Args:
        sampler: an :class:`~iwlab.sampling.base.ImportanceSampler` whose scores need no forward pass
            (uniform, approx, pcg).
        num_batches: batches per epoch (per rank), an integer >= 1; default ``ceil(n / (B * world))``.
        rank, num_replicas: this process's rank and the world size; default torch.distributed's when
            initialized, else 0 and 1.
        sync: all-gather every rank's indices and losses in :meth:`update` so the sampler's learned state
            is identical on every rank; default True under an initialized process group of more than one
            rank whose rank and size these are. Without it each rank
            learns from its own batches only (a rank's histories see 1/world of the updates, so its
            predictions are staler and its class means noisier). ``sync=True`` needs an initialized
            process group.

    Attributes:
        epoch_: the current epoch.
        drawn_: batches drawn in this epoch (including those pending).
        pending_: batches drawn and not yet updated, oldest first.

    Raises:
        TypeError: ``sampler`` is not an ImportanceSampler, or it is the oracle (use the pool pattern,
            :meth:`~iwlab.sampling.base.ImportanceSampler.select`).
        ValueError: ``num_batches`` < 1, or ``rank`` outside ``[0, num_replicas)``.

    References:
        Katharopoulos & Fleuret (2017), Algorithm 1. PyTorch's ``DistributedSampler`` for the
        ``set_epoch`` convention.
    """

    def __init__(
        self,
        sampler: ImportanceSampler,
        *,
        num_batches: int | None = None,
        rank: int | None = None,
        num_replicas: int | None = None,
        sync: bool | None = None,
    ) -> None:
        if not isinstance(sampler, ImportanceSampler):
            raise TypeError(f"sampler must be an iwlab ImportanceSampler, got {type(sampler).__name__}")
        if sampler.needs_data:
            raise TypeError(
                f"{type(sampler).__name__} scores its pool with a forward pass, which a batch sampler cannot run; "
                "use the pool pattern: sampler.select(pool, score_fn=...) on batches of a plain DataLoader"
            )
        r0, w0 = _world()
        world = w0 if num_replicas is None else check_int(num_replicas, "num_replicas")
        rank = r0 if rank is None else check_int(rank, "rank")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, num_replicas) and num_replicas >= 1, got rank={rank}, {world}")
        if num_batches is None:
            num_batches = max(1, math.ceil(sampler.n / (sampler.batch_size * world)))
        num_batches = check_int(num_batches, "num_batches")
        if not 1 <= num_batches <= _MAX_BATCHES:  # len() must fit an index-sized integer
            raise ValueError(f"num_batches must be in [1, 2**48], got {num_batches}")
        if sync is not None and not isinstance(sync, bool):
            raise TypeError(f"sync must be True, False or None, got {sync!r}")
        grouped = dist.is_available() and dist.is_initialized()
        if sync and not grouped:
            raise ValueError("sync=True needs an initialized torch.distributed process group (init_process_group)")
        if sync and (world, rank) != (dist.get_world_size(), dist.get_rank()):
            # the gather spans the whole group: another world would learn from ranks it does not know of
            raise ValueError(
                f"sync=True gathers over the process group (rank {dist.get_rank()} of {dist.get_world_size()}), but "
                f"this batch sampler is rank {rank} of {world}; pass sync=False or the group's rank and world size"
            )
        self.sampler = sampler
        self.num_batches = num_batches
        self.rank = rank
        self.num_replicas = world
        self.sync = (
            (grouped and world > 1 and (world, rank) == (dist.get_world_size(), dist.get_rank()))
            if sync is None
            else sync
        )
        self.pending_: deque[list[WeightedIndex]] = deque()
        self._iterators = 0  # iterators started; only the newest may draw
        self._begin(0)

    def _begin(self, epoch: int) -> None:
        self.epoch_ = epoch
        self.drawn_ = 0
        self.pending_.clear()
        self.sampler.reseed(stream_seed(self.sampler.seed, self.rank, epoch))

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (a no-op if it is the current one); pending batches of the old epoch are dropped."""
        epoch = check_int(epoch, "epoch")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch_:
            self._iterators += 1  # a live iterator of the old epoch must not draw on
            self._begin(epoch)

    def __iter__(self) -> Iterator[list[WeightedIndex]]:
        self._iterators += 1  # counted when the iterator is made, not at its first next()
        return self._batches(self._iterators)

    def _batches(self, me: int) -> Iterator[list[WeightedIndex]]:
        if self.drawn_ >= self.num_batches and not self.pending_:
            self._begin(self.epoch_ + 1)  # the last epoch is done: the next one, as set_epoch would
        # batches drawn but never updated first (a resume, or an abandoned iterator's prefetch)
        for batch in list(self.pending_):
            self._check_current(me)
            yield batch
        while self.drawn_ < self.num_batches:
            self._check_current(me)
            if len(self.pending_) >= _MAX_PENDING:
                raise RuntimeError(
                    f"{_MAX_PENDING} batches were drawn and none updated: call batch_sampler.update(indices, losses) "
                    "for every batch (the sampler learns from it and the checkpoint needs it)"
                )
            idx, w, p = self.sampler.draw_indices()  # (B,) each
            batch = [WeightedIndex(i, wi, pi) for i, wi, pi in zip(idx.tolist(), w.tolist(), p.tolist(), strict=True)]
            self.pending_.append(batch)
            self.drawn_ += 1
            yield batch

    def _check_current(self, me: int) -> None:
        # two live iterators would each replay the pending batches and interleave their draws
        if me != self._iterators:
            raise RuntimeError(
                "this iterator over an ImportanceBatchSampler is stale: a newer one was started, or set_epoch or "
                "load_state_dict changed the stream; iterate one DataLoader at a time, started after those calls"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.sampler!r}, num_batches={self.num_batches}, rank={self.rank}, "
            f"num_replicas={self.num_replicas}, sync={self.sync}; epoch_={self.epoch_}, drawn_={self.drawn_}, "
            f"pending={len(self.pending_)})"
        )

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Learn from the oldest pending batch's per-example losses (all ranks' when ``sync``), and retire it.

        Everything is checked before anything changes; under ``sync`` the ranks first agree that every
        rank's update is valid (a refusal on one rank raises on all of them, and no rank waits forever in
        the gather), then gather the indices and losses.

        Args:
            indices: (B,) the batch's dataset indices (``batch.indices``), in the order drawn.
            losses: (B,) its unweighted per-example losses, finite and >= 0 (detached; any device).

        Raises:
            TypeError: ``indices`` or ``losses`` of the wrong type or dtype.
            ValueError: ``indices`` are not those of the oldest batch drawn and not yet updated (updates
                out of order, twice, or for a batch of another sampler), the sampler refuses the losses,
                or (``sync``) another rank's update was refused. Nothing changes then; a batch whose
                losses cannot be learned (an overflowed step) is retired with :meth:`skip`.
        """
        sync = self.sync and self.sampler.learns  # uniform learns nothing: no state to share
        try:
            idx, loss = self._check_update(indices, losses)
            refusal: Exception | None = None
        except Exception as e:  # any failure (a sparse or meta tensor too) must reach the other ranks
            if not sync:
                raise
            refusal = e
        if sync:
            refused = ranks_refusing(refusal is not None)  # a collective: every rank gets here
            if refusal is not None:
                raise refusal
            if refused:
                raise ValueError(f"rank(s) {refused} refused their update; nothing changed on any rank")
            all_idx, all_losses = all_gather_pairs(idx, loss)
            # every rank checked its part before the gather: the same data everywhere, so all accept or all refuse
            self.sampler._record(all_idx, all_losses.float())
        elif self.sampler.learns:
            self.sampler._record(idx, loss)  # checked above: not read and checked twice
        self.pending_.popleft()

    def _check_update(self, indices: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        idx = check_indices(indices, self.sampler.n, "indices", flatten=True)  # (B,) CPU int64
        if not self.pending_:
            raise ValueError("update() called with no batch pending: every drawn batch was already updated")
        oldest = torch.tensor([e.index for e in self.pending_[0]], dtype=torch.long)
        if not torch.equal(idx, oldest):
            raise ValueError(
                "indices are not those of the oldest batch drawn and not yet updated (the DataLoader yields "
                "batches in that order): update() each batch once, in order; a batch whose update was refused "
                "stays the oldest until it is updated or retired with skip()"
            )
        # the sampler's own checks (type, size, finite, >= 0), before any collective or state change
        return self.sampler._check_update(idx, losses, values=self.sampler.learns)

    def skip(self) -> list[WeightedIndex]:
        """Retire the oldest pending batch without learning from it (a skipped step, e.g. an AMP overflow).

        Under ``sync`` call it on every rank for the same step, as ``update`` would have been.

        Returns:
            The retired batch.

        Raises:
            ValueError: no batch is pending.
        """
        if not self.pending_:
            raise ValueError("skip() called with no batch pending")
        return self.pending_.popleft()

    def loader(self, collate_fn: Callable[[list[Any]], Any] | None = None, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over this batch sampler: the sampler's dataset in a :class:`WeightedDataset`, and
        ``ImportanceCollate(collate_fn)``.

        Args:
            collate_fn: collates the dataset's own items (None: ``default_collate``, as ``DataLoader``).
            **kwargs: any other ``DataLoader`` argument (``num_workers``, ``pin_memory``, ...).
        """
        return DataLoader(
            WeightedDataset(self.sampler.dataset),
            batch_sampler=self,
            collate_fn=ImportanceCollate(default_collate if collate_fn is None else collate_fn),
            **kwargs,
        )

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The sampler's state, the epoch, the position in it and the batches drawn but not yet updated."""
        return {
            "sampler": self.sampler.state_dict(),
            "epoch_": self.epoch_,
            "drawn_": self.drawn_,
            "pending_": [[tuple(e) for e in b] for b in self.pending_],
            "num_batches": self.num_batches,
            "rank": self.rank,
            "num_replicas": self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of this rank; every field is checked before anything changes.

        Raises:
            TypeError: ``state`` is not a dict.
            ValueError: a missing field, another rank, world size or epoch length, a pending batch that
                does not fit the dataset, or a sampler state that does not fit (named).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        missing = [
            k
            for k in ("sampler", "epoch_", "drawn_", "pending_", "num_batches", "rank", "num_replicas")
            if k not in state
        ]
        if missing:
            raise ValueError(f"checkpoint lacks field(s) {', '.join(missing)}")
        for key in ("num_batches", "rank", "num_replicas"):
            if state_int(state, key) != getattr(self, key):
                raise ValueError(
                    f"checkpoint field '{key}' is {state[key]} but this batch sampler's is {getattr(self, key)}"
                )
        epoch, drawn = state_int(state, "epoch_"), state_int(state, "drawn_")
        if epoch < 0 or not 0 <= drawn <= self.num_batches:
            raise ValueError(f"checkpoint fields 'epoch_' = {epoch}, 'drawn_' = {drawn} are out of range")
        pending = state["pending_"]
        if not isinstance(pending, list) or len(pending) > drawn:
            raise ValueError("checkpoint field 'pending_' must be a list of at most 'drawn_' batches")
        batches = [self._checked_batch(b, j) for j, b in enumerate(pending)]
        self.sampler.load_state_dict(state["sampler"])  # checks its own fields before changing anything
        self.epoch_, self.drawn_ = epoch, drawn
        self.pending_ = deque(batches)
        self._iterators += 1  # a live iterator would carry on from the old state

    def _checked_batch(self, batch: object, j: int) -> list[WeightedIndex]:
        """A checkpoint's pending batch ``j`` as B entries the sampler could have drawn, or ValueError."""
        where = f"checkpoint field 'pending_' batch {j}"
        B = self.sampler.batch_size
        if not isinstance(batch, list | tuple) or len(batch) != B:
            raise ValueError(f"{where} must be a list of batch_size={B} (index, weight, prob) entries")
        out = []
        for e in batch:
            if not (isinstance(e, list | tuple) and len(e) == 3):
                raise ValueError(f"{where} has entry {e!r}, not an (index, weight, prob) triple")
            i, w, p = e
            # a bool or float index would be read as another example (True -> 1, 1.7 -> 1)
            ok_i = isinstance(i, int | np.integer) and not isinstance(i, bool) and 0 <= i < self.sampler.n
            real = (float, int, np.floating, np.integer)
            ok_w = isinstance(w, real) and not isinstance(w, bool) and 0 < w <= _F32_MAX
            ok_p = isinstance(p, real) and not isinstance(p, bool) and 0 < p <= 1
            if not (ok_i and ok_w and ok_p):
                raise ValueError(
                    f"{where} has entry {tuple(e)!r}: the index must be an integer in [0, {self.sampler.n}), "
                    "the weight in (0, float32 max] and the probability in (0, 1]"
                )
            out.append(WeightedIndex(int(i), float(w), float(p)))
        return out
