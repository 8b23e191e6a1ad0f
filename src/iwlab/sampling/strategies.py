"""The scoring strategies of loss-based importance sampling, except the learned one (:mod:`~iwlab.sampling.approx`).

* :class:`UniformSampler`: epochs of random permutations (plain SGD), weights 1;
* :class:`OracleSampler`: a uniform pool scored by the model itself (a forward pass), eq. 10;
* :class:`PerClassGaussianSampler`: scores are the running mean loss of each class (paper §4.3).

Source: Katharopoulos & Fleuret (2017), "Biased Importance Sampling for Deep Neural Network
Training", §3-4.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> s = UniformSampler(TensorDataset(torch.arange(4.0)), batch_size=2, seed=0)
    >>> s.sample().weights.tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from iwlab.functional.checks import check_int
from iwlab.sampling.base import ImportanceSampler
from iwlab.sampling.batch import SampledBatch, data_device, fetch, take
from iwlab.sampling.checks import check_interval, dataset_labels, state_equal, state_int, state_tensor

__all__ = ["MAX_CLASSES", "OracleSampler", "PerClassGaussianSampler", "UniformSampler"]

# the most classes a class-aware sampler keeps state for (a vocabulary of 16.7M words)
MAX_CLASSES = 2**24


class UniformSampler(ImportanceSampler):
    """Plain SGD minibatches: epochs of random permutations, every weight 1.

    ``k``, ``presample``, ``smoothing`` and ``match_unbiased_sum`` are accepted (so ``make_sampler`` takes one set of
    arguments for every method) and ignored.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = UniformSampler(TensorDataset(torch.arange(10.0)), batch_size=5)
        >>> sorted(torch.cat([s.sample().indices, s.sample().indices]).tolist()) == list(range(10))
        True
    """

    method = "uniform"
    learns = False
    _state_keys = (*ImportanceSampler._state_keys, "order_", "cursor_")

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, **kw: Any) -> None:
        kw.pop("k", None)
        kw.pop("presample", None)
        kw.pop("smoothing", None)
        kw.pop("match_unbiased_sum", None)
        super().__init__(dataset, batch_size, k=1.0, presample=None, smoothing=0.0, seed=seed, **kw)
        self.order_ = torch.randperm(self.n, generator=self.generator)
        self.cursor_ = 0

    def sample(self, score_fn: Callable[..., Tensor] | None = None) -> SampledBatch:
        """The next B indices of the current permutation (a new permutation when it runs out)."""
        idx, w, p = self.draw_indices()
        data = fetch(self.dataset, idx)
        return SampledBatch(idx, w.to(data_device(data)), p, data)

    def draw_indices(self) -> tuple[Tensor, Tensor, Tensor]:
        """The next B indices of the current permutation, weights 1 and probabilities 1/n (CPU)."""
        out = []
        need = self.batch_size
        while need > 0:
            if self.cursor_ >= self.n:
                self.order_ = torch.randperm(self.n, generator=self.generator)
                self.cursor_ = 0
            take = self.order_[self.cursor_ : self.cursor_ + need]
            self.cursor_ += take.numel()
            need -= take.numel()
            out.append(take)
        idx = torch.cat(out)
        self.steps_ += 1
        B = idx.numel()
        return idx, torch.ones(B), torch.full((B,), 1.0 / self.n)

    def select(
        self, pool: Any, *, indices: Tensor | None = None, score_fn: Callable[..., Tensor] | None = None
    ) -> SampledBatch:
        """Plain SGD in the pool pattern: the pool's first B examples (a shuffled loader's pool is uniform), weights 1.

        A pool smaller than B is kept whole. ``score_fn`` is ignored; ``indices`` are checked as for
        every sampler.
        """
        P, idx = self._check_pool(pool, indices)
        keep = torch.arange(min(P, self.batch_size))  # (B,)
        kept = take(pool, keep, P)
        self.steps_ += 1
        B = keep.numel()
        return SampledBatch(
            keep if idx is None else idx[keep], torch.ones(B, device=data_device(kept)), torch.full((B,), 1.0 / P), kept
        )

    def reseed(self, seed: int) -> None:
        """Restart from ``seed`` with a new permutation (the cursor at its start)."""
        super().reseed(seed)
        self.order_ = torch.randperm(self.n, generator=self.generator)
        self.cursor_ = 0

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Nothing to learn: uniform sampling ignores losses (and so never waits on the device for them).

        ``indices`` are checked as for every sampler; the loss values are not read.

        Raises:
            TypeError: ``indices`` not an integer tensor, or ``losses`` not a real tensor.
            ValueError: sizes that differ, or an index outside ``[0, n)``.
        """
        self._check_update(indices, losses, values=False)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {**super().state_dict(), "order_": self.order_.clone(), "cursor_": self.cursor_}

    def _check_state(self, state: dict[str, Any]) -> None:
        super()._check_state(state)
        order = state_tensor(state, "order_", (self.n,), "int", f"{self.n} examples")
        # anything but a permutation of range(n) would index outside the dataset or skip examples
        if not torch.equal(order.long().sort().values, torch.arange(self.n)):
            raise ValueError(f"checkpoint field 'order_' is not a permutation of range({self.n})")
        cursor = state_int(state, "cursor_")
        if not 0 <= cursor <= self.n:
            raise ValueError(f"checkpoint field 'cursor_' is {cursor} but must be in [0, {self.n}]")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.order_ = state["order_"].detach().cpu().long().clone()
        self.cursor_ = state_int(state, "cursor_")


class OracleSampler(ImportanceSampler):
    """Scores the pool with the model itself: ``score_fn(*items) -> (P,)`` per-example losses.

    Run the model in eval mode inside ``score_fn`` if you want scores without dropout noise; the
    sampler calls it under ``torch.no_grad()``. Scores must be finite and >= 0 (losses): a negative
    or non-finite score raises, naming its pool position and dataset index.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = OracleSampler(TensorDataset(torch.tensor([0.0, 1.0])), batch_size=4, presample=None)
        >>> s.sample(score_fn=lambda x: x).indices.tolist()  # example 0 has score 0: never drawn
        [1, 1, 1, 1]
    """

    method = "oracle"
    _score_source = "score_fn's scores"
    needs_data = True

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None, data: Any = None) -> Tensor:
        if score_fn is None:
            raise ValueError("the oracle sampler needs score_fn(*items) -> per-example losses of the pool")
        if data is None:
            data = fetch(self.dataset, pool)
        s = score_fn(*data) if isinstance(data, tuple | list) else score_fn(data)
        if not isinstance(s, Tensor) or s.shape != pool.shape:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"score_fn must return one loss per pool example, shape {tuple(pool.shape)}; got {got}")
        return s


class ClassAwareSampler(ImportanceSampler):
    """Base of the samplers that score by class: resolves ``labels`` (N,) and ``num_classes``.

    Labels come from ``labels`` (a (N,) tensor or sequence), else ``dataset.tensors[1]``, else
    ``dataset.targets``; they must be integers (integral floats such as 1.0 are accepted) in
    ``[0, num_classes)``. ``num_classes`` defaults to ``max(label) + 1``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        labels: Tensor | Sequence[int] | None = None,
        num_classes: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(dataset, batch_size, **kw)
        y, where = dataset_labels(dataset, labels, self.n, type(self).__name__)  # (N,)
        neg = y < 0
        if bool(neg.any()):
            j = int(neg.nonzero()[0])
            raise ValueError(f"class labels must be in [0, num_classes); {where}[{j}] = {int(y[j])}")
        if num_classes is None:
            C = int(y.max()) + 1
        else:
            C = check_int(num_classes, "num_classes")
            if C < 1:
                raise ValueError(f"num_classes must be >= 1, got {C}")
        if C > MAX_CLASSES:  # per-class state (embedding, class means) of that size would not fit in memory
            raise ValueError(
                f"num_classes is {C} (from {where if num_classes is None else 'num_classes'}); at most "
                f"{MAX_CLASSES} classes are supported: are the labels class indices?"
            )
        big = y >= C
        if bool(big.any()):
            j = int(big.nonzero()[0])
            raise ValueError(f"class labels must be in [0, num_classes={C}); {where}[{j}] = {int(y[j])}")
        self.labels = y
        self.num_classes = C

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {**super().state_dict(), "num_classes": self.num_classes}

    def _check_state(self, state: dict[str, Any]) -> None:
        super()._check_state(state)
        state_equal(state, "num_classes", self.num_classes, "num_classes")


class PerClassGaussianSampler(ClassAwareSampler):
    """Per-class Gaussian: an example's score is the running mean loss of its class (paper §4.3).

    ``class_mean_`` and ``class_var_`` are exponential moving statistics (decay ``class_decay`` in
    [0, 1]) of the observed losses; classes never observed score the mean of the observed ones (1
    before any).

    Args:
        class_decay: decay of the class statistics, in [0, 1].
        **kw: as :class:`ImportanceSampler`, plus ``labels`` and ``num_classes``.

    Raises:
        ValueError: as :class:`ImportanceSampler`, a label outside ``[0, num_classes)``, or
            ``class_decay`` outside [0, 1].

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.zeros(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]))
        >>> s = PerClassGaussianSampler(ds, batch_size=2, presample=None)
        >>> s.update(torch.tensor([0, 3]), torch.tensor([0.1, 3.0]))
        >>> s.class_mean_.tolist()
        [0.10000000149011612, 3.0]
    """

    method = "pcg"
    needs_indices = True
    _score_source = "the class-mean scores"
    _state_keys = (*ImportanceSampler._state_keys, "class_mean_", "class_var_", "class_seen_")

    def __init__(self, dataset: Dataset, batch_size: int, *, class_decay: float = 0.99, **kw: Any) -> None:
        super().__init__(dataset, batch_size, **kw)
        self.class_decay = check_interval(class_decay, "class_decay", 0.0, 1.0)
        self.class_mean_ = torch.zeros(self.num_classes)
        # float64: the variance of float32 losses can leave float32's range (losses of 3e20 give 2e40),
        # and an inf here would make the sampler's own checkpoint unloadable
        self.class_var_ = torch.zeros(self.num_classes, dtype=torch.float64)
        self.class_seen_ = torch.zeros(self.num_classes, dtype=torch.bool)

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None, data: Any = None) -> Tensor:
        mean = self.class_mean_.clone()
        fill = float(mean[self.class_seen_].mean()) if bool(self.class_seen_.any()) else 1.0
        mean[~self.class_seen_] = fill
        return mean[self.labels[pool]]

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        y = self.labels[indices]
        for c in y.unique().tolist():
            v = losses[y == c]
            m = float(v.mean())
            if not math.isfinite(m):  # the float32 sum overflowed; the mean itself fits
                m = float(v.double().mean())
            var = float(v.double().var(unbiased=False)) if v.numel() > 1 else 0.0
            if not bool(self.class_seen_[c]):
                self.class_mean_[c], self.class_var_[c] = m, var
                self.class_seen_[c] = True
            else:
                d = self.class_decay
                self.class_mean_[c] = d * self.class_mean_[c] + (1 - d) * m
                self.class_var_[c] = d * self.class_var_[c] + (1 - d) * var

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            **super().state_dict(),
            "class_mean_": self.class_mean_.clone(),
            "class_var_": self.class_var_.clone(),
            "class_seen_": self.class_seen_.clone(),
        }

    def _check_state(self, state: dict[str, Any]) -> None:
        super()._check_state(state)
        C, what = (self.num_classes,), f"num_classes={self.num_classes}"
        state_tensor(state, "class_mean_", C, "float", what)
        state_tensor(state, "class_var_", C, "float", what)
        state_tensor(state, "class_seen_", C, "bool", what)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.class_mean_ = state["class_mean_"].detach().cpu().clone()
        self.class_var_ = state["class_var_"].detach().cpu().to(torch.float64)  # older checkpoints: float32
        self.class_seen_ = state["class_seen_"].detach().cpu().clone()
