"""A drawn minibatch, how samplers fetch, measure and cut batches of any structure, and the DataLoader parts.

:class:`SampledBatch` is what every sampler returns (and what :class:`ImportanceCollate` yields in a
``DataLoader``, from the :class:`WeightedItem` s that :class:`WeightedDataset` returns for the
:class:`WeightedIndex` entries of :class:`~iwlab.sampling.loader.ImportanceBatchSampler`;
:class:`IndexedDataset` adds each item's index for the pool pattern); :func:`fetch` reads a dataset's
items at given indices;
:func:`pool_length`, :func:`take` and :func:`data_device` let the pool pattern
(:meth:`~iwlab.sampling.base.ImportanceSampler.select`) work on any collated batch: a tensor, or a
tuple, list or dict of them (lists of strings too, as Hugging Face collators give).

Example:
    >>> import torch
    >>> take({"x": torch.arange(4), "text": ["a", "b", "c", "d"]}, torch.tensor([3, 0]), 4)
    {'x': tensor([3, 0]), 'text': ['d', 'a']}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from iwlab.sampling.checks import check_indices

__all__ = [
    "ImportanceCollate",
    "IndexedDataset",
    "SampledBatch",
    "WeightedDataset",
    "WeightedIndex",
    "WeightedItem",
    "data_device",
    "fetch",
    "pool_length",
    "take",
]


def _map_tensors(fn: Callable[[Tensor], Tensor], obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return _same_mapping(obj, {k: _map_tensors(fn, v) for k, v in obj.items()})
    if isinstance(obj, tuple | list):
        return type(obj)(_map_tensors(fn, v) for v in obj)
    return obj


def _same_mapping(like: Mapping, items: dict[Any, Any]) -> Mapping:
    """``items`` in the mapping type of ``like`` (a BatchEncoding or OrderedDict keeps its type)."""
    try:
        return type(like)(items)
    except TypeError:
        return items


@dataclass
class SampledBatch:
    """One drawn minibatch.

    Attributes:
        indices: (B,) int64 dataset indices, on the CPU (with replacement: an index may repeat).
        weights: (B,) float32 ``alpha``, on the data's device; multiply the per-example losses by these.
        probs: (B,) float32, the probability each example was drawn with, within the pool.
        data: the fetched items, collated: ``(x, y)`` for tuple items (a tuple of batched tensors);
            from a ``DataLoader``, whatever its collate function returns (a dict for dict items).
    """

    indices: Tensor
    weights: Tensor
    probs: Tensor
    data: Any

    def pin_memory(self) -> SampledBatch:
        """A copy with every tensor in page-locked memory (``DataLoader(pin_memory=True)`` calls this)."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: str | torch.device, *, non_blocking: bool = False) -> SampledBatch:
        """A copy with every tensor on ``device`` (``indices`` and ``probs`` too)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def _map(self, fn: Callable[[Tensor], Tensor]) -> SampledBatch:
        parts = (self.indices, self.weights, self.probs, self.data)
        return SampledBatch(*(_map_tensors(fn, v) for v in parts))


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


_SCALARS = (str, bytes, int, float, complex, bool, type(None), np.generic)


def _is_leaf_seq(obj: Any) -> bool:
    """A list or tuple of per-example scalars (strings, numbers), e.g. a batch's texts."""
    return isinstance(obj, list | tuple) and all(isinstance(v, _SCALARS) for v in obj)


def _kind(obj: Any, top: bool) -> str:
    """How a pool member is cut: "axis" (index its first axis), "mapping", "members" (a container: cut
    each), "examples" (a list of one object per example: pick entries); raises when it cannot tell.

    A list of tensors below the top level is either members (``[x1, x2]`` of a nested item, every
    first axis P) or examples (unpadded sequences, one per example): ragged first axes mean examples,
    equal ones members, and first axes all equal to the list's length could be either: refused.
    """
    if isinstance(obj, Tensor | np.ndarray):
        return "axis"
    if isinstance(obj, Mapping):
        return "mapping"
    if _is_leaf_seq(obj):
        return "examples"
    if isinstance(obj, list | tuple):
        if top or not obj or not all(isinstance(v, Tensor | np.ndarray) for v in obj):
            if all(_is_leaf_seq(v) for v in obj) and obj:
                return "ambiguous"
            return "members"
        firsts = {v.shape[0] if v.ndim else None for v in obj}
        if None in firsts or len(firsts) > 1:
            return "examples"
        return "ambiguous" if firsts == {len(obj)} else "members"
    return "scalar"


def _members(obj: Any, path: str, out: list[tuple[str, int]], top: bool = False) -> None:
    """Collect (path, length) of every per-example member of a pool, refusing what cannot be cut."""
    where = path or "pool"
    kind = _kind(obj, top)
    if kind == "axis":
        if obj.ndim == 0:
            raise ValueError(f"pool member {where} is 0-d; every member needs a first (example) axis")
        out.append((where, obj.shape[0]))
    elif kind == "mapping":
        for k, v in obj.items():
            _members(v, f"{path}[{k!r}]", out)
    elif kind == "examples":
        out.append((where, len(obj)))
    elif kind == "members":
        for i, v in enumerate(obj):
            _members(v, f"{path}[{i}]", out)
    elif kind == "ambiguous":
        # [[3, 1, 4], [1, 5, 9]] or three (3, ...) tensors is either members or one entry per example:
        # cutting it the wrong way would pair examples with other examples' data
        raise ValueError(
            f"pool member {where} is a {type(obj).__name__} of {len(obj)} lists or tensors: it could hold members "
            "or examples; collate per-example data into one tensor (pad it) or put the members in a dict"
        )
    else:
        raise ValueError(
            f"pool member {where} is a {type(obj).__name__}, not per-example data: every member of a pool needs "
            "one entry per example (a tensor, an array or a list with a first axis of P)"
        )


def pool_length(pool: Any) -> int:
    """P, the number of examples in a collated batch (the first dimension of its members).

    A pool is a tensor or numpy array, or a tuple, list or dict of them, of lists of per-example
    strings or numbers (or, inside a dict or a nested list, of per-example tensors of ragged sizes),
    or of such containers; every member has P entries.

    Raises:
        TypeError: ``pool`` holds no tensor or array.
        ValueError: members of different lengths (named), a 0-d member, a scalar member, or a list
            that could be read as members or as examples.

    Example:
        >>> pool_length((torch.zeros(5, 3), torch.zeros(5)))
        5
    """
    if not _has_tensor(pool):
        raise TypeError(
            f"the pool must be a tensor or array, or a tuple/list/dict holding them, got {type(pool).__name__}"
        )
    found: list[tuple[str, int]] = []
    _members(pool, "", found, top=True)
    P = found[0][1]
    for path, m in found[1:]:
        if m != P:
            raise ValueError(f"pool members differ in length: {found[0][0]} has {P} examples, {path} has {m}")
    return P


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, Tensor | np.ndarray):
        return True
    if isinstance(obj, Mapping):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_has_tensor(v) for v in obj)
    return False


def take(pool: Any, positions: Tensor, P: int, top: bool = True) -> Any:
    """``pool`` restricted to ``positions`` (B,) along its first (example) axis, same structure.

    ``pool`` must have passed :func:`pool_length` (which refuses what cannot be cut). Tensors are
    indexed on their own device, numpy arrays with numpy, lists and tuples of per-example values in
    Python (keeping their type, named tuples too).
    """
    kind = _kind(pool, top)
    if kind == "axis":
        return pool[positions.to(pool.device)] if isinstance(pool, Tensor) else pool[positions.numpy()]
    if kind == "mapping":
        return _same_mapping(pool, {k: take(v, positions, P, False) for k, v in pool.items()})
    if kind == "examples":
        picked = [pool[i] for i in positions.tolist()]
    else:
        picked = [take(v, positions, P, False) for v in pool]
    if hasattr(pool, "_fields"):  # a named tuple takes its fields as arguments
        return type(pool)(*picked)
    return type(pool)(picked)


def data_device(data: Any) -> torch.device:
    """The device of the first tensor in ``data`` (the CPU when there is none)."""
    if isinstance(data, Tensor):
        return data.device
    values = data.values() if isinstance(data, Mapping) else data if isinstance(data, tuple | list) else ()
    for v in values:
        if isinstance(v, Tensor | Mapping | tuple | list):
            dev = data_device(v)
            if isinstance(v, Tensor) or dev.type != "cpu":
                return dev
    return torch.device("cpu")


class WeightedIndex:
    """One drawn example, as :class:`~iwlab.sampling.loader.ImportanceBatchSampler` yields it.

    Its dataset ``index``, ``weight`` and ``prob`` (iterable as that triple). It is deliberately not an
    integer nor a tuple: a dataset that is not wrapped in :class:`WeightedDataset` cannot be indexed by
    it (torch names it in its IndexError, a list raises the hint below), so an item can never reach the
    loop without its weight.

    Example:
        >>> tuple(WeightedIndex(3, 0.5, 0.25))
        (3, 0.5, 0.25)
    """

    __slots__ = ("index", "weight", "prob")

    def __init__(self, index: int, weight: float, prob: float) -> None:
        self.index, self.weight, self.prob = index, weight, prob

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.weight, self.prob))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightedIndex) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"WeightedIndex(index={self.index}, weight={self.weight}, prob={self.prob})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickled to the DataLoader's workers
        return (WeightedIndex, (self.index, self.weight, self.prob))

    def __index__(self) -> int:
        raise TypeError(
            "a WeightedIndex is not a plain dataset index: wrap the dataset in iwlab.sampling.WeightedDataset "
            "(ImportanceBatchSampler.loader() does)"
        )


@dataclass
class WeightedItem:
    """A dataset item with the index, weight and probability it was drawn with (what workers return)."""

    item: Any
    index: int
    weight: float
    prob: float


class WeightedDataset(Dataset):
    """Wraps a map-style dataset so that items fetched by :class:`WeightedIndex` keep their weight.

    ``WeightedDataset(ds)[WeightedIndex(i, w, p)]`` is ``WeightedItem(ds[i], i, w, p)``. A plain integer
    key is refused: this wrapper only makes sense behind :class:`ImportanceBatchSampler`, and an
    unweighted item reaching an importance-weighted loss would bias it silently.

    Args:
        dataset: any map-style dataset (``__len__``, integer ``__getitem__``).

    Raises:
        TypeError: (on indexing) a key that is not a :class:`WeightedIndex`.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: WeightedIndex) -> WeightedItem:
        if not isinstance(key, WeightedIndex):
            raise TypeError(
                f"WeightedDataset is indexed by the WeightedIndex entries of an ImportanceBatchSampler, got "
                f"{type(key).__name__}; index the wrapped dataset (.dataset) directly for unweighted access"
            )
        return WeightedItem(self.dataset[key.index], key.index, key.weight, key.prob)


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that each item comes with its index: ``ds[i]`` is ``(item, i)``.

    For the pool pattern: a ``DataLoader`` over it yields ``(pool, indices)``, and
    ``sampler.select(pool, indices=indices, ...)`` needs those indices for approx and pcg.

    Example:
        >>> IndexedDataset(["a", "b"])[1]
        ('b', 1)
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index], index


class ImportanceCollate:
    """Collate :class:`WeightedItem` lists into a :class:`~iwlab.sampling.batch.SampledBatch`.

    The items go through ``collate_fn`` (default ``default_collate``; a Hugging Face data collator
    works too); indices become an int64 tensor, weights and probabilities float32 (exactly the values
    the sampler computed). Picklable, so it runs in the workers.

    Args:
        collate_fn: collates the list of the dataset's own items.

    Raises:
        TypeError: (on call) an entry that is not a :class:`WeightedItem` (the dataset is not wrapped
            in :class:`WeightedDataset`).
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any] = default_collate) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[WeightedItem]) -> SampledBatch:
        if not all(isinstance(it, WeightedItem) for it in items):
            bad = next(it for it in items if not isinstance(it, WeightedItem))
            raise TypeError(
                f"ImportanceCollate expects WeightedItem entries (wrap the dataset in WeightedDataset), got "
                f"{type(bad).__name__}"
            )
        data = self.collate_fn([it.item for it in items])
        if isinstance(data, list):  # default_collate turns (x, y) items into [x, y]: keep fetch's tuple
            data = tuple(data)
        return SampledBatch(
            indices=torch.tensor([it.index for it in items], dtype=torch.long),  # (B,)
            weights=torch.tensor([it.weight for it in items], dtype=torch.float32),  # (B,)
            probs=torch.tensor([it.prob for it in items], dtype=torch.float32),  # (B,)
            data=data,
        )
