"""Losses that keep importance weights effective after interpolation, side by side in one harness (issue 15).

Run: ``iwlab run remedies`` (quick: separable 2-D data, about 3 minutes on 2 CPU cores), ``--profile cifar``
(CIFAR-10 cats vs dogs, the cifar experiments' reduced CNN), ``--profile cifar10_lt`` (long-tailed CIFAR-10,
imbalance 100, ResNet-32, the papers' recipe: a GPU job), ``--profile paper`` (both binary parts at the papers'
sizes), ``--profile ci``.

Byrd & Lipton (2019) find that class weights stop mattering once a deep net separates its training data.
Wang et al. (ICLR 2022) argue that this is the exponential tail of the loss: with a polynomially decaying
tail the weights keep acting. Every method of :mod:`iwlab.experiments.remedies_methods` trains in the same
ensemble (one member per method x weight x seed; :class:`~iwlab.train.EnsembleTrainer` with per-member
losses). Recorded at log-spaced epochs: ``frac_down_test`` (the fraction of test points predicted as the
down-weighted class 1), ``train_acc``, ``balanced_acc`` and ``weighted_acc`` (test accuracy under the target
distribution that ``w`` stands for, ``(acc_0 + w acc_1) / (1 + w)``). The spread of ``frac_down_test`` across
weights at the first and last epoch is Byrd & Lipton's measure of the weights' effect.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from iwlab.config import NONNEG, RATE, WEIGHT, Bound, check_config, count
from iwlab.data.synthetic import make_dataset, plane_grid, sigma_max_lr
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import CI_TWO_CLASS, TwoClassConfig, check_data, cnn_fn, two_class_data
from iwlab.experiments.remedies_lt import LT_PAPER, LTSettings, run_long_tailed
from iwlab.experiments.remedies_methods import (
    Method,
    binary_member,
    methods,
    posthoc_offset,
    subsample_weights,
)
from iwlab.experiments.remedies_summary import summary
from iwlab.experiments.synthetic import TEST_SEED_OFFSET  # the same test set as the synthetic experiment's
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer
from iwlab.train.schedule import log_epochs

NAME = "remedies"
DESCRIPTION = "Remedy losses vs importance weighting after interpolation (Wang et al. 2022; LDAM, LA, VS, focal, CB)"
Part = Literal["separable", "cifar_catdog", "cifar10_lt"]
PARTS: tuple[Part, ...] = typing.get_args(Part)
METHODS = tuple(methods(1.0, 2.0, 1.0, 1.0, 1.0, 0.2))


@dataclass
class Config(TwoClassConfig, LTSettings):
    """Remedies settings; defaults are the ``quick`` profile (the separable part).

    The CIFAR fields (``n_train_per_class``, ``size``, ``width``, ``dense``, ``epochs``, ``batch_size``, ``lr``,
    ...) are those of the cifar experiments (:class:`~iwlab.experiments.cifar_common.TwoClassConfig`) and set
    the ``cifar_catdog`` part; ``syn_*`` set the separable part, ``lt_*`` the long-tailed one.
    """

    parts: tuple[Part, ...] = ("separable",)
    methods: tuple[str, ...] = METHODS
    weights: tuple[float, ...] = (1.0, 1 / 16, 1 / 256)  # of class 1 (down-weighted)
    syn_model: Literal["linear", "mlp"] = "linear"  # logistic regression by full-batch GD, or B&L's MLP by SGD
    syn_n_per_class: int = 256
    syn_steps: int = 200_000  # full-batch GD steps of the linear model (steps_per_epoch per recorded epoch)
    syn_steps_per_epoch: int = 100
    syn_lr: float = 1.0  # the linear model's GD step on the mean loss
    syn_hidden: int = 64
    syn_epochs: int = 300  # the MLP's SGD epochs
    syn_batch_size: int = 16
    syn_lr_scale: float = 1.0  # the MLP's lr: x the paper's 1 / sigma_max(X)
    syn_grid: int = 60  # the plane grid of frac_down_grid: syn_grid x syn_grid points
    poly_alpha: float = 1.0  # the "linear" kind uses alpha + 1 (it needs alpha > 1)
    focal_gamma: float = 2.0
    ldam_margin: float = 1.0  # logit units: the binary models' logits are not normalized
    ldam_scale: float = 1.0
    tau: float = 1.0
    vs_gamma: float = 0.2
    cb_beta: float = 0.999

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "weights": WEIGHT,
        "syn_n_per_class": count(1_000_000, lo=2),
        "syn_steps": count(100_000_000),
        "syn_steps_per_epoch": count(1_000_000),
        "syn_lr": RATE,
        "syn_grid": count(1000, lo=2),
        "syn_hidden": count(65_536),
        "syn_epochs": count(10_000_000),
        "syn_batch_size": count(1_000_000),
        "syn_lr_scale": RATE,
        "poly_alpha": RATE,
        "focal_gamma": NONNEG,
        "ldam_margin": NONNEG,
        "ldam_scale": RATE,
        "tau": NONNEG,
        "vs_gamma": NONNEG,
        "cb_beta": Bound(0.0, 1.0, hi_open=True),
    }

    def validate(self) -> None:
        """Check the ranges, the part and method names, and the weights.

        Raises:
            ValueError: an unknown part or method, a weight outside (0, 1] or repeated, or a bad CIFAR setting.
        """
        check_config(self)
        TwoClassConfig.validate(self)
        LTSettings.validate(self)
        for key, valid in (("parts", PARTS), ("methods", METHODS)):
            for v in getattr(self, key):
                if v not in valid:
                    raise ValueError(f"{key}: unknown {v!r}; valid: {', '.join(valid)}")
        if any(not 0 < w <= 1 for w in self.weights):
            raise ValueError(f"weights are those of the down-weighted class 1, in (0, 1]; got {self.weights}")
        if self.syn_steps % self.syn_steps_per_epoch:
            raise ValueError(
                f"syn_steps={self.syn_steps} is not a multiple of syn_steps_per_epoch={self.syn_steps_per_epoch}"
            )

    def eval_epochs_for(self, epochs: int) -> list[int]:
        """The evaluation epochs of a part that trains ``epochs`` epochs (log-spaced, or every ``eval_every``).

        Example:
            >>> Config().eval_epochs_for(30)
            [1, 2, 3, 5, 10, 20, 30]
        """
        if self.eval_every:
            return sorted({*range(self.eval_every, epochs + 1, self.eval_every), epochs})
        return log_epochs(epochs)

    def method_table(self) -> dict[str, Method]:
        """The methods with this config's hyperparameters."""
        table = methods(self.poly_alpha, self.focal_gamma, self.ldam_margin, self.ldam_scale, self.tau, self.vs_gamma)
        return {k: table[k] for k in self.methods}


PROFILES: dict[str, dict] = {
    "quick": {},
    "cifar": {"parts": ("cifar_catdog",), "epochs": 100, "seeds": 1, "n_test_per_class": 500},
    # the binary parts at the papers' sizes: B&L's 512 points per class and 10,000 epochs; CIFAR at full size
    "paper": {
        "parts": ("separable", "cifar_catdog"),
        "syn_n_per_class": 512,
        "syn_steps": 2_000_000,
        "syn_steps_per_epoch": 1000,
        "weights": (1.0, 0.25, 1 / 16, 1 / 64, 1 / 256),
        "seeds": 3,
        "n_train_per_class": 0,
        "n_test_per_class": 0,
        "size": 32,
        "width": 1.0,
        "dense": (512, 128),
        "epochs": 1000,
    },
    "cifar10_lt": {"parts": ("cifar10_lt",), **LT_PAPER},
    "ci": {
        **CI_TWO_CLASS,
        "parts": ("separable", "cifar_catdog"),
        "syn_n_per_class": 32,
        "syn_steps": 2000,
        "weights": (1.0, 1 / 16),
        "seeds": 1,
    },
}


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell per part.

    Example:
        >>> [c for c, _ in cells(Config(parts=("separable", "cifar_catdog")))]
        ['separable', 'cifar_catdog']
    """
    return [(p, {"part": p}) for p in cfg.parts]


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one part's ensemble: every method x weight x seed.

    Example::

        run_cell(Config(syn_epochs=3), "separable", {"part": "separable"}, CellContext(Path("runs/x"), "separable"))
    """
    part = params["part"]
    if part == "cifar10_lt":
        return run_long_tailed(cfg, cfg.method_table(), ctx)
    grid = None
    if part == "separable":
        X, y = make_dataset("separable", cfg.syn_n_per_class, seed=cfg.data_seed)
        Xt, yt = make_dataset("separable", 1024, seed=cfg.data_seed + TEST_SEED_OFFSET)
        grid = plane_grid(X, cfg.syn_grid)[0]  # (G*G, 2): B&L's fraction of the plane
        hidden = () if cfg.syn_model == "linear" else (cfg.syn_hidden,)

        def model_fn(g: torch.Generator) -> torch.nn.Module:
            return MLP(2, hidden, 1, generator=g)

        backend = "stacked"
        if cfg.syn_model == "linear":  # Wang et al.'s setting: a linear model, gradient descent to interpolation
            lr, epochs, batch = cfg.syn_lr, cfg.syn_steps // cfg.syn_steps_per_epoch, None
        else:  # Byrd & Lipton's: the 64-unit MLP, minibatch SGD with lr 1 / sigma_max(X)
            lr, epochs, batch = sigma_max_lr(X) * cfg.syn_lr_scale, cfg.syn_epochs, cfg.syn_batch_size
    else:
        check_data(cfg)
        task = two_class_data(cfg)
        X, y, Xt, yt = task.x_train, task.y_train, task.x_test, task.y_test
        lr, epochs, batch, model_fn, backend = cfg.lr, cfg.epochs, cfg.batch_size, cnn_fn(cfg), "func"
    n = int((y == 0).sum())
    table = cfg.method_table()
    members, sample_w, offsets = [], [], []
    for name, m in table.items():
        for w in cfg.weights:
            for k in range(cfg.seeds):
                seed = cfg.seed + k
                members.append(binary_member(name, m, w, seed, lr, n, epochs, cfg.cb_beta, {"part": part, "lr": lr}))
                keep = subsample_weights(y, w, seed) if m.weighting == "subsample" else torch.ones(len(y))
                sample_w.append(keep)
                offsets.append(posthoc_offset(m, w, cfg.tau))
    full = {"steps_per_epoch": cfg.syn_steps_per_epoch} if batch is None else {}
    trainer = EnsembleTrainer(
        model_fn, members, batch_size=batch, normalization=cfg.normalization, device=ctx.device, backend=backend, **full
    )
    W = torch.stack(sample_w)  # (M, N) 0/1: the sub-sampled members' dropped examples have weight 0
    off = torch.tensor(offsets).to(ctx.device)  # (M,) post-hoc logit shifts
    ws = torch.tensor([float(mb.labels["weight"]) for mb in members]).to(ctx.device)  # (M,)
    Xd, yd, Xtd, ytd, Wd = (t.to(ctx.device) for t in (X, y, Xt, yt, W))
    grid_d = grid.to(ctx.device) if grid is not None else None

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        # the post-hoc members are judged by the shifted classifier everywhere, training accuracy included
        z_train = tr.logits(Xd).squeeze(-1) + off[:, None]
        out = binary_metrics(tr.logits(Xtd).squeeze(-1) + off[:, None], ytd, z_train, yd, Wd, ws)
        if grid_d is not None:  # the fraction of the plane predicted as class 1: where the boundary lies
            out["frac_down_grid"] = ((tr.logits(grid_d).squeeze(-1) + off[:, None]) > 0).double().mean(1)
        return out

    trainer.fit(
        X,
        y,
        epochs=epochs,
        sample_weight=W,
        eval_epochs=cfg.eval_epochs_for(epochs),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    return CellResult([m.labels for m in members], trainer.history.rows, trainer.diverged_at.tolist())


def binary_metrics(
    z_test: Tensor, y_test: Tensor, z_train: Tensor, y_train: Tensor, keep: Tensor, w: Tensor
) -> dict[str, Tensor]:
    """Per member ``(M,)``: the fraction of test points predicted as class 1, training accuracy on the kept
    examples, balanced and ``w``-weighted test accuracy.

    Args:
        z_test: ``(M, Nt)`` test logits (post-hoc shifts applied); ``y_test`` ``(Nt,)`` labels.
        z_train: ``(M, N)`` training logits; ``y_train`` ``(N,)``; ``keep`` ``(M, N)`` 1 where an example is
            trained on (0: sub-sampled away).
        w: ``(M,)`` each member's weight of class 1.

    Example:
        >>> out = binary_metrics(torch.tensor([[1.0, -1.0]]), torch.tensor([1, 0]), torch.tensor([[2.0]]),
        ...                      torch.tensor([1]), torch.ones(1, 1), torch.tensor([0.5]))
        >>> [round(float(out[k][0]), 3) for k in ("frac_down_test", "balanced_acc", "weighted_acc")]
        [0.5, 1.0, 1.0]
    """
    pred = (z_test > 0).long()  # (M, Nt)
    right = (pred == y_test).double()
    acc = [(right * (y_test == c)).sum(1) / (y_test == c).sum().clamp_min(1) for c in (0, 1)]  # (M,) each
    train_right = (((z_train > 0).long() == y_train).double() * keep).sum(1) / keep.sum(1)
    return {
        "frac_down_test": pred.double().mean(1),
        "train_acc": train_right,
        "balanced_acc": (acc[0] + acc[1]) / 2,
        "weighted_acc": (acc[0] + w.double() * acc[1]) / (1 + w.double()),
    }


EXPERIMENT = Experiment(NAME, DESCRIPTION, Config, PROFILES, cells, run_cell, summary, pack_keys=())
