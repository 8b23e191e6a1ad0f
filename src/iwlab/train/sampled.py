"""One model trained on minibatches drawn by an importance sampler, with honest wall-clock accounting.

:class:`~iwlab.train.ensemble.EnsembleTrainer` advances M models on shared shuffled epochs; importance
sampling instead picks every minibatch from the model's own current losses, so each run needs its own
forward passes over its own pool. :func:`train_sampled` is that loop, for any ``nn.Module`` that maps
``x`` to class logits and any :mod:`iwlab.sampling` sampler:

1. ``sampler.sample(score_fn)`` draws B examples and their weights; for the oracle, ``score_fn`` is a
   forward pass over the pool, in eval mode and without gradients;
2. the weighted loss ``(1/B) sum_b alpha_b L_b`` (:func:`iwlab.functional.weighted_cross_entropy`
   with ``normalization="batch_size"``) is minimized by one optimizer step;
3. ``sampler.update`` receives the unweighted per-example losses (histories, predictor, EMA).

Wall-clock time is split into ``time_scoring`` (steps 1 and 3: drawing, fetching, scoring, the
predictor's training) and ``time_training`` (step 2); evaluation and checkpoints are not counted. On
CUDA the clocks are read after a device synchronization, so asynchronous kernels are charged to the
phase that launched them.

The epochs, checkpoints (every epoch end: model, optimizer, sampler, RNG, records, clocks), resume
and progress belong to the one training loop, :func:`iwlab.train.fit.fit`; this module supplies its
job: the sampler as the batch source and a single-module step.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from iwlab.sampling import make_sampler
    >>> ds = TensorDataset(torch.randn(64, 2), torch.randint(0, 2, (64,)))
    >>> model = torch.nn.Linear(2, 2)
    >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
    >>> recs = train_sampled(model, make_sampler("oracle", ds, 16), opt, iterations=8, steps_per_epoch=4)
    >>> [r["epoch"] for r in recs]
    [1, 2]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iwlab.files import fingerprint
from iwlab.functional.checks import check_int
from iwlab.functional.losses import weighted_cross_entropy
from iwlab.sampling import ImportanceSampler
from iwlab.train.fit import Clock
from iwlab.train.fit import fit as fit_loop

__all__ = ["per_example_loss", "run_record", "train_sampled"]


def _as_labels(y: Tensor) -> Tensor:
    """Class indices of any integer dtype as int64 (``F.cross_entropy`` takes int64 only); floats are refused.

    Example:
        >>> _as_labels(torch.tensor([1, 0], dtype=torch.int32)).dtype
        torch.int64
    """
    if not isinstance(y, Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        got = y.dtype if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"the dataset's labels must be integer class indices, got {got}")
    return y if y.dtype == torch.int64 else y.long()


def per_example_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 4096) -> Tensor:
    """Unweighted cross-entropy of every example (N,), in chunks, without gradients (mode unchanged).

    Example:
        >>> per_example_loss(torch.nn.Linear(2, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)).shape
        torch.Size([4])
    """
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            out.append(F.cross_entropy(model(x[s : s + chunk]), _as_labels(y[s : s + chunk]), reduction="none"))
    return torch.cat(out) if out else torch.zeros(0)


_SAMPLER_KEYS = (
    "method",
    "n",
    "batch_size",
    "k",
    "presample",
    "smoothing",
    "ema",
    "seed",
    "num_classes",
    "class_decay",
    "history",
    "hidden",
    "predictor_lr",
    "score_floor",
    "match_unbiased_sum",
)
# the hyperparameters torch's optimizers read; implementation switches (foreach, fused, capturable, ...)
# and keys a newer torch adds are left out, so an upgrade alone does not refuse a checkpoint
_OPTIMIZER_KEYS = (
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
    "nesterov",
    "betas",
    "eps",
    "amsgrad",
    "maximize",
    "alpha",
    "centered",
    "rho",
    "lr_decay",
    "initial_accumulator_value",
)


def _plain(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.tolist()
    if isinstance(v, tuple | list):
        return [_plain(u) for u in v]
    return v


def run_record(
    model: nn.Module, sampler: ImportanceSampler, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> dict[str, Any]:
    """The settings a :func:`train_sampled` checkpoint records and a resumed run must match.

    ``steps_per_epoch``; the sampler's class and settings (method, dataset size ``n``, batch size, ``k``,
    ``presample``, ``smoothing``, ``ema``, seed, and the class-aware samplers' extra settings) with a
    :func:`~iwlab.files.fingerprint` of a tensor-backed dataset's tensors; the optimizer's
    class and, per parameter group, its size and hyperparameters (lr, momentum, weight decay, betas,
    eps, ...) as configured; the model's parameter names, shapes and dtypes.

    Not recorded: ``iterations`` (a run may be extended; :func:`train_sampled` checks that the
    checkpoint is a prefix of this run), ``lr_at``, ``transform`` and ``on_epoch`` (code, not
    values), the contents of a dataset without ``.tensors``, and model code that keeps the parameter
    shapes.

    Returns:
        A nested dict of plain values (numbers, strings, lists), compared by
        :func:`~iwlab.files.check_record`.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from iwlab.sampling import make_sampler
        >>> ds = TensorDataset(torch.randn(32, 2), torch.randint(0, 2, (32,)))
        >>> model = torch.nn.Linear(2, 2)
        >>> rec = run_record(model, make_sampler("oracle", ds, 8), torch.optim.SGD(model.parameters(), lr=0.1), 300)
        >>> rec["sampler"]["method"], rec["optimizer"]["groups"][0]["lr"]
        ('oracle', 0.1)
    """
    smp: dict[str, Any] = {"class": type(sampler).__name__}
    smp.update({k: _plain(getattr(sampler, k)) for k in _SAMPLER_KEYS if hasattr(sampler, k)})
    tensors = getattr(getattr(sampler, "dataset", None), "tensors", None)
    smp["data_fingerprint"] = fingerprint(*tensors) if isinstance(tensors, tuple | list) else None
    groups = [
        {"parameters": len(g["params"]), **{k: _plain(g[k]) for k in _OPTIMIZER_KEYS if k in g}}
        for g in optimizer.param_groups
    ]
    return {
        "steps_per_epoch": steps_per_epoch,
        "sampler": smp,
        "optimizer": {"class": type(optimizer).__name__, "groups": groups},
        "model": {n: [list(p.shape), str(p.dtype)] for n, p in model.named_parameters()},
    }


TRAINING_STATS = (
    "iteration",
    "train_loss",
    "train_loss_std",
    "train_loss_raw",
    "time_scoring",
    "time_training",
    "time_total",
)


class _SampledJob:
    """The loop's job: the sampler draws each batch from the model's losses; one module takes the step."""

    M = 1
    uses_global_rng = True  # dropout in the module, torch.rand in samplers

    def __init__(
        self,
        model: nn.Module,
        sampler: ImportanceSampler,
        optimizer: torch.optim.Optimizer,
        iterations: int,
        steps_per_epoch: int,
        on_epoch: Callable[[nn.Module, int], dict[str, float]] | None,
        lr_at: Callable[[int], float] | None,
        transform: Callable[[Tensor], Tensor] | None,
        source: Any,
    ) -> None:
        self.model, self.sampler, self.optimizer = model, sampler, optimizer
        self.iterations, self.steps_per_epoch = iterations, steps_per_epoch
        self.on_epoch, self.lr_at, self.transform, self.source = on_epoch, lr_at, transform, source
        # taken before anything trains: the configured settings (lr_at changes the live lr)
        self._spec = run_record(model, sampler, optimizer, steps_per_epoch)
        self._loss = 0.0
        self.done = 0  # iterations trained

    def spec(self) -> dict[str, Any]:
        return self._spec

    def training_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "iteration": self.done,
        }

    def check_training_state(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint past ``iterations``, or one whose last epoch its own ``iterations`` cut short."""
        done, spe = int(state["iteration"]), self.steps_per_epoch
        ep = -(-done // spe)
        if done > self.iterations:
            raise ValueError(
                f"checkpoint {self.source} is at iteration {done} (epoch {ep}) but train_sampled(iterations="
                f"{self.iterations}) was asked for; ask for at least that many, or delete the checkpoint to "
                "start afresh"
            )
        if done < ep * spe and done != self.iterations:
            # its last epoch was cut short by its own iterations: continuing would skip steps
            raise ValueError(
                f"checkpoint {self.source} was made with iterations={done}, ending inside epoch {ep}; this run has "
                f"iterations={self.iterations}, which would skip iterations {done}..{ep * spe - 1} "
                "(delete the checkpoint to start afresh)"
            )

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.check_training_state(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.done = int(state["iteration"])

    def _score(self, x: Tensor, y: Tensor) -> Tensor:
        self.model.eval()  # scores without dropout noise; BatchNorm uses running statistics
        out = per_example_loss(self.model, x, y)
        self.model.train()
        return out

    def train_epoch(self, epoch: int, clock: Clock) -> dict[str, float]:
        model, opt = self.model, self.optimizer
        first = (epoch - 1) * self.steps_per_epoch
        last = min(epoch * self.steps_per_epoch, self.iterations)
        losses, raws = [], []
        model.train()
        for it in range(first, last):
            if self.lr_at is not None:
                for group in opt.param_groups:
                    group["lr"] = self.lr_at(it)
            clock.start()
            batch = self.sampler.sample(score_fn=self._score)
            clock.stop("scoring")
            clock.start()
            x, y = batch.data[0], _as_labels(batch.data[1])
            if self.transform is not None:
                x = self.transform(x)
            logits = model(x)
            # each epoch's first step checks labels and weights (a label >= C would otherwise fail inside
            # a gather); the other steps skip the device sync
            loss = weighted_cross_entropy(logits, y, sample_weight=batch.weights, validate=it == first)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            per = F.cross_entropy(logits.detach(), y, reduction="none")
            clock.stop("training")
            clock.start()
            self.sampler.update(batch.indices, per)
            clock.stop("scoring")
            losses.append(loss.detach())
            raws.append(per.mean())
        self.done = last
        ls = torch.stack(losses).float()
        self._loss = float(ls.mean())
        t = clock.totals
        return {  # the keys of TRAINING_STATS
            "iteration": last,
            "train_loss": self._loss,
            "train_loss_std": float(ls.std()) if ls.numel() > 1 else 0.0,
            "train_loss_raw": float(torch.stack(raws).mean()),
            "time_scoring": t["scoring"],
            "time_training": t["training"],
            "time_total": t["scoring"] + t["training"],
        }

    def finite(self) -> Tensor:
        return torch.tensor([self._loss == self._loss and abs(self._loss) != float("inf")])

    def freeze(self, members: Tensor) -> None:  # never called: divergence raises
        raise AssertionError("train_sampled raises on divergence")

    def evaluate(self, epoch: int) -> dict[str, float]:
        if self.on_epoch is None:
            return {}
        self.model.eval()
        out = self.on_epoch(self.model, epoch)
        self.model.train()
        if not isinstance(out, Mapping):
            raise TypeError(f"on_epoch must return a dict {{metric: value}}, got {type(out).__name__}")
        clash = sorted(set(out) & (set(TRAINING_STATS) | {"epoch"}))
        if clash:
            raise ValueError(f"on_epoch returned {clash}, which train_sampled records itself; rename the metric")
        return out


def train_sampled(
    model: nn.Module,
    sampler: ImportanceSampler,
    optimizer: torch.optim.Optimizer,
    *,
    iterations: int,
    steps_per_epoch: int,
    on_epoch: Callable[[nn.Module, int], dict[str, float]] | None = None,
    lr_at: Callable[[int], float] | None = None,
    transform: Callable[[Tensor], Tensor] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> list[dict[str, float]]:
    """Train ``model`` for ``iterations`` sampled minibatches; one record per epoch of ``steps_per_epoch``.

    Args:
        model: maps ``x`` (the first item of a batch) to logits (B, C); runs in train mode for the
            steps and eval mode for scoring and ``on_epoch``.
        sampler: any :mod:`iwlab.sampling` sampler over a dataset of ``(x, y)`` items.
        optimizer: over ``model``'s parameters.
        iterations: total minibatches; the last epoch may be partial.
        steps_per_epoch: minibatches per recorded epoch (paper: 300 for MNIST/CIFAR, 2000 for PTB).
        on_epoch: ``fn(model, epoch) -> {metric: value}`` (e.g. test error), model in eval mode, untimed.
        lr_at: ``fn(iteration) -> lr`` set before each step (e.g. the CIFAR drop at 35k), or None.
        transform: applied to the training batch's ``x`` only (data augmentation), or None.
        checkpoint_path: resume from / save to this file at every epoch end, or None. The checkpoint
            records the settings of :func:`run_record`; resuming with other settings raises, as does
            a checkpoint past ``iterations`` or one whose own last epoch was cut short by a smaller
            ``iterations``. An unreadable file (truncated, empty) is moved aside to ``<name>.corrupt``
            with a logged warning and the run starts afresh
            (:func:`~iwlab.files.load_checkpoint`).
        progress: a tqdm bar (True), nothing (False), or ``fn(epoch, total_epochs)``.

    Returns:
        Records with ``epoch``, ``iteration``, ``train_loss`` (mean over the epoch's steps of the
        weighted minibatch loss that was minimized), ``train_loss_std`` (its std over those steps),
        ``train_loss_raw`` (mean unweighted loss of the drawn examples), cumulative ``time_scoring``,
        ``time_training`` and ``time_total`` in seconds, and whatever ``on_epoch`` returns.

    Raises:
        TypeError: ``iterations`` or ``steps_per_epoch`` is not an integer (bools and floats included).
        ValueError: ``iterations`` or ``steps_per_epoch`` < 1, a model without parameters, or a
            checkpoint that does not belong to this run (one line naming the differing field).
        FloatingPointError: the training loss stopped being finite.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from iwlab.sampling import make_sampler
        >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
        >>> model = torch.nn.Linear(2, 2)
        >>> err = lambda m, e: {"test_error": float((m(x).argmax(1) != y).float().mean())}
        >>> recs = train_sampled(model, make_sampler("uniform", TensorDataset(x, y), 16),
        ...                      torch.optim.Adam(model.parameters()), iterations=6, steps_per_epoch=3, on_epoch=err)
        >>> [r["iteration"] for r in recs], "test_error" in recs[-1]
        ([3, 6], True)
    """
    iterations = check_int(iterations, "iterations", minimum=1)
    steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", minimum=1)
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters to train")
    device = params[0].device
    epochs = -(-iterations // steps_per_epoch)
    job = _SampledJob(
        model, sampler, optimizer, iterations, steps_per_epoch, on_epoch, lr_at, transform, checkpoint_path
    )
    try:
        run = fit_loop(
            job,
            epochs=epochs,
            eval_epochs=range(1, epochs + 1),
            checkpoint_path=checkpoint_path,
            checkpoint_epochs="every",
            on_diverged="raise",
            record_training=True,
            keep_nan=True,
            progress=progress,
            device=device,
        )
    except FloatingPointError as err:
        raise FloatingPointError(f"training loss became {job._loss} ({err})") from None
    model.eval()
    records: dict[int, dict[str, float]] = {}
    for epoch, _, name, value in run.rows:
        records.setdefault(epoch, {"epoch": epoch})[name] = int(value) if name == "iteration" else value
    return [records[e] for e in sorted(records)]
