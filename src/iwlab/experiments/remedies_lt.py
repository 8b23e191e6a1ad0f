"""The long-tailed part of :mod:`iwlab.experiments.remedies`: CIFAR-10-LT, ResNet-32, the papers' recipe.

CIFAR-10-LT with imbalance ratio 100 (exponential profile, 12,406 training images; Cao et al. 2019) and the
training recipe of the LDAM-DRW code that Menon et al. (2021) and Kini et al. (2021) reuse: ResNet-32, SGD with
momentum 0.9, lr 0.1, batch 128, weight decay 2e-4, 200 epochs, linear warm-up over 5 epochs, lr x0.01 at
epochs 160 and 180, random crops (4-pixel shifts) and flips; DRW switches to class-balanced weights (beta
0.9999) at epoch 160. LDAM members use the cosine head (``NormedLinear``, scale 30, max margin 0.5), so they
train in a second ensemble next to the plain-head one; both are one cell.

Methods (multiclass):

* ``ce``; ``ce_iw`` (class weights proportional to 1/n_c, mean 1);
* ``focal_iw``: focal loss, unweighted with gamma ``lt_focal_gamma`` = 1, as the papers' Focal rows;
* ``cb`` (class-balanced weights, beta 0.9999); ``ldam``; ``ldam_drw``;
* ``la`` (logit-adjusted loss) and ``la_posthoc`` (cross-entropy, logits - tau log pi at prediction); ``vs``;
* ``poly_*_iw``: the polynomially tailed losses with the ``ce_iw`` weights;
* ``subsample`` is not defined here (it is the balanced-subset baseline of the binary parts) and is skipped.

The loss is normalized by the batch's weight sum, as the recipe's ``F.cross_entropy(weight=...)``. With the
default ``lt_epochs`` (a CPU-sized 2) LDAM-DRW never reaches its switch at epoch 161: it is plain LDAM there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from iwlab.config import NONNEG, RATE, Bound, count
from iwlab.data.cifar10_lt import long_tailed_task
from iwlab.experiments.base import CellContext, CellResult
from iwlab.experiments.cifar_common import check_data, load_arrays
from iwlab.experiments.remedies_methods import Method
from iwlab.functional.losses_remedies import logit_adjust
from iwlab.functional.weighting import class_balanced_weights
from iwlab.models import ResNet32
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.augment import flip_shift_transform
from iwlab.train.optim import step_warmup_schedule
from iwlab.train.schedule import log_epochs

# the papers' recipe (Cao et al. 2019, code kaidic/LDAM-DRW cifar_train.py; see experiments/README.md)
LT_PAPER: dict[str, Any] = {
    "lt_epochs": 200,
    "lt_batch_size": 128,
    "lt_n_test_per_class": 0,
    "lt_blocks": 5,
    "lt_width": 16,
    "seeds": 1,
}


@dataclass
class LTSettings:
    """The long-tailed part's settings (``lt_*``); the defaults are a CPU-sized reduction of :data:`LT_PAPER`."""

    lt_imbalance: float = 100.0
    lt_epochs: int = 2
    lt_batch_size: int = 128
    lt_lr: float = 0.1
    lt_momentum: float = 0.9
    lt_weight_decay: float = 2e-4
    lt_warmup: int = 5
    lt_milestones: tuple[int, ...] = (160, 180)
    lt_drw_epoch: int = 161  # 1-based: the LDAM-DRW code's 0-based epoch 160
    lt_n_test_per_class: int = 100  # 0: the whole test set (1000 per class)
    lt_blocks: int = 5  # ResNet-32: 5 basic blocks per stage
    lt_width: int = 16
    lt_augment: bool = True
    lt_max_margin: float = 0.5
    lt_scale: float = 30.0
    lt_focal_gamma: float = 1.0  # Cui et al.'s best focal setting on CIFAR-10-LT

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "lt_imbalance": Bound(1.0, 10_000.0),
        "lt_epochs": count(100_000),
        "lt_batch_size": count(100_000),
        "lt_lr": RATE,
        "lt_momentum": Bound(0.0, 1.0, hi_open=True),
        "lt_weight_decay": NONNEG,
        "lt_warmup": count(100_000, lo=0),
        "lt_milestones": count(100_000),
        "lt_drw_epoch": count(100_000),
        "lt_n_test_per_class": count(1000, lo=0),
        "lt_blocks": count(100),
        "lt_width": count(1024),
        "lt_max_margin": NONNEG,
        "lt_scale": RATE,
        "lt_focal_gamma": NONNEG,
    }

    def validate(self) -> None:
        """Milestones must increase.

        Raises:
            ValueError: ``lt_milestones`` not strictly increasing.
        """
        if list(self.lt_milestones) != sorted(set(self.lt_milestones)):
            raise ValueError(f"lt_milestones must increase strictly, got {self.lt_milestones}")
        if self.lt_milestones and self.lt_milestones[0] <= self.lt_warmup:
            raise ValueError(f"lt_milestones {self.lt_milestones} must come after lt_warmup={self.lt_warmup}")


def lt_member(name: str, m: Method, counts: list[int], cfg: Any, seed: int) -> Member | None:
    """The member of method ``m`` on the long-tailed data with class ``counts``; None when it does not apply."""
    n = torch.tensor(counts, dtype=torch.float64)
    inverse = (n.mean() / n).tolist()  # 1/n_c scaled to mean 1: importance weights to the balanced test set
    cb = class_balanced_weights(counts, beta=0.9999).tolist()
    kwargs = dict(m.kwargs)
    class_weight = None
    if m.weighting == "subsample":
        return None
    if m.weighting == "iw" and m.loss != "focal":  # the papers' focal rows are unweighted (gamma 1)
        class_weight = tuple(inverse)
    elif m.weighting == "cb":
        class_weight = tuple(cb)
    elif m.weighting == "counts":
        kwargs["class_counts"] = counts
    if m.loss == "ldam":
        kwargs.update(max_margin=cfg.lt_max_margin, scale=cfg.lt_scale)
    if m.loss == "focal":
        kwargs["gamma"] = cfg.lt_focal_gamma
    return Member(
        seed=seed,
        class_weight=class_weight,
        lr=cfg.lt_lr,
        weight_decay=cfg.lt_weight_decay,
        loss=m.loss,
        loss_kwargs=kwargs,
        deferred_class_weight=(cfg.lt_drw_epoch, tuple(cb)) if m.drw else None,
        labels={"part": "cifar10_lt", "method": name, "seed": seed, "weight": 1.0},
    )


def run_long_tailed(cfg: Any, table: dict[str, Method], ctx: CellContext) -> CellResult:
    """Train the plain-head and the cosine-head (LDAM) ensembles on CIFAR-10-LT; top-1 test accuracy per member."""
    check_data(cfg)
    per_class = cfg.lt_n_test_per_class or None  # 0: the whole test set
    arrays = load_arrays(cfg)
    task = long_tailed_task(arrays, imbalance=cfg.lt_imbalance, seed=cfg.data_seed, n_test_per_class=per_class)
    counts = [int(c) for c in task.class_counts]
    x, y = task.x_train, task.y_train
    xt, yt = task.x_test, task.y_test
    labels, rows, diverged = [], [], []
    for normed in (False, True):
        chosen = {k: m for k, m in table.items() if (m.loss == "ldam") == normed}
        members = [lt_member(k, m, counts, cfg, cfg.seed + s) for k, m in chosen.items() for s in range(cfg.seeds)]
        members = [m for m in members if m is not None]
        if not members:
            continue
        result = _train(cfg, members, normed, counts, (x, y, xt, yt), ctx, f"{'normed' if normed else 'plain'}")
        offset = len(labels)
        labels += [m.labels | {"head": "cosine" if normed else "linear"} for m in members]
        rows += [(e, i + offset, k, v) for e, i, k, v in result.rows]
        diverged += result.diverged
    return CellResult(labels, rows, diverged)


def _train(
    cfg: Any, members: list[Member], normed: bool, counts: list[int], data: tuple, ctx: CellContext, tag: str
) -> CellResult:
    x, y, xt, yt = data
    C = len(counts)

    def model_fn(g: torch.Generator) -> torch.nn.Module:
        return ResNet32(C, normed_head=normed, blocks=cfg.lt_blocks, width=cfg.lt_width, generator=g)

    trainer = EnsembleTrainer(
        model_fn,
        members,
        batch_size=cfg.lt_batch_size,
        momentum=cfg.lt_momentum,
        # the recipe's F.cross_entropy(weight=...) divides by the batch's weight sum
        normalization="weight_sum",
        device=ctx.device,
        backend="func",
        lr_schedule=step_warmup_schedule(cfg.lt_warmup, tuple(cfg.lt_milestones), 0.01),
        transform=flip_shift_transform(4) if cfg.lt_augment else None,
    )
    posthoc = torch.tensor([m.labels["method"] == "la_posthoc" for m in members], device=ctx.device)
    xt_d, yt_d = xt.to(ctx.device), yt.to(ctx.device)

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        z = tr.logits(xt_d)  # (M, Nt, C)
        # Menon et al.'s post-hoc correction with tau = 1: logits - log pi
        z = torch.where(posthoc[:, None, None], logit_adjust(z, counts, 1.0), z)
        right = (z.argmax(-1) == yt_d).double()  # (M, Nt)
        out = {"top1": right.mean(1)}
        per_class = torch.stack([right[:, yt_d == c].mean(1) for c in range(C)], 1)  # (M, C)
        out["many_shot"] = per_class[:, [c for c in range(C) if counts[c] > 100]].mean(1)
        out["few_shot"] = per_class[:, [c for c in range(C) if counts[c] < 20 * 5]].mean(1)
        return out

    path = ctx.checkpoint_path.with_name(f"{ctx.checkpoint_path.stem}_{tag}.pt")
    trainer.fit(
        x,
        y,
        epochs=cfg.lt_epochs,
        eval_epochs=log_epochs(cfg.lt_epochs),
        callbacks=[metrics],
        checkpoint_path=path,
        progress=ctx.progress,
    )
    return CellResult([m.labels for m in members], trainer.history.rows, trainer.diverged_at.tolist())
