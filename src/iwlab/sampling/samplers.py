"""Importance samplers for any PyTorch training loop (Katharopoulos & Fleuret, 2017).

Every sampler draws a minibatch of dataset indices, fetches the items from an ordinary
``torch.utils.data.Dataset`` and returns weights ``alpha`` that multiply the per-example losses:

    sampler = OracleSampler(train_set, batch_size=128, k=0.5, presample=3.0, smoothing="adaptive")
    for step in range(6000):
        batch = sampler.sample(score_fn=lambda x, y: F.cross_entropy(model(x), y, reduction="none"))
        x, y = batch.data
        losses = F.cross_entropy(model(x), y, reduction="none")          # (B,)
        (batch.weights * losses).mean().backward(); opt.step(); opt.zero_grad()
        sampler.update(batch.indices, losses.detach())                   # history, predictor, EMA

Strategies (``make_sampler(method, ...)``):

* ``uniform``: epochs of random permutations (plain SGD), weights 1;
* ``oracle``: draw a uniform pool of ``presample * B`` examples, score them with ``score_fn`` (a
  forward pass), draw B of them with ``p ∝ score + c`` (with replacement);
* ``approx``: as oracle, but the scores are the :class:`~iwlab.sampling.predictor.LossPredictor`'s
  predictions from each example's loss history and class, trained online with MSE in ``update``;
* ``pcg``: scores are the running mean of the loss of each class (a univariate Gaussian per class).

Weights are ``alpha_i = 1 / (P p_i^k)`` with P the pool size (:mod:`iwlab.functional.sampling`), so
``mean(alpha * losses)`` is unbiased for the dataset mean loss when k = 1. Smoothing ``c`` is a constant
or ``"adaptive"``: half the exponential moving average of the minibatch mean loss (paper §4.2).

Samplers are checkpointable: ``state_dict()`` / ``load_state_dict()`` hold the random generator, the
uniform cursor, the loss histories, the predictor and its optimizer, the EMA and the class statistics,
so a resumed run draws exactly the batches an uninterrupted one would.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.randn(100, 3), torch.randint(0, 2, (100,)))
    >>> s = OracleSampler(ds, batch_size=8, presample=4.0, seed=0)
    >>> b = s.sample(score_fn=lambda x, y: x.pow(2).sum(1))
    >>> b.indices.shape, b.weights.shape, b.data[0].shape
    (torch.Size([8]), torch.Size([8]), torch.Size([8, 3]))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from iwlab.functional.sampling import draw, importance_weights, sampling_probabilities
from iwlab.sampling.predictor import LossPredictor

__all__ = [
    "METHODS",
    "ApproxSampler",
    "ImportanceSampler",
    "OracleSampler",
    "PCGSampler",
    "SampledBatch",
    "UniformSampler",
    "fetch",
    "make_sampler",
]

METHODS = ("uniform", "oracle", "approx", "pcg")
Smoothing = float | Literal["adaptive"]


@dataclass
class SampledBatch:
    """One drawn minibatch.

    Attributes:
        indices: (B,) dataset indices (with replacement: an index may repeat).
        weights: (B,) ``alpha``; multiply the per-example losses by these.
        probs: (B,) the probability each example was drawn with, within the pool.
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

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> fetch(TensorDataset(torch.arange(5.0)), torch.tensor([4, 0]))
        (tensor([4., 0.]),)
    """
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tuple(t[indices.to(t.device)] for t in tensors)
    idx = indices.tolist()
    items = dataset.__getitems__(idx) if hasattr(dataset, "__getitems__") else [dataset[i] for i in idx]
    out = default_collate(items)
    return tuple(out) if isinstance(out, list | tuple) else (out,)


def _dataset_labels(dataset: Dataset, labels: Tensor | Sequence[int] | None) -> Tensor:
    if labels is not None:
        return torch.as_tensor(labels, dtype=torch.long).cpu()
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) >= 2:
        return tensors[1].long().cpu()
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets, dtype=torch.long).cpu()
    raise ValueError(
        "this sampler needs the class of every example: pass labels=... (a (N,) tensor), or use a "
        "dataset with .tensors (x, y, ...) or .targets"
    )


class ImportanceSampler:
    """Base class: draws a pool, scores it (``_scores``), samples B from it and weights them.

    Args:
        dataset: any map-style ``Dataset`` (``len`` and integer indexing).
        batch_size: B, examples per minibatch.
        k: the bias exponent in ``alpha = 1/(P p^k)``, in (-inf, 1]; 1 is unbiased.
        presample: pool size as a multiple of B (pool = round(presample * B), drawn uniformly with
            replacement); ``None`` scores the whole dataset every step.
        smoothing: additive smoothing c >= 0, or ``"adaptive"`` (c = EMA(minibatch loss) / 2).
        ema: decay of the minibatch-loss moving average used by adaptive smoothing.
        seed: seed of the sampler's own ``torch.Generator`` (independent of the global RNG).
    """

    method = "base"

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
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if n < 1:
            raise ValueError("dataset is empty")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not k <= 1.0:
            raise ValueError(f"k must be in (-inf, 1] (k = 1 is unbiased), got {k}")
        if presample is not None and not presample > 0:
            raise ValueError(f"presample must be > 0 (a multiple of batch_size) or None, got {presample}")
        if smoothing != "adaptive" and not (isinstance(smoothing, int | float) and 0 <= smoothing < float("inf")):
            raise ValueError(f"smoothing must be a number >= 0 or 'adaptive', got {smoothing!r}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.k = float(k)
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
        return max(1, round(self.presample * self.batch_size))

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

    def sample(self, score_fn: Callable[..., Tensor] | None = None) -> SampledBatch:
        """Draw one minibatch. ``score_fn(*items) -> (P,)`` losses is needed by the oracle only.

        Example:
            >>> # batch = sampler.sample(score_fn=lambda x, y: F.cross_entropy(model(x), y, reduction="none"))
        """
        pool = self._draw_pool()  # (P,)
        with torch.no_grad():
            scores = self._scores(pool, score_fn).detach().float().cpu().clamp_min(0.0)  # (P,)
        probs = sampling_probabilities(scores, self.smoothing_constant())  # (P,)
        pick = draw(probs, self.batch_size, self.generator)  # (B,) positions in the pool
        p = probs[pick]
        w = importance_weights(p, self.k, n=pool.numel())
        idx = pool[pick]
        data = fetch(self.dataset, idx)
        dev = data[0].device if data and isinstance(data[0], Tensor) else torch.device("cpu")
        self.steps_ += 1
        return SampledBatch(indices=idx, weights=w.to(dev), probs=p, data=data)

    # -- learning from observed losses ----------------------------------------------------------
    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record the per-example training losses (B,) observed for the drawn ``indices`` (B,).

        Updates the adaptive-smoothing EMA and the strategy's statistics (histories, predictor,
        class means). Pass the unweighted per-example losses, detached.
        """
        losses = losses.detach().float().cpu().reshape(-1)
        indices = indices.cpu().reshape(-1)
        if losses.shape != indices.shape:
            raise ValueError(f"losses {tuple(losses.shape)} and indices {tuple(indices.shape)} must match")
        m = float(losses.mean())
        self.ema_loss_ = m if self.ema_loss_ is None else self.ema * self.ema_loss_ + (1 - self.ema) * m
        self._observe(indices, losses)

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        pass

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue sampling exactly where this sampler is.

        Example:
            >>> # torch.save({"sampler": sampler.state_dict(), ...}, "ckpt.pt")
        """
        return {
            "method": self.method,
            "generator": self.generator.get_state(),
            "steps_": self.steps_,
            "ema_loss_": self.ema_loss_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (of a sampler of the same method).

        Example:
            >>> # sampler.load_state_dict(torch.load("ckpt.pt")["sampler"])
        """
        if state.get("method") != self.method:
            raise ValueError(f"checkpoint is for a '{state.get('method')}' sampler, this is '{self.method}'")
        self.generator.set_state(state["generator"])
        self.steps_ = int(state["steps_"])
        self.ema_loss_ = state["ema_loss_"]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, batch_size={self.batch_size}, k={self.k}, "
            f"presample={self.presample}, smoothing={self.smoothing!r}, seed={self.seed})"
        )


class UniformSampler(ImportanceSampler):
    """Plain SGD minibatches: epochs of random permutations, every weight 1.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = UniformSampler(TensorDataset(torch.arange(10.0)), batch_size=5)
        >>> sorted(torch.cat([s.sample().indices, s.sample().indices]).tolist()) == list(range(10))
        True
    """

    method = "uniform"

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, **kw: Any) -> None:
        kw.pop("k", None)
        kw.pop("presample", None)
        kw.pop("smoothing", None)
        super().__init__(dataset, batch_size, k=1.0, presample=None, smoothing=0.0, seed=seed, **kw)
        self.order_ = torch.randperm(self.n, generator=self.generator)
        self.cursor_ = 0

    def sample(self, score_fn: Callable[..., Tensor] | None = None) -> SampledBatch:
        """The next B indices of the current permutation (a new permutation when it runs out)."""
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
        data = fetch(self.dataset, idx)
        dev = data[0].device if data and isinstance(data[0], Tensor) else torch.device("cpu")
        self.steps_ += 1
        B = idx.numel()
        return SampledBatch(idx, torch.ones(B, device=dev), torch.full((B,), 1.0 / self.n), data)

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Nothing to learn: uniform sampling ignores losses (and so never waits on the device for them)."""
        if indices.numel() != losses.numel():
            raise ValueError(f"losses {tuple(losses.shape)} and indices {tuple(indices.shape)} must match")

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {**super().state_dict(), "order_": self.order_.clone(), "cursor_": self.cursor_}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().load_state_dict(state)
        self.order_ = state["order_"].clone()
        self.cursor_ = int(state["cursor_"])


class OracleSampler(ImportanceSampler):
    """Scores the pool with the model itself: ``score_fn(*items) -> (P,)`` per-example losses.

    Run the model in eval mode inside ``score_fn`` if you want scores without dropout noise; the
    sampler calls it under ``torch.no_grad()``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = OracleSampler(TensorDataset(torch.tensor([0.0, 1.0])), batch_size=4, presample=None)
        >>> s.sample(score_fn=lambda x: x).indices.tolist()  # example 0 has score 0: never drawn
        [1, 1, 1, 1]
    """

    method = "oracle"

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        if score_fn is None:
            raise ValueError("the oracle sampler needs score_fn(*items) -> per-example losses of the pool")
        s = score_fn(*fetch(self.dataset, pool))
        if not isinstance(s, Tensor) or s.shape != pool.shape:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"score_fn must return one loss per pool example, shape {tuple(pool.shape)}; got {got}")
        return s


class _ClassAwareSampler(ImportanceSampler):
    """Base of the samplers that score by class: resolves ``labels`` (N,) and ``num_classes``."""

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
        self.labels = _dataset_labels(dataset, labels)
        self.num_classes = int(num_classes or int(self.labels.max()) + 1)


class PCGSampler(_ClassAwareSampler):
    """Per-class Gaussian: an example's score is the running mean loss of its class (paper §4.3).

    ``class_mean_`` and ``class_var_`` are exponential moving statistics (decay ``class_decay``) of
    the observed losses; classes never observed score the mean of the observed ones (1 before any).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.zeros(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]))
        >>> s = PCGSampler(ds, batch_size=2, presample=None)
        >>> s.update(torch.tensor([0, 3]), torch.tensor([0.1, 3.0]))
        >>> s.class_mean_.tolist()
        [0.10000000149011612, 3.0]
    """

    method = "pcg"

    def __init__(self, dataset: Dataset, batch_size: int, *, class_decay: float = 0.99, **kw: Any) -> None:
        super().__init__(dataset, batch_size, **kw)
        self.class_decay = class_decay
        self.class_mean_ = torch.zeros(self.num_classes)
        self.class_var_ = torch.zeros(self.num_classes)
        self.class_seen_ = torch.zeros(self.num_classes, dtype=torch.bool)

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        mean = self.class_mean_.clone()
        fill = float(mean[self.class_seen_].mean()) if bool(self.class_seen_.any()) else 1.0
        mean[~self.class_seen_] = fill
        return mean[self.labels[pool]]

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        y = self.labels[indices]
        for c in y.unique().tolist():
            v = losses[y == c]
            m, var = float(v.mean()), float(v.var(unbiased=False)) if v.numel() > 1 else 0.0
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

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().load_state_dict(state)
        self.class_mean_ = state["class_mean_"].clone()
        self.class_var_ = state["class_var_"].clone()
        self.class_seen_ = state["class_seen_"].clone()


class ApproxSampler(_ClassAwareSampler):
    """Scores from the paper's :class:`LossPredictor`, trained online alongside the model (§3.3).

    ``history_`` (N, H) keeps each example's last ``history`` observed losses (oldest first, left
    aligned) and ``lengths_`` (N,) how many there are. ``update`` first takes one Adam step on the
    predictor's MSE between its prediction from the old history and the observed losses (Algorithm 1,
    line 9), then appends the losses to the histories (line 10).

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
        self.history = history
        self.hidden = hidden
        self.predictor_lr = predictor_lr
        # the predictor's init comes from the sampler's seed, not the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919)
            self.predictor = LossPredictor(self.num_classes, hidden=hidden)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=predictor_lr)
        self.history_ = torch.zeros(self.n, history)
        self.lengths_ = torch.zeros(self.n, dtype=torch.long)
        self.predictor_loss_: float | None = None

    def predict(self, indices: Tensor) -> Tensor:
        """The predictor's loss estimates (P,) for dataset ``indices`` (P,), from current histories."""
        return self.predictor(self.history_[indices], self.lengths_[indices], self.labels[indices])

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        return self.predict(pool)

    def _observe(self, indices: Tensor, losses: Tensor) -> None:
        pred = self.predict(indices)  # (B,), from the history before this step
        loss = torch.nn.functional.mse_loss(pred, losses)
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
            "history_": self.history_.clone(),
            "lengths_": self.lengths_.clone(),
            "predictor": copy.deepcopy(self.predictor.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "predictor_loss_": self.predictor_loss_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().load_state_dict(state)
        self.history_ = state["history_"].clone()
        self.lengths_ = state["lengths_"].clone()
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.predictor_loss_ = state["predictor_loss_"]


_CLASSES: dict[str, type[ImportanceSampler]] = {
    "uniform": UniformSampler,
    "oracle": OracleSampler,
    "approx": ApproxSampler,
    "pcg": PCGSampler,
}


def make_sampler(method: str, dataset: Dataset, batch_size: int, **kwargs: Any) -> ImportanceSampler:
    """A sampler by name: ``uniform``, ``oracle``, ``approx`` or ``pcg``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> make_sampler("oracle", TensorDataset(torch.zeros(10, 2)), 4, k=0.5).k
        0.5
    """
    if method not in _CLASSES:
        raise ValueError(f"unknown sampling method '{method}'; choose one of {', '.join(METHODS)}")
    return _CLASSES[method](dataset, batch_size, **kwargs)
