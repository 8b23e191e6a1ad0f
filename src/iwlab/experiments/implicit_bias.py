"""Why the weights fade, measured: Xu, Ye & Ruan's (2021) implicit-bias predictions P1-P7, and learned weights.

Run: ``iwlab run implicit_bias`` (quick, about a minute on 2 CPU cores), ``--profile paper`` (2e6 steps, more
weightings), ``--profile ci``.

Every part is full-batch gradient descent through :class:`~iwlab.train.EnsembleTrainer` (``batch_size=None``),
one member per weighting, in float64. The predictions and their tags are those of
``../shared/papers/xu-ye-ruan-2021-notes.md`` (Sec. 6): the paper itself could not be read beyond its
abstract, so P1-P7 are the notes' reconstruction from Soudry et al. (2018) and Lyu & Li (2020).

Cells (``parts``):

* ``linear``: the bias-free linear model on :func:`~iwlab.data.support_vectors.make_two_support_vectors`
  (40 majority, 8 minority points, two support vectors), exponential and logistic loss; weightings uniform,
  minority x10, majority x10, log-normal (P1-P3, P6), weights proportional to the SVM's dual coefficients
  and uniform x0.1 (P4), random weights on the non-support points only (P5).
* ``byrd_lipton``: Byrd & Lipton's separable data with the bias as a constant feature (P1, P3 off the
  default data).
* ``relu``: a bias-free two-layer ReLU network (2-homogeneous) with uniform, minority x10 and majority x10
  weights over seeds (P6: normalized and smoothed margins).
* ``l2``: uniform vs minority x10 under L2 (weight decay) of strengths ``l2`` (P7).
* ``learned``: weights learned with the model (notes Sec. 4): focal loss, class-balanced weights,
  learning-to-reweight meta-weights, and weights that decay exponentially in the margin at a class-dependent
  rate (the one kind predicted to move the limit).

Relative weightings are normalized to mean 1 over the training set (a common factor is a change of learning
rate, P4), so every member trains stably at the same ``lr``. The loss is the trainer's mean ``(1/n) sum_i w_i
l_i``: gradient descent with step ``lr`` on it is step ``lr / n`` on the notes' sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from iwlab.config import NONNEG, RATE, SEED, Bound, check_config, count
from iwlab.data.support_vectors import make_two_support_vectors
from iwlab.data.synthetic import make_separable
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.implicit_bias_parts import eval_epochs, learned_reweight, member_labels, normalized, run_relu
from iwlab.experiments.implicit_bias_summary import summary
from iwlab.functional.weighting import class_balanced_weights
from iwlab.implicit_bias import (
    hard_margin_svm,
    offset,
    predicted_direction_error,
    regularized_minimizer,
)
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member

NAME = "implicit_bias"
DESCRIPTION = "Xu, Ye & Ruan 2021: implicit bias of weighted GD, predictions P1-P7 and learned weights"
PARTS = ("linear", "byrd_lipton", "relu", "l2", "learned")
P4_P5_WEIGHTINGS = ("alpha", "uniform_x0.1", "non_support_random")  # exponential loss, default data only
LIMIT_L2 = 1e-8  # P7: the weight decay standing in for lambda -> 0 in the exact minimizers


@dataclass
class Config:
    """Implicit-bias experiment settings; defaults are the ``quick`` profile.

    ``steps`` full-batch GD steps (evaluated at ``t = steps_per_epoch * {1, 2, 5} * 10**k``); ``lr`` the step on
    the mean loss. ``l2`` the weight-decay strengths of P7 (the coupled decay: gradient += ``l2 * theta``).
    """

    parts: tuple[str, ...] = PARTS
    steps: int = 200_000
    steps_per_epoch: int = 100
    lr: float = 0.5
    n_majority: int = 40
    n_minority: int = 8
    min_margin: float = 2.5
    data_seed: int = 0
    bl_n_per_class: int = 32
    relu_hidden: int = 16
    relu_steps: int = 100_000
    seeds: int = 3
    seed: int = 0
    l2: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    extra_ratios: tuple[float, ...] = ()  # more class-weight ratios besides 10 for P1-P3
    focal_gamma: float = 2.0
    cb_beta: float = 0.99
    decay_rate: float = 1.0
    n_val_per_class: int = 8

    ALLOW_EMPTY: ClassVar[tuple[str, ...]] = ("extra_ratios",)
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "steps": count(100_000_000, lo=100),
        "steps_per_epoch": count(1_000_000),
        "lr": RATE,
        "n_majority": count(100_000, lo=2),
        "n_minority": count(100_000, lo=2),
        "min_margin": Bound(1.0, 5.0, lo_open=True),  # beyond 5 the Gaussian clusters rarely reach it
        "data_seed": SEED,
        "bl_n_per_class": count(100_000, lo=2),
        "relu_hidden": count(4096),
        "relu_steps": count(100_000_000, lo=100),
        "seeds": count(100),
        "seed": SEED,
        "l2": RATE,
        "extra_ratios": RATE,
        "focal_gamma": NONNEG,
        "cb_beta": NONNEG,
        "decay_rate": RATE,
        "n_val_per_class": count(10_000),
    }

    def validate(self) -> None:
        """Check the ranges, the part names, and that the steps are whole epochs.

        Raises:
            ValueError: a value out of range (``min_margin`` in (1, 5]), an unknown part, ``cb_beta >= 1``, or
                ``steps`` / ``relu_steps`` not a multiple of ``steps_per_epoch``.
        """
        check_config(self)
        for p in self.parts:
            if p not in PARTS:
                raise ValueError(f"parts: unknown {p!r}; valid: {', '.join(PARTS)}")
        for key in ("parts", "l2", "extra_ratios"):
            if len(set(getattr(self, key))) != len(getattr(self, key)):
                raise ValueError(f"{key} must not repeat a value")
        names = [f"{r:g}" for r in (10.0, *self.extra_ratios)]  # the weightings are named minority_x{r:g}
        if len(set(names)) != len(names):
            raise ValueError(f"extra_ratios: {self.extra_ratios} name a weighting twice (10 is always run; as {names})")
        if self.cb_beta >= 1:
            raise ValueError(f"cb_beta must be in [0, 1), got {self.cb_beta}")
        for key in ("steps", "relu_steps"):
            if getattr(self, key) % self.steps_per_epoch:
                raise ValueError(
                    f"{key}={getattr(self, key)} is not a multiple of steps_per_epoch={self.steps_per_epoch}"
                )


PROFILES: dict[str, dict] = {
    "quick": {},
    # the notes' horizon (2e6 steps), the full B&L data size of 512 per class, more seeds and weight decays
    "paper": {
        "steps": 2_000_000,
        "steps_per_epoch": 1000,
        "relu_steps": 1_000_000,
        "bl_n_per_class": 512,
        "seeds": 5,
        "extra_ratios": (100.0,),
        "l2": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5),
    },
    "ci": {"steps": 50_000, "relu_steps": 10_000, "bl_n_per_class": 8, "seeds": 2, "l2": (1e-1, 1e-3)},
}


def cells(cfg: Config) -> list[tuple[str, dict]]:
    """One cell per part, each one ensemble.

    Example:
        >>> [c for c, _ in cells(Config(parts=("linear", "relu")))]
        ['linear', 'relu']
    """
    return [(p, {"part": p}) for p in cfg.parts]


def linear_weightings(
    y: Tensor, svm_alpha: Tensor, support: Tensor, seed: int, extra_ratios: tuple[float, ...] = ()
) -> dict[str, Tensor]:
    """The fixed weightings ``{name: (N,) float64}`` of the linear parts (see the module docstring).

    ``extra_ratios`` adds ``minority_x{r}`` and ``majority_x{r}`` for each ratio ``r`` besides 10.
    """
    n = y.shape[0]
    g = torch.Generator().manual_seed(seed)
    minority = y == 1
    out = {"uniform": torch.ones(n, dtype=torch.float64)}
    for r in (10.0, *extra_ratios):
        out[f"minority_x{r:g}"] = normalized(torch.where(minority, r, 1.0).double())
        out[f"majority_x{r:g}"] = normalized(torch.where(minority, 1.0, r).double())
    out["lognormal"] = normalized(torch.exp(torch.randn(n, generator=g, dtype=torch.float64)))
    if support.sum() > 0 and svm_alpha is not None:
        alpha_w = torch.where(support, svm_alpha / svm_alpha[support].mean(), 1.0)  # weights proportional to alpha
        out["alpha"] = alpha_w
        out["uniform_x0.1"] = torch.full((n,), 0.1, dtype=torch.float64)
        r = torch.exp(torch.randn(n, generator=g, dtype=torch.float64))
        out["non_support_random"] = torch.where(support, 1.0, r / r.max())  # in (0, 1]: support vectors keep 1
    # rounded to float32 here, once: the trainer keeps example weights in float32, and the offsets are then
    # computed from exactly the weights the members train with
    return {k: v.float().double() for k, v in out.items()}


def _linear_data(cfg: Config, part: str) -> tuple[Tensor, Tensor]:
    if part == "byrd_lipton":  # the bias as a constant feature: a bias-free model on (x, 1)
        X, y = make_separable(cfg.bl_n_per_class, seed=cfg.data_seed)
        return torch.cat([X.double(), torch.ones(X.shape[0], 1, dtype=torch.float64)], 1), y
    return make_two_support_vectors(cfg.n_majority, cfg.n_minority, cfg.data_seed, cfg.min_margin)


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one part's ensemble by full-batch GD and record its diagnostics at every evaluation epoch.

    Example::

        run_cell(Config(steps=1000), "linear", {"part": "linear"}, CellContext(Path("runs/x"), "linear"))
    """
    part = params["part"]
    if part == "relu":
        return run_relu(cfg, ctx)
    X, y = _linear_data(cfg, part) if part != "learned" else _linear_data(cfg, "linear")
    n, d = X.shape
    svm = hard_margin_svm(X, y, bias="none")
    theta_hat = svm.w  # (d,)
    weightings = linear_weightings(y, svm.alpha, svm.support, cfg.seed, cfg.extra_ratios)
    lr = cfg.lr
    members: list[Member] = []
    rhos: list[Tensor | None] = []  # each member's predicted offset (None: no fixed-weight prediction)
    sample_w: list[Tensor] = []
    targets: list[Tensor] = []  # each member's predicted theta_hat (its SVM): theta(t) ~ theta_hat log t + rho
    rate = torch.zeros(2, dtype=torch.float64)  # the learned part's class-dependent decay rates
    optimum: dict[int, dict[str, float]] = {}  # l2 part: the exact regularized minimizer, per member
    if part in ("linear", "byrd_lipton"):
        fixed = [w for w in weightings if w not in P4_P5_WEIGHTINGS]  # P1-P3 and P6's weightings
        for loss in ("exponential", "ce"):
            for name in list(weightings) if part == "linear" and loss == "exponential" else fixed:
                members.append(Member(seed=cfg.seed, lr=lr, loss=loss, labels=member_labels(cfg, part, loss, name)))
                sample_w.append(weightings[name])
                # the trainer's mean loss is the notes' sum with weights w / n: lr w_i / n is their eta w_i
                rhos.append(offset(X, y, weightings[name] / n, lr, bias="none", svm=svm).rho)
                targets.append(theta_hat)
    elif part == "l2":
        for lam in cfg.l2:
            for name in ("uniform", "minority_x10"):
                labels = member_labels(cfg, part, "ce", name, weight_decay=lam)
                members.append(Member(seed=cfg.seed, lr=lr, weight_decay=lam, labels=labels))
                sample_w.append(weightings[name])
                # P7's prediction from an independent solver: the minimizer GD with weight decay converges to,
                # and (for the lambda -> 0 trend) the one at LIMIT_L2
                opt = regularized_minimizer(X, y, weightings[name], lam)
                lim = regularized_minimizer(X, y, weightings[name], LIMIT_L2)
                u_hat = theta_hat / theta_hat.norm()
                optimum[len(members) - 1] = {
                    **{f"opt_u{k}": float(v) for k, v in enumerate(opt / opt.norm())},
                    "opt_dir_err": float((opt / opt.norm() - u_hat).norm()),
                    "limit_dir_err": float((lim / lim.norm() - u_hat).norm()),
                }
                rhos.append(None)
                targets.append(theta_hat)
    else:  # learned weights: where the learned weights reduce to fixed ones on rescaled points, so does the prediction
        counts = torch.bincount(y, minlength=2)
        cb = normalized(class_balanced_weights(counts, beta=cfg.cb_beta)[y]).float().double()  # (N,), float32 values
        rate[1] = cfg.decay_rate  # class-dependent decay in the margin: the minority's weights decay
        gamma = cfg.focal_gamma
        # focal: -l'(u) ~ (1 + gamma) exp(-(1 + gamma) u), i.e. the exponential loss on the points (1 + gamma) x_i;
        # margin decay: w_i exp(-rate_i u_i) exp(-u_i) is the exponential loss on (1 + rate_i) x_i, weights
        # w_i / (1 + rate_i). Both are then fixed-weight problems with their own SVM and offset.
        scaled = {"focal": (1.0 + gamma) * torch.ones(n, dtype=torch.float64), "margin_decay": 1.0 + rate[y]}
        specs = [
            ("uniform", "exponential", {}, weightings["uniform"]),
            ("focal", "focal", {"gamma": gamma}, weightings["uniform"]),
            ("class_balanced", "ce", {}, cb),
            ("meta_reweight", "ce", {}, weightings["uniform"]),
            ("margin_decay", "exponential", {}, weightings["uniform"]),
        ]
        for name, loss, kw, w in specs:
            labels = member_labels(cfg, part, loss, name)
            members.append(Member(seed=cfg.seed, lr=lr, loss=loss, loss_kwargs=kw, labels=labels))
            sample_w.append(w)
            c = scaled.get(name, torch.ones(n, dtype=torch.float64))  # (N,) the rescaling of each point
            own = hard_margin_svm(X * c.unsqueeze(1), y, bias="none")
            wc = w / c if name == "margin_decay" else w
            rhos.append(None if name == "meta_reweight" else offset(X * c.unsqueeze(1), y, wc / n, lr, svm=own).rho)
            targets.append(own.w)
    M = len(members)
    kinds = [m.labels["weighting"] for m in members]
    reweight = learned_reweight(cfg, kinds, rate) if part == "learned" else None
    trainer = EnsembleTrainer(
        lambda g: MLP(d, (), 1, generator=g, bias=False).double(),
        members,
        batch_size=None,
        steps_per_epoch=cfg.steps_per_epoch,
        device=ctx.device,
        reweight=reweight,
    )
    with torch.no_grad():  # every member starts at theta = 0, as the notes' simulation
        trainer.params[0].zero_()
    W = torch.stack(sample_w)  # (M, N)
    target = torch.stack(targets)  # (M, d)
    has_rho = torch.tensor([r is not None for r in rhos])
    rho = torch.stack([r if r is not None else torch.zeros(d, dtype=torch.float64) for r in rhos])  # (M, d)
    s = (2 * y - 1).double()
    t_scale = cfg.steps_per_epoch

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        t = float(epoch * t_scale)
        theta = tr.params[0][..., 0].detach().cpu()  # (M, d)
        u = theta @ (s.unsqueeze(1) * X).T  # (M, N) margins
        unit = theta / theta.norm(dim=1, keepdim=True)
        out = {"dir_err": (unit - target / target.norm(dim=1, keepdim=True)).norm(dim=1)}
        out["dir_err_svm"] = (unit - theta_hat / theta_hat.norm()).norm(dim=1)
        tt = torch.tensor([t], dtype=torch.float64)
        nan = torch.full((M,), torch.nan, dtype=torch.float64)
        # the expansion theta_hat log t + rho needs log t > 0 (t >= 2); before that there is no prediction
        pred = torch.stack([predicted_direction_error(tt, target[i], rho[i])[0] for i in range(M)]) if t >= 2 else nan
        out["pred_dir_err"] = torch.where(has_rho, pred, torch.nan)
        resid = (theta - target * (math.log(t) if t >= 2 else math.nan) - rho).norm(dim=1)
        out["residual"] = torch.where(has_rho, resid, torch.nan)
        log_t = math.log(t) if t >= 2 else math.nan
        out["norm_ratio"] = theta.norm(dim=1) / (target.norm(dim=1) * log_t)
        pred_ratio = (target * log_t + rho).norm(dim=1) / (target.norm(dim=1) * log_t)
        out["pred_norm_ratio"] = torch.where(has_rho, pred_ratio, torch.nan)
        exp_loss = (W * torch.exp(-u)).mean(1)  # the weighted exponential loss, (M,)
        out["loss"] = exp_loss
        out["t_loss"] = t * exp_loss
        out["train_acc"] = (u > 0).double().mean(1)
        for k in range(d):
            out[f"u{k}"] = unit[:, k]
        return out

    ckpt = ctx.checkpoint_path
    epochs = cfg.steps // cfg.steps_per_epoch
    trainer.fit(
        X,
        y,
        epochs=epochs,
        sample_weight=W,
        eval_epochs=eval_epochs(epochs),
        callbacks=[metrics],
        checkpoint_path=ckpt,
        progress=ctx.progress,
    )
    extra = {"svm_norm": float(theta_hat.norm()), "n_support": int(svm.support.sum()), "n": n}
    labels = [
        m.labels
        | extra
        | optimum.get(i, {})
        | {"constant": _constant(target[i], rho[i]) if rhos[i] is not None else float("nan")}
        | {"limit_gap": float((target[i] / target[i].norm() - theta_hat / theta_hat.norm()).norm())}
        for i, m in enumerate(members)
    ]
    return CellResult(labels, trainer.history.rows, trainer.diverged_at.tolist())


def _constant(theta_hat: Tensor, rho: Tensor) -> float:
    """``C(w) = ||P_perp rho|| / ||theta_hat||``, the limit of ``dir_err * log t`` (notes P3)."""
    u = theta_hat / theta_hat.norm()
    return float((rho - (rho @ u) * u).norm() / theta_hat.norm())


EXPERIMENT = Experiment(NAME, DESCRIPTION, Config, PROFILES, cells, run_cell, summary, pack_keys=())
