"""Pieces of the implicit-bias experiment (:mod:`iwlab.experiments.implicit_bias`): the evaluation grid, the
members' labels, the learned weights of the ``learned`` part, and the ``relu`` part (P6 for a homogeneous net).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from iwlab.data.support_vectors import make_two_support_vectors
from iwlab.experiments.base import CellContext, CellResult
from iwlab.implicit_bias import homogeneous_normalized_margin, parameter_norm, smoothed_margin
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.member_losses import Reweight


def eval_epochs(epochs: int) -> list[int]:
    """``{1, 2, 5} * 10**k`` up to ``epochs``, ``epochs`` itself and, when whole, ``epochs / 10`` and ``epochs / 100``.

    With ``t`` in the ``{1, 2, 5}`` grid, ``t / 10`` is too (P4's time shift); the report compares the last step
    ``T`` with ``T / 10`` and ``T / 100``.

    Example:
        >>> eval_epochs(300)
        [1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300]
    """
    out = {m * 10**k for k in range(12) for m in (1, 2, 5) if m * 10**k <= epochs}
    return sorted(out | {epochs} | {epochs // f for f in (10, 100) if epochs % f == 0})


def normalized(w: Tensor) -> Tensor:
    """Weights scaled to mean 1 (a common factor only rescales the learning rate, P4)."""
    return w / w.mean()


def member_labels(cfg: Any, part: str, loss: str, weighting: str, **extra: float) -> dict:
    return {"part": part, "loss": loss, "weighting": weighting, "steps_per_epoch": cfg.steps_per_epoch} | extra


def learned_reweight(cfg: Any, kinds: list[str], rate: Tensor) -> Reweight:
    """The per-step learned weights of the ``learned`` part: meta-weights and margin-decaying weights.

    * ``meta_reweight`` (Ren et al. 2018, Alg. 1, eqs. 9-11, for a linear model): ``w_i ∝ max(0, grad l_i .
      grad L_val)`` normalized to mean 1 over the batch (Ren et al. normalize to sum 1: the factor is a learning
      rate), with ``L_val`` the unweighted logistic loss on a balanced validation set from the same generator.
    * ``margin_decay``: ``w_i = exp(-rate[y_i] * u_i)`` with ``u_i = s_i theta.x_i``: with the exponential loss
      the update is that of ``exp(-(1 + rate[y_i]) u_i)``, whose limit is the SVM of the points ``(1 +
      rate[y_i]) x_i`` (Soudry et al. 2018 applied to the rescaled points).
    """
    Xv, yv = make_two_support_vectors(cfg.n_val_per_class, cfg.n_val_per_class, cfg.data_seed + 1, cfg.min_margin)
    sv = (2 * yv - 1).double()
    meta = torch.tensor([k == "meta_reweight" for k in kinds])
    decay = torch.tensor([k == "margin_decay" for k in kinds])

    def reweight(logits: Tensor, y: Tensor, x: Tensor, params: list[Tensor]) -> Tensor:
        z = logits.squeeze(-1)  # (M, B)
        s = 2.0 * y - 1.0
        out = torch.ones_like(z)
        if bool(decay.any()):
            out[decay] = torch.exp(-rate.to(z)[y[decay].long()] * (s[decay] * z[decay]))
        if bool(meta.any()):
            theta = params[0][meta, :, 0]  # (m, d)
            zv = theta @ Xv.to(theta).T  # (m, N_val)
            gv = (-sv * torch.sigmoid(-sv * zv)) @ Xv.to(theta) / Xv.shape[0]  # (m, d) grad of the val loss
            gi = (-s[meta] * torch.sigmoid(-s[meta] * z[meta])).unsqueeze(-1) * x[meta]  # (m, B, d) per example
            raw = (gi @ gv.unsqueeze(-1)).squeeze(-1).clamp_min(0.0)  # (m, B): max(0, <grad l_i, grad L_val>)
            total = raw.sum(1, keepdim=True)
            out[meta] = torch.where(total > 0, raw * raw.shape[1] / total, torch.zeros_like(raw))
        return out

    return reweight


def run_relu(cfg: Any, ctx: CellContext) -> CellResult:
    """P6 for a 2-homogeneous net: bias-free ReLU MLP, uniform vs minority/majority x10, over seeds."""
    X, y = make_two_support_vectors(cfg.n_majority, cfg.n_minority, cfg.data_seed, cfg.min_margin)
    minority = y == 1
    weightings = {
        "uniform": torch.ones(X.shape[0], dtype=torch.float64),
        "minority_x10": normalized(torch.where(minority, 10.0, 1.0).double()),
        "majority_x10": normalized(torch.where(minority, 1.0, 10.0).double()),
    }
    members, sample_w = [], []
    for name, w in weightings.items():
        for k in range(cfg.seeds):
            members.append(
                Member(seed=cfg.seed + k, lr=cfg.lr, labels=member_labels(cfg, "relu", "ce", name, seed=cfg.seed + k))
            )
            sample_w.append(w)
    W = torch.stack(sample_w)  # (M, N)
    log_ratio = torch.log(X.shape[0] * W.max(1).values / W.min(1).values)  # (M,): log(n w_max / w_min)
    trainer = EnsembleTrainer(
        lambda g: MLP(2, (cfg.relu_hidden,), 1, generator=g, bias=False).double(),
        members,
        batch_size=None,
        steps_per_epoch=cfg.steps_per_epoch,
        device=ctx.device,
    )
    degree = 2  # one hidden layer, no biases: f(c theta) = c^2 f(theta)

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        scores = tr.logits(X).squeeze(-1).cpu()  # (M, N)
        norm = parameter_norm([p.detach().cpu() for p in tr.params[0::2]])  # (M,): the biases are zero
        ok = torch.isfinite(norm) & (norm > 0) & torch.isfinite(scores).all(1)  # a diverged member: NaN metrics
        nan = torch.full((len(norm),), float("nan"), dtype=torch.float64)
        out = {"norm_margin": nan.clone(), "smoothed_margin": nan.clone()}
        if bool(ok.any()):
            out["norm_margin"][ok] = homogeneous_normalized_margin(scores[ok], y, norm[ok], degree)
            out["smoothed_margin"][ok] = smoothed_margin(scores[ok], y, norm[ok], degree)
        out["param_norm"] = norm
        out["margin_bound"] = log_ratio / norm**degree  # log(n w_max / w_min) / ||theta||^L (notes Sec. 2)
        out["train_acc"] = ((scores > 0).long() == y).double().mean(1)
        out["loss"] = torch.nn.functional.softplus(-(2 * y - 1) * scores).mul(W).mean(1)  # the weighted objective
        return out

    epochs = cfg.relu_steps // cfg.steps_per_epoch
    trainer.fit(
        X,
        y,
        epochs=epochs,
        sample_weight=W,
        eval_epochs=eval_epochs(epochs),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    labels = [m.labels | {"log_weight_ratio": float(log_ratio[i])} for i, m in enumerate(members)]
    return CellResult(labels, trainer.history.rows, trainer.diverged_at.tolist())
