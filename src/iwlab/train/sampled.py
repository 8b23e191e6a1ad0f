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

The run checkpoints at every epoch end (model, optimizer, sampler, RNG, records, clocks) and resumes
from the last finished epoch.

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

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iwlab.functional.losses import weighted_cross_entropy
from iwlab.sampling.samplers import ImportanceSampler
from iwlab.train.checkpoint import atomic_save

__all__ = ["per_example_loss", "train_sampled"]


def per_example_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 4096) -> Tensor:
    """Unweighted cross-entropy of every example (N,), in chunks, without gradients (mode unchanged).

    Example:
        >>> per_example_loss(torch.nn.Linear(2, 3), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)).shape
        torch.Size([4])
    """
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            out.append(F.cross_entropy(model(x[s : s + chunk]), y[s : s + chunk], reduction="none"))
    return torch.cat(out) if out else torch.zeros(0)


class _Clock:
    """Accumulates seconds per phase; synchronizes CUDA so async kernels count where launched."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.totals = {"scoring": 0.0, "training": 0.0}
        self._t = 0.0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def stop(self, phase: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.totals[phase] += time.perf_counter() - self._t


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
        checkpoint_path: resume from / save to this file at every epoch end, or None.
        progress: a tqdm bar (True), nothing (False), or ``fn(epoch, total_epochs)``.

    Returns:
        Records with ``epoch``, ``iteration``, ``train_loss`` (mean over the epoch's steps of the
        weighted minibatch loss that was minimized), ``train_loss_std`` (its std over those steps),
        ``train_loss_raw`` (mean unweighted loss of the drawn examples), cumulative ``time_scoring``,
        ``time_training`` and ``time_total`` in seconds, and whatever ``on_epoch`` returns.

    Example:
        >>> # recs = train_sampled(model, sampler, torch.optim.Adam(model.parameters()), iterations=6000,
        >>> #                      steps_per_epoch=300, on_epoch=lambda m, e: {"test_error": err(m)})
    """
    if iterations < 1 or steps_per_epoch < 1:
        raise ValueError(f"iterations and steps_per_epoch must be >= 1, got {iterations}, {steps_per_epoch}")
    device = next(model.parameters()).device
    clock = _Clock(device)
    epochs = math.ceil(iterations / steps_per_epoch)
    records: list[dict[str, float]] = []
    start_epoch = 1
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda_rng"])
        records = state["records"]
        clock.totals = dict(state["times"])
        start_epoch = int(state["epoch"]) + 1

    def score_fn(x: Tensor, y: Tensor) -> Tensor:
        model.eval()  # scores without dropout noise; BatchNorm uses running statistics
        out = per_example_loss(model, x, y)
        model.train()
        return out

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start_epoch - 1, desc="epochs", leave=False)
    model.train()
    for epoch in range(start_epoch, epochs + 1):
        first = (epoch - 1) * steps_per_epoch
        last = min(epoch * steps_per_epoch, iterations)
        losses, raws = [], []
        for it in range(first, last):
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(it)
            clock.start()
            batch = sampler.sample(score_fn=score_fn)
            clock.stop("scoring")
            clock.start()
            x, y = batch.data[0], batch.data[1]
            if transform is not None:
                x = transform(x)
            logits = model(x)
            loss = weighted_cross_entropy(logits, y, sample_weight=batch.weights, validate=False)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            per = F.cross_entropy(logits.detach(), y, reduction="none")
            clock.stop("training")
            clock.start()
            sampler.update(batch.indices, per)
            clock.stop("scoring")
            losses.append(loss.detach())
            raws.append(per.mean())
        ls = torch.stack(losses).float()
        rec: dict[str, float] = {
            "epoch": epoch,
            "iteration": last,
            "train_loss": float(ls.mean()),
            "train_loss_std": float(ls.std()) if ls.numel() > 1 else 0.0,
            "train_loss_raw": float(torch.stack(raws).mean()),
            "time_scoring": clock.totals["scoring"],
            "time_training": clock.totals["training"],
            "time_total": clock.totals["scoring"] + clock.totals["training"],
        }
        if not math.isfinite(rec["train_loss"]):
            raise FloatingPointError(f"training loss became {rec['train_loss']} in epoch {epoch}")
        if on_epoch is not None:
            model.eval()
            rec.update(on_epoch(model, epoch))
            model.train()
        records.append(rec)
        if ckpt is not None:
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "sampler": sampler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    "records": records,
                    "times": clock.totals,
                    "epoch": epoch,
                },
                ckpt,
            )
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(epoch, epochs)
    if bar is not None:
        bar.close()
    model.eval()
    return records
