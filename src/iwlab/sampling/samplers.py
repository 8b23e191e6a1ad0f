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
``mean(alpha * losses)`` is unbiased for the dataset mean loss when k = 1 and every example with a
nonzero loss can be drawn (p > 0). Known exception: ``approx`` clamps predicted losses <= 0 to 0, so
without smoothing (c = 0) such examples are never drawn and its k = 1 estimate is biased (a Monte Carlo
check gave 0.78 for a true mean of 1.18); use smoothing > 0 until issue 12 replaces the clamp.
Smoothing ``c`` is a constant or ``"adaptive"``: half the exponential moving average of the minibatch
mean loss (paper §4.2).

Samplers are checkpointable: ``state_dict()`` / ``load_state_dict()`` hold the random generator, the
uniform cursor, the loss histories, the predictor and its optimizer, the EMA and the class statistics,
so a resumed run draws exactly the batches an uninterrupted one would. The state also carries the
dataset size ``n`` (and ``num_classes``, ``history`` for the class-aware samplers); loading a state
that does not fit this sampler raises before anything changes.

Inputs are checked at the boundary, and a failed check leaves the sampler unchanged: ``update`` refuses
non-finite or negative losses and indices outside ``[0, n)``, naming them; the oracle refuses negative
or non-finite scores, naming the pool position and dataset index; class labels must be in
``[0, num_classes)``; weights that float32 cannot represent raise instead of becoming 0 or inf.

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
import math
from collections.abc import Callable, Sequence
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
from iwlab.sampling.predictor import LossPredictor

__all__ = [
    "MAX_POOL",
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


def _first_entries(mask: Tensor, limit: int = 5) -> list[int]:
    return mask.nonzero().reshape(-1)[:limit].tolist()


def _more(mask: Tensor, shown: int) -> str:
    extra = int(mask.sum()) - shown
    return f" (and {extra} more)" if extra > 0 else ""


def _check_indices(indices: object, n: int | None, name: str, *, flatten: bool = False) -> Tensor:
    """``indices`` as a CPU int64 tensor, checked to be integer positions in ``[0, n)``."""
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dataset indices, got {type(indices).__name__}")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        # a bool (or uint8) tensor would index as a mask; floats would be truncated
        raise TypeError(f"{name} must be an integer tensor of dataset indices, got dtype {indices.dtype}")
    idx = indices.detach()
    if flatten:
        idx = idx.reshape(-1)
    elif idx.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of dataset indices, got shape {tuple(idx.shape)}")
    idx = idx.cpu().long()  # (B,)
    bad = idx < 0 if n is None else (idx < 0) | (idx >= n)
    if bool(bad.any()):
        where = _first_entries(bad)
        shown = ", ".join(f"{name}[{j}] = {int(idx[j])}" for j in where)
        span = "[0, len(dataset))" if n is None else f"[0, {n})"
        raise ValueError(f"{name} must be dataset indices in {span}; got {shown}{_more(bad, len(where))}")
    return idx


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
    idx = _check_indices(indices, n, "indices")  # (B,) int64
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tuple(t[idx.to(t.device)] for t in tensors)
    items = (
        dataset.__getitems__(idx.tolist()) if hasattr(dataset, "__getitems__") else [dataset[i] for i in idx.tolist()]
    )
    out = default_collate(items)
    return tuple(out) if isinstance(out, list | tuple) else (out,)


def _dataset_labels(dataset: Dataset, labels: Tensor | Sequence[int] | None, n: int) -> tuple[Tensor, str]:
    """The (n,) int64 CPU class labels and where they came from (for error messages)."""
    if labels is not None:
        where = "labels"
        if isinstance(labels, Tensor):
            t = labels.detach()
        else:
            try:
                t = torch.as_tensor(labels)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"labels must be a (N,) tensor or sequence of integer class labels, got {type(labels).__name__}"
                ) from None
    else:
        tensors = getattr(dataset, "tensors", None)
        targets = getattr(dataset, "targets", None)
        if tensors is not None and len(tensors) >= 2:
            t, where = tensors[1].detach(), "dataset.tensors[1]"
        elif targets is not None:
            t, where = torch.as_tensor(targets), "dataset.targets"
        else:
            raise ValueError(
                "this sampler needs the class of every example: pass labels=... (a (N,) tensor), or use a "
                "dataset with .tensors (x, y, ...) or .targets"
            )
    t = t.cpu()
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{where} must hold integer class labels, got dtype {t.dtype}")
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"{where} must have shape ({n},), one class per example; got {tuple(t.shape)}")
    if t.is_floating_point():
        # 1.0 is class 1, but truncating 1.7 (or NaN) to a class would be a silent guess
        bad = ~(torch.isfinite(t) & (t == t.round()))
        if bool(bad.any()):
            j = int(bad.nonzero()[0])
            raise ValueError(f"{where} must hold integer class labels; {where}[{j}] = {t[j].item()}")
    return t.long(), where


def _check_real(
    value: object, name: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """``value`` as a float in the interval (lo, hi) with the given open/closed ends; refuses bool and NaN."""
    v = check_real(value, name)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {span}, got {value}")
    return v


def _state_int(state: dict[str, Any], key: str) -> int:
    try:
        return check_int(state[key], f"checkpoint field '{key}'")
    except TypeError as e:
        raise ValueError(str(e)) from None


def _state_equal(state: dict[str, Any], key: str, mine: int, what: str) -> None:
    """Raise unless the checkpoint's ``key`` (when present: old checkpoints lack it) equals ``mine``."""
    if key in state and _state_int(state, key) != mine:
        raise ValueError(f"checkpoint field '{key}' is {state[key]} but this sampler's {what} is {mine}")


def _state_tensor(state: dict[str, Any], key: str, shape: tuple[int, ...], kind: str, what: str) -> Tensor:
    """The checkpoint's tensor ``key`` on the CPU, checked for ``shape`` and dtype kind (float, int, bool)."""
    t = state[key]
    if not isinstance(t, Tensor):
        raise ValueError(f"checkpoint field '{key}' must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"checkpoint field '{key}' has shape {tuple(t.shape)} but this sampler's is {shape} ({what})")
    is_kind = {
        "float": t.is_floating_point(),
        "int": not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool),
        "bool": t.dtype == torch.bool,
    }[kind]
    if not is_kind:
        raise ValueError(f"checkpoint field '{key}' must be a {kind} tensor, got dtype {t.dtype}")
    t = t.detach().cpu()
    if kind == "float":
        bad = ~(torch.isfinite(t) & (t >= 0))
        if bool(bad.any()):
            j = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"checkpoint field '{key}' must be finite and >= 0; entry {j} = {t[j].item()}")
    return t


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
        ema = _check_real(ema, "ema", 0.0, 1.0, hi_open=True)
        seed = check_seed(seed)  # torch.Generator.manual_seed would wrap -1 to 2**64 - 1 silently
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
            where = _first_entries(bad, 3)
            shown = "; ".join(
                f"pool position {j} (dataset index {int(pool[j])}) has score {raw[j].item()}" for j in where
            )
            raise ValueError(f"{self._score_source} must be finite and >= 0 (losses); {shown}{_more(bad, len(where))}")
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
            >>> # batch = sampler.sample(score_fn=lambda x, y: F.cross_entropy(model(x), y, reduction="none"))
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
        w = importance_weights(p, self.k, n=pool.numel())
        idx = pool[pick]
        data = fetch(self.dataset, idx)
        dev = data[0].device if data and isinstance(data[0], Tensor) else torch.device("cpu")
        self.steps_ += 1
        return SampledBatch(indices=idx, weights=w.to(dev), probs=p, data=data)

    # -- learning from observed losses ----------------------------------------------------------
    def _check_update(self, indices: Tensor, losses: Tensor, *, values: bool = True) -> tuple[Tensor, Tensor]:
        """Validated (B,) int64 CPU indices and (B,) float32 CPU losses; raises before any state changes."""
        idx = _check_indices(indices, self.n, "indices", flatten=True)
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
            where = _first_entries(bad)
            shown = ", ".join(f"losses[{j}] = {raw[j].item()} (dataset index {int(idx[j])})" for j in where)
            raise ValueError(f"losses must be {what}; got {shown}{_more(bad, len(where))}; the sampler is unchanged")
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
            >>> # torch.save({"sampler": sampler.state_dict(), ...}, "ckpt.pt")
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
            >>> # sampler.load_state_dict(torch.load("ckpt.pt")["sampler"])
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        if state.get("method") != self.method:
            raise ValueError(f"checkpoint is for a '{state.get('method')}' sampler, this is '{self.method}'")
        missing = [key for key in self._state_keys if key not in state]
        if missing:
            raise ValueError(f"checkpoint for a '{self.method}' sampler lacks field(s) {', '.join(missing)}")
        self._check_state(state)
        self._set_state(state)

    def _check_state(self, state: dict[str, Any]) -> None:
        _state_equal(state, "n", self.n, "dataset size")
        gen = state["generator"]
        try:
            torch.Generator().set_state(gen.detach().cpu())
        except (AttributeError, TypeError, RuntimeError):
            raise ValueError("checkpoint field 'generator' is not a torch.Generator state") from None
        if _state_int(state, "steps_") < 0:
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
        self.steps_ = _state_int(state, "steps_")
        self.ema_loss_ = None if state["ema_loss_"] is None else float(state["ema_loss_"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, batch_size={self.batch_size}, k={self.k}, "
            f"presample={self.presample}, smoothing={self.smoothing!r}, seed={self.seed})"
        )


class UniformSampler(ImportanceSampler):
    """Plain SGD minibatches: epochs of random permutations, every weight 1.

    ``k``, ``presample`` and ``smoothing`` are accepted (so ``make_sampler`` takes one set of
    arguments for every method) and ignored.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = UniformSampler(TensorDataset(torch.arange(10.0)), batch_size=5)
        >>> sorted(torch.cat([s.sample().indices, s.sample().indices]).tolist()) == list(range(10))
        True
    """

    method = "uniform"
    _state_keys = (*ImportanceSampler._state_keys, "order_", "cursor_")

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
        order = _state_tensor(state, "order_", (self.n,), "int", f"{self.n} examples")
        # anything but a permutation of range(n) would index outside the dataset or skip examples
        if not torch.equal(order.long().sort().values, torch.arange(self.n)):
            raise ValueError(f"checkpoint field 'order_' is not a permutation of range({self.n})")
        cursor = _state_int(state, "cursor_")
        if not 0 <= cursor <= self.n:
            raise ValueError(f"checkpoint field 'cursor_' is {cursor} but must be in [0, {self.n}]")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.order_ = state["order_"].detach().cpu().long().clone()
        self.cursor_ = _state_int(state, "cursor_")


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

    def _scores(self, pool: Tensor, score_fn: Callable[..., Tensor] | None) -> Tensor:
        if score_fn is None:
            raise ValueError("the oracle sampler needs score_fn(*items) -> per-example losses of the pool")
        s = score_fn(*fetch(self.dataset, pool))
        if not isinstance(s, Tensor) or s.shape != pool.shape:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"score_fn must return one loss per pool example, shape {tuple(pool.shape)}; got {got}")
        return s


class _ClassAwareSampler(ImportanceSampler):
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
        y, where = _dataset_labels(dataset, labels, self.n)  # (N,)
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
        _state_equal(state, "num_classes", self.num_classes, "num_classes")


class PCGSampler(_ClassAwareSampler):
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
        >>> s = PCGSampler(ds, batch_size=2, presample=None)
        >>> s.update(torch.tensor([0, 3]), torch.tensor([0.1, 3.0]))
        >>> s.class_mean_.tolist()
        [0.10000000149011612, 3.0]
    """

    method = "pcg"
    _score_source = "the class-mean scores"
    _state_keys = (*ImportanceSampler._state_keys, "class_mean_", "class_var_", "class_seen_")

    def __init__(self, dataset: Dataset, batch_size: int, *, class_decay: float = 0.99, **kw: Any) -> None:
        super().__init__(dataset, batch_size, **kw)
        self.class_decay = _check_real(class_decay, "class_decay", 0.0, 1.0)
        self.class_mean_ = torch.zeros(self.num_classes)
        # float64: the variance of float32 losses can leave float32's range (losses of 3e20 give 2e40),
        # and an inf here would make the sampler's own checkpoint unloadable
        self.class_var_ = torch.zeros(self.num_classes, dtype=torch.float64)
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
        _state_tensor(state, "class_mean_", C, "float", what)
        _state_tensor(state, "class_var_", C, "float", what)
        _state_tensor(state, "class_seen_", C, "bool", what)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.class_mean_ = state["class_mean_"].detach().cpu().clone()
        self.class_var_ = state["class_var_"].detach().cpu().to(torch.float64)  # older checkpoints: float32
        self.class_seen_ = state["class_seen_"].detach().cpu().clone()


class ApproxSampler(_ClassAwareSampler):
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
        _state_equal(state, "history", self.history, "history")
        what = f"n={self.n}, history={self.history}"
        h = _state_tensor(state, "history_", (self.n, self.history), "float", what)
        if h.dtype != torch.float32:  # the predictor runs in float32; another dtype fails at the next sample()
            raise ValueError(f"checkpoint field 'history_' must be float32, got {h.dtype}")
        lengths = _state_tensor(state, "lengths_", (self.n,), "int", what)
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


_CLASSES: dict[str, type[ImportanceSampler]] = {
    "uniform": UniformSampler,
    "oracle": OracleSampler,
    "approx": ApproxSampler,
    "pcg": PCGSampler,
}


def make_sampler(method: str, dataset: Dataset, batch_size: int, **kwargs: Any) -> ImportanceSampler:
    """A sampler by name: ``uniform``, ``oracle``, ``approx`` or ``pcg``.

    Raises:
        ValueError: an unknown ``method``, or (from the sampler) an invalid argument.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> make_sampler("oracle", TensorDataset(torch.zeros(10, 2)), 4, k=0.5).k
        0.5
    """
    if method not in _CLASSES:
        raise ValueError(f"unknown sampling method '{method}'; choose one of {', '.join(METHODS)}")
    return _CLASSES[method](dataset, batch_size, **kwargs)
