"""Weighted sampling under ``DistributedDataParallel``: one global draw per epoch, sharded across ranks.

``torch.utils.data.WeightedRandomSampler`` knows nothing of ranks (every rank would draw the same
indices, or unrelated ones), and ``DistributedSampler`` draws uniformly. :class:`DistributedWeightedSampler`
does both: every rank makes the same global draw of ``per_rank * num_replicas`` indices from a
generator seeded by ``(seed, epoch)`` only, and rank r keeps positions ``r, r + R, r + 2R, ...``. So
the ranks' shards together are exactly one weighted draw, without any communication, and
without replacement no index is on two ranks. Nothing is ever padded by repeating indices.

Example:
    >>> s = DistributedWeightedSampler([0.0, 1.0, 1.0, 0.0], num_samples=2, replacement=False, num_replicas=2, rank=0)
    >>> len(s), list(s)[0] in (1, 2)
    (1, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Sampler

from iwlab.functional.checks import check_int, check_seed
from iwlab.functional.sampling import draw
from iwlab.sampling.checks import and_more, first_entries, state_int
from iwlab.sampling.collectives import ranks_differing, stream_seed

__all__ = ["DistributedWeightedSampler"]

_METHOD = "distributed_weighted"
MAX_SAMPLES = 2**40
_STATE_KEYS = ("seed", "epoch", "num_replicas", "rank", "n", "replacement", "num_samples", "consumed")


def _check_weights(weights: object) -> Tensor:
    """``weights`` as a new (N,) float64 CPU tensor, checked 1-D, finite, >= 0 and not all zero."""
    if isinstance(weights, Tensor):
        t = weights.detach()
    else:
        try:
            if torch.as_tensor(weights).dtype == torch.bool:  # True/False are not weights
                raise TypeError(f"weights must be real numbers, got {type(weights).__name__} of bools")
            # float64 straight away: the default float32 would turn 1e-50 into 0 (never drawn) and 1e39 into inf
            t = torch.as_tensor(weights, dtype=torch.float64)
        except TypeError as e:
            if "of bools" in str(e):
                raise
            raise TypeError(
                f"weights must be a (N,) tensor or sequence of real numbers, got {type(weights).__name__}"
            ) from None
        except (ValueError, RuntimeError, OverflowError):
            raise TypeError(
                f"weights must be a (N,) tensor or sequence of real numbers, got {type(weights).__name__}"
            ) from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"weights must be real numbers, got dtype {t.dtype}")
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"weights must be a non-empty 1-D tensor (one per example), got shape {tuple(t.shape)}")
    # a copy (copy=True even when already float64 on the CPU): a later in-place change of the caller's
    # tensor on one rank only would make the ranks' global draws disagree
    w = t.to(device="cpu", dtype=torch.float64, copy=True)  # (N,)
    bad = ~(torch.isfinite(w) & (w >= 0))  # NaN fails both
    if bool(bad.any()):
        where = first_entries(bad, 3)
        shown = ", ".join(f"weights[{j}] = {w[j].item()}" for j in where)
        raise ValueError(f"weights must be finite and >= 0; {shown}{and_more(bad, len(where))}")
    if not bool((w > 0).any()):
        raise ValueError(f"weights are all zero ({w.numel()} entries); at least one must be positive")
    return w


def _weighted_without_replacement(weights: Tensor, num: int, generator: torch.Generator) -> Tensor:
    """``num`` distinct indices by successive weighted sampling, in the order they are drawn.

    Exponential keys (Efraimidis & Spirakis 2006): ``key_i = E_i / w_i`` with ``E_i ~ Exp(1)`` is
    ``Exp(w_i)``, so the smallest key is index i with probability ``w_i / sum w``, and, by the
    memorylessness of the exponential, the next smallest is a draw from the rest with renormalized
    weights: the keys in increasing order are one run of ``torch.multinomial(w, num, replacement=False)``,
    for any N (no 2^24 limit). The keys are compared as ``log E_i - log w_i`` (same order) so that a
    tiny positive weight cannot overflow ``E / w`` to inf and tie with a zero weight.

    Args:
        weights: (N,) float64, finite, >= 0, with at least ``num`` positive entries.
        num: how many indices, in [1, number of positive weights].
        generator: a CPU ``torch.Generator``.

    Returns:
        (num,) int64 distinct indices with positive weight, in draw order.
    """
    keys = torch.empty_like(weights).exponential_(generator=generator)  # (N,) E_i in float64
    log_w = weights.log()  # (N,) -inf for the zero weights
    keys.log_().sub_(log_w)
    keys.masked_fill_(log_w == float("-inf"), float("inf"))  # zero weight: never drawn (not NaN when E = 0)
    return torch.topk(keys, num, largest=False, sorted=True).indices  # (num,)


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling for ``DistributedDataParallel``: each rank yields its shard of one global draw.

    Every epoch, every rank draws the same ``per_rank * num_replicas`` indices (``per_rank =
    ceil(num_samples / num_replicas)``) from a CPU generator seeded by ``(seed, epoch)`` only, and rank
    r yields positions ``r::num_replicas`` of that draw. With replacement the draw is i.i.d. with
    ``p_i = w_i / sum_j w_j`` (:func:`~iwlab.functional.sampling.draw`, exact above 2^24 examples);
    without replacement it is successive weighted sampling, as ``torch.multinomial(w, m,
    replacement=False)`` (exponential keys, any N), so no index is drawn twice or lands on two ranks.
    Examples with weight 0 are never drawn. The total drawn, ``per_rank * num_replicas``, exceeds
    ``num_samples`` by up to ``num_replicas - 1`` extra draws (never repeats of drawn indices).

    Call ``set_epoch(epoch)`` before each epoch (as with ``DistributedSampler``), or every epoch
    repeats the same indices. The weights, ``seed``, ``num_samples`` and ``replacement`` must be the same on
    every rank, or the shards overlap and miss examples silently: :meth:`check_same_on_ranks` checks it (a
    collective, so the constructor does not call it: a sampler built on some ranks only must not block).

    Resuming mid-epoch: ``state_dict(consumed=...)`` on each rank, then ``load_state_dict`` on a new
    sampler of the same rank: its next iterator yields the rest of that epoch's shard; a
    ``set_epoch`` to another epoch starts fresh (``set_epoch`` to the saved epoch keeps the resume).
    A ``DataLoader`` pulls indices ahead of the batches it has returned (``num_workers * prefetch_factor``
    batches), so the default count (what this rank's iterator has yielded) may overshoot: pass
    ``consumed=batches_done * batch_size`` for an exact resume.

    Memory: the weights are held as one float64 copy (8 N bytes, on the CPU). Each epoch, drawing with
    replacement reads them (above 2^24 examples, per-block sums); drawing without replacement adds two
    transient float64 arrays of N entries (the keys and log w) and an N-byte mask.

    Args:
        weights: (N,) nonnegative finite real weights (any real dtype, any device; a tensor or a
            sequence), not all zero; need not sum to 1. Copied to float64 (exact for integers below 2^53).
        num_samples: total number of indices drawn per epoch over all ranks, an integer >= 1
            (default N). Without replacement ``ceil(num_samples / num_replicas) * num_replicas`` must
            not exceed the number of positive weights.
        replacement: draw with replacement (i.i.d.) or without (distinct indices).
        num_replicas: number of ranks R, >= 1 (default: ``torch.distributed``'s world size when a
            process group is initialized, else 1).
        rank: this process's rank in ``[0, R)`` (default: ``torch.distributed``'s rank, else 0).
        seed: integer in ``[0, 2**63)``, the same on every rank.

    Raises:
        TypeError: weights not real numbers (bool or complex included); an integer argument that is
            not integer-like; ``replacement`` not a bool.
        ValueError: weights not non-empty 1-D, negative or non-finite (named with their index), or all
            zero; ``num_samples`` < 1, or too large to draw without replacement; ``num_replicas`` < 1;
            ``rank`` outside ``[0, num_replicas)``; ``seed`` outside ``[0, 2**63)``.

    Source:
        ``torch.utils.data.distributed.DistributedSampler`` (sharding ``r::R``, ``set_epoch``) and
        ``torch.utils.data.WeightedRandomSampler`` (the weighted draw); Efraimidis & Spirakis (2006),
        "Weighted random sampling with a reservoir", Inf. Process. Lett. 97(5) (exponential keys).

    Example:
        >>> w = torch.tensor([0.0, 1.0, 3.0])
        >>> r0 = DistributedWeightedSampler(w, num_samples=6, num_replicas=2, rank=0, seed=1)
        >>> r1 = DistributedWeightedSampler(w, num_samples=6, num_replicas=2, rank=1, seed=1)
        >>> len(r0), set(list(r0) + list(r1)) <= {1, 2}  # index 0 has weight 0: never drawn
        (3, True)
        >>> torch.equal(r0.global_indices()[1::2], torch.tensor(list(r1)))  # the same global draw
        True
    """

    def __init__(
        self,
        weights: Tensor | Sequence[float],
        num_samples: int | None = None,
        *,
        replacement: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        w = _check_weights(weights)  # (N,) float64
        n = w.numel()
        if not isinstance(replacement, bool):  # "False" would be truthy
            raise TypeError(f"replacement must be True or False, got {replacement!r}")
        num_samples = n if num_samples is None else check_int(num_samples, "num_samples", minimum=1)
        if num_samples > MAX_SAMPLES:  # one int64 per draw: beyond this no machine holds an epoch's draw
            raise ValueError(f"num_samples must be at most 2**40 per epoch, got {num_samples}")
        initialized = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialized else 1
        num_replicas = check_int(num_replicas, "num_replicas", minimum=1)
        if rank is None:
            rank = dist.get_rank() if initialized else 0
        rank = check_int(rank, "rank")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas) = [0, {num_replicas}), got {rank}")
        per_rank = -(-num_samples // num_replicas)
        positive = int((w > 0).sum())
        if not replacement and per_rank * num_replicas > positive:
            most = positive // num_replicas * num_replicas
            raise ValueError(
                f"num_samples={num_samples} needs {per_rank * num_replicas} distinct indices without replacement "
                f"({per_rank} on each of {num_replicas} ranks) but only {positive} weights are positive; use "
                f"num_samples <= {most} or replacement=True"
            )
        self.weights = w
        self._digest = hashlib.blake2b(w.numpy().tobytes(), digest_size=16).hexdigest()
        self.n = n
        self.num_samples = num_samples
        self.replacement = replacement
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = check_seed(seed)
        self.per_rank = per_rank
        self.total_size = per_rank * num_replicas
        self.epoch = 0
        self._offset = 0  # where the next iterator starts in this epoch's shard (> 0 after a resume)
        self._position = 0  # how far into this epoch's shard the latest iterator has yielded

    def global_indices(self) -> Tensor:
        """The epoch's global draw, the same on every rank; this rank's shard is ``[rank::num_replicas]``.

        Returns:
            (per_rank * num_replicas,) int64 indices in ``[0, N)``, in draw order.

        Example:
            >>> s = DistributedWeightedSampler([1.0, 1.0], num_samples=4, seed=0)
            >>> s.global_indices().shape
            torch.Size([4])
        """
        g = torch.Generator().manual_seed(stream_seed(self.seed, self.epoch))
        if self.replacement:
            return draw(self.weights, self.total_size, g)  # (total,)
        return _weighted_without_replacement(self.weights, self.total_size, g)  # (total,)

    def __iter__(self) -> Iterator[int]:
        start, self._offset = self._offset, 0  # a resume applies to one iterator only
        self._position = start
        shard = self.global_indices()[self.rank :: self.num_replicas]  # (per_rank,)
        return self._yield(shard[start:].tolist(), start)

    def _yield(self, indices: list[int], start: int) -> Iterator[int]:
        for j, i in enumerate(indices, start + 1):
            self._position = j  # counted when handed out: what state_dict() reports as consumed
            yield i

    def __len__(self) -> int:
        return self.per_rank

    def set_epoch(self, epoch: int) -> None:
        """Use the draw of ``epoch`` from the next iterator on (call it before each epoch, on every rank).

        A resume loaded by :meth:`load_state_dict` survives ``set_epoch`` to the saved epoch, so the
        usual ``for epoch in range(start, E): sampler.set_epoch(epoch)`` loop resumes correctly.

        Args:
            epoch: an integer >= 0.

        Raises:
            TypeError: ``epoch`` is not an integer.
            ValueError: ``epoch`` < 0.

        Example:
            >>> s = DistributedWeightedSampler([1.0, 2.0, 3.0], num_samples=50)
            >>> a = list(s); s.set_epoch(1); a == list(s)
            False
        """
        epoch = check_int(epoch, "epoch", minimum=0)
        if epoch != self.epoch:
            self._offset = self._position = 0
        self.epoch = epoch

    def check_same_on_ranks(self) -> None:
        """Check that every rank built this sampler alike: the same weights, seed, size and replacement.

        A collective over the process group: call it on every rank (after the samplers are built, e.g.
        right before training); with one rank it does nothing. Unseeded random weights, or
        ``seed=rank``, would otherwise give shards that overlap and miss examples, silently.

        Raises:
            RuntimeError: no initialized process group, or its size is not ``num_replicas``.
            ValueError: a rank differs from rank 0 (named, with what differs).
        """
        if self.num_replicas == 1:
            return  # one rank: nothing to compare
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() != self.num_replicas:
            raise RuntimeError("check_same_on_ranks needs a process group of num_replicas ranks")
        fields = {"weights": self._digest, "seed": self.seed, "num_samples": self.num_samples}
        fields["replacement"] = self.replacement
        for name, value in fields.items():
            key = int(hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest()[:15], 16)
            differ = ranks_differing(key)
            if differ:
                raise ValueError(
                    f"{name} differs between ranks (rank(s) {differ} differ from rank 0): every rank must build "
                    "its DistributedWeightedSampler alike (weights equal in float64), or the shards overlap"
                )

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """This rank's position: the configuration, the epoch and how many of its shard's indices are used.

        Args:
            consumed: indices of this epoch's shard already used, in ``[0, per_rank]``; default: how many
                this rank's latest iterator has yielded (counting a resumed start). Behind a
                ``DataLoader`` that prefetches, pass ``batches_done * batch_size``.

        Returns:
            A dict of plain Python values: ``method``, ``seed``, ``epoch``, ``num_replicas``, ``rank``,
            ``n`` (N), ``replacement``, ``num_samples``, ``consumed`` and ``weights_digest``.

        Raises:
            TypeError: ``consumed`` is not an integer.
            ValueError: ``consumed`` outside ``[0, per_rank]``.

        Example:
            >>> s = DistributedWeightedSampler([1.0, 2.0], num_samples=4)
            >>> it = iter(s); _ = next(it)
            >>> s.state_dict()["consumed"], s.state_dict(consumed=0)["consumed"]
            (1, 0)
        """
        if consumed is None:
            consumed = self._position
        consumed = check_int(consumed, "consumed", minimum=0)
        if consumed > self.per_rank:
            raise ValueError(f"consumed must be in [0, per_rank] = [0, {self.per_rank}], got {consumed}")
        return {
            "method": _METHOD,
            "seed": self.seed,
            "epoch": self.epoch,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "n": self.n,
            "replacement": self.replacement,
            "num_samples": self.num_samples,
            "consumed": consumed,
            "weights_digest": self._digest,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of the same rank: the next iterator yields the rest of its shard.

        The seed, epoch and position are taken from ``state``; the rest must match this sampler. Every
        field is checked before anything changes. The weights are not in the state, only their digest
        (blake2b of the float64 bytes), which must match: other weights would give another draw.

        Args:
            state: the dict :meth:`state_dict` returned (on this rank).

        Raises:
            TypeError: ``state`` is not a dict.
            ValueError: a missing field, or one of the wrong type or range, or an ``n``, ``num_replicas``,
                ``rank``, ``replacement`` or ``num_samples`` other than this sampler's (named).

        Example:
            >>> w = [1.0, 2.0, 3.0]
            >>> a = DistributedWeightedSampler(w, num_samples=6, seed=3)
            >>> it = iter(a); first = [next(it), next(it)]
            >>> b = DistributedWeightedSampler(w, num_samples=6)
            >>> b.load_state_dict(a.state_dict())
            >>> first + list(b) == list(a)
            True
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        if state.get("method", _METHOD) != _METHOD:
            raise ValueError(f"checkpoint field 'method' is {state['method']!r}, not {_METHOD!r}")
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"checkpoint lacks field(s) {', '.join(missing)}")
        try:
            seed = check_seed(state["seed"], "checkpoint field 'seed'")
        except TypeError as e:
            raise ValueError(str(e)) from None
        epoch = state_int(state, "epoch")
        if epoch < 0:
            raise ValueError(f"checkpoint field 'epoch' must be >= 0, got {epoch}")
        if not isinstance(state["replacement"], bool):
            raise ValueError(f"checkpoint field 'replacement' must be True or False, got {state['replacement']!r}")
        mine = {
            "n": self.n,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "replacement": self.replacement,
            "num_samples": self.num_samples,
        }
        # other weights of the same length would silently give another draw than the one resumed
        digest = state.get("weights_digest", self._digest)  # checkpoints from before the field: not checked
        if digest != self._digest:
            raise ValueError(
                "checkpoint field 'weights_digest' does not match this sampler's weights: the state was saved with "
                "other weights"
            )
        for key, value in mine.items():
            theirs = state[key] if key == "replacement" else state_int(state, key)
            if theirs != value:
                raise ValueError(f"checkpoint field '{key}' is {state[key]} but this sampler's {key} is {value}")
        consumed = state_int(state, "consumed")
        if not 0 <= consumed <= self.per_rank:
            raise ValueError(f"checkpoint field 'consumed' is {consumed} but must be in [0, {self.per_rank}]")
        self.seed, self.epoch = seed, epoch
        self._offset = self._position = consumed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, num_samples={self.num_samples}, replacement={self.replacement}, "
            f"num_replicas={self.num_replicas}, rank={self.rank}, seed={self.seed})"
        )
