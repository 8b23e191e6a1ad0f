"""Training of a two-class CIFAR-10 cell (Byrd & Lipton 2019, Sec. 3): the ensemble in packs, its metrics at
the evaluation epochs, and its last-epoch predictions with the agreement between models (their Sec. 4.1).

The metrics and artifacts are described in :mod:`iwlab.experiments.cifar_common`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from iwlab.data.cifar10_tasks import BinaryTask
from iwlab.experiments.base import CellContext, CellResult
from iwlab.experiments.cifar_common import Optimizer, TwoClassConfig
from iwlab.functional.metrics import agreement_per_member, grid_index, member_grid
from iwlab.train import Member, fit_in_packs, merge_histories
from iwlab.train.evaluators import (
    accuracy,
    binary_fit_metrics,
    fraction_predicted,
    mask_diverged,
    member_class_weights,
)


def _chunk(n_members: int, per_image: int, device: str) -> int:
    """Images per forward chunk so that one activation tensor stays near 64 MiB (CPU) or 2 GiB (GPU)."""
    budget = 2**31 if str(device).startswith("cuda") else 2**26
    return max(16, budget // (4 * n_members * max(per_image, 1)))


def train_two_class(
    cfg: TwoClassConfig,
    task: BinaryTask,
    members: list[Member],
    model_fn: Callable[[torch.Generator], torch.nn.Module],
    ctx: CellContext,
    *,
    optimizer: Optimizer = "sgd",
    with_agreement: bool = True,
) -> CellResult:
    """Train one two-class cell's ensemble (in packs), record its metrics and its last-epoch predictions.

    Args:
        cfg: the experiment's config (epochs, batch size, normalization, packing, evaluation epochs).
        task: the cell's data.
        members: the ensemble.
        model_fn: builds one model (one output logit) from a generator.
        ctx: where the cell keeps its checkpoint and artifacts.
        optimizer: ``"sgd"`` or ``"adam"``.
        with_agreement: add the per-member agreement metrics (needs one member per weight and seed).

    Returns:
        The cell's result; its artifact ``predictions`` is ``artifacts/<cell>_predictions.npz``.
    """
    M = len(members)
    index = {id(m): i for i, m in enumerate(members)}  # pack member -> global member
    final_preds: dict[int, dict[str, Tensor]] = {}  # global member -> last-epoch predictions per set
    dev = ctx.device
    x, y = task.x_train.to(dev), task.y_train.to(dev)
    sets = {"test": task.x_test.to(dev), "other": task.x_other.to(dev), "noise": task.x_noise.to(dev)}
    y_test = task.y_test.to(dev)
    flipped = task.flipped.to(dev)
    pos = cfg.classes[1]
    pred_path = ctx.artifact_path("_predictions.npz")

    def metrics(tr: Any, epoch: int) -> dict[str, Tensor]:
        # called once per pack: ``tr`` holds a consecutive slice of the members
        cw = member_class_weights(tr, dev)  # (m, 2)
        chunk = _chunk(tr.M, 64 * cfg.size * cfg.size, dev)

        def logits(inp: Tensor) -> Tensor:
            if inp.shape[0] == 0:
                return torch.zeros(tr.M, 0, device=dev)
            return tr.logits(inp, chunk=chunk).squeeze(-1)  # (m, N)

        z = logits(x)
        out = binary_fit_metrics(z, y, cw, cfg.normalization)
        if bool(flipped.any()):  # fitted to the flipped (noisy) labels: memorization of the noise
            out["train_acc_flipped"] = accuracy((z[:, flipped] > 0).long(), y[flipped])
        preds = {}
        for name, xs in sets.items():
            preds[name] = (logits(xs) > 0).long()  # (m, N_set)
            if preds[name].shape[1]:
                out[f"frac_{pos}_{name}"] = fraction_predicted(preds[name], 1)
        out["test_acc"] = accuracy(preds["test"], y_test)
        if epoch == cfg.epochs:
            for j, m in enumerate(tr.members):
                final_preds[index[id(m)]] = {k: v[j].cpu() for k, v in preds.items()}
        return mask_diverged(out, tr.diverged_at)

    trainers = fit_in_packs(
        model_fn,
        members,
        x,
        y,
        pack_size=cfg.pack_size or None,
        batch_size=cfg.batch_size,
        optimizer=optimizer,
        normalization=cfg.normalization,
        device=dev,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    history = merge_histories(trainers)
    diverged = torch.cat([t.diverged_at for t in trainers])
    if len(final_preds) != M:  # every pack was resumed past its last epoch: recompute the predictions
        for t in trainers:
            metrics(t, cfg.epochs)
    preds = {k: torch.stack([final_preds[i][k] for i in range(M)]) for k in final_preds[0]}  # (M, N) per set
    agree = save_predictions(pred_path, members, preds, task.y_test, (diverged >= 0).numpy(), with_agreement)
    history.rows.extend((cfg.epochs, i, name, float(v)) for name, vals in agree.items() for i, v in enumerate(vals))
    return CellResult(
        members=[m.labels for m in members],
        rows=history.rows,
        diverged=diverged.tolist(),
        artifacts=[("predictions", str(pred_path.relative_to(ctx.run_dir)))],
    )


def save_predictions(
    path: Path, members: list[Member], preds: dict[str, Tensor], y_test: Tensor, dead: np.ndarray, with_agreement: bool
) -> dict[str, Tensor]:
    """Write the members' last-epoch predictions; return the per-member agreement metrics.

    The npz holds ``weight (M,)``, ``seed (M,)``, ``diverged (M,) bool``, ``y_test (Nt,)`` and
    ``pred_<set> (M, N_set) int8`` for each of :data:`SETS`. The agreement metrics (``agree_seeds_<set>``,
    ``agree_weights_<set>``, each ``(M,)``) are left out when a member diverged, when the members do
    not form a weight x seed grid, or when ``with_agreement`` is false.
    """
    weights = [m.labels["weight"] for m in members]
    seeds = [m.labels["seed"] for m in members]
    arrays = {f"pred_{k}": v.cpu().numpy().astype(np.int8) for k, v in preds.items()}
    np.savez_compressed(
        path, weight=np.array(weights), seed=np.array(seeds), diverged=dead, y_test=y_test.numpy(), **arrays
    )
    out: dict[str, Tensor] = {}
    where = grid_index(weights, seeds)
    if not with_agreement or len(where) != len(weights) or dead.any():
        return out
    for name, p in arrays.items():
        if p.shape[1] == 0:
            continue
        a_seeds, a_weights = agreement_per_member(member_grid(p, weights, seeds))
        set_name = name.removeprefix("pred_")
        idx = [where[(w, s)] for w, s in zip(weights, seeds, strict=True)]
        out[f"agree_seeds_{set_name}"] = torch.tensor([a_seeds[i, j] for i, j in idx])
        out[f"agree_weights_{set_name}"] = torch.tensor([a_weights[i] for i, _ in idx])
    return out
