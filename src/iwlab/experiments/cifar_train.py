"""Training of a two-class CIFAR-10 cell (Byrd & Lipton 2019, Sec. 3): the ensemble in packs, its metrics at
the evaluation epochs, and its last-epoch predictions with the agreement between models (their Sec. 4.1).

The metrics and artifacts are described in :mod:`iwlab.experiments.cifar_common`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from iwlab.data.cifar10_tasks import BinaryTask
from iwlab.experiments.base import CellContext, CellResult
from iwlab.experiments.cifar_common import AGREEMENT_SEED, Optimizer, TwoClassConfig
from iwlab.files import atomic_save, load_checkpoint
from iwlab.functional.agreement import agreement_null, grid_agreement
from iwlab.functional.metrics import agreement_per_member, grid_index, member_grid
from iwlab.train import Member, fit_in_packs, merge_histories, pack_checkpoint_path
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


def _budget_state(path: Path) -> dict[str, Any]:
    """What the budgeted training of a cell did so far: its last segment's epoch, seconds and whether it stopped."""
    state = load_checkpoint(path, weights_only=True, what="time-budget record")
    return state if state is not None else {"epoch": 0, "seconds": 0.0, "stopped": False}


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

    With ``cfg.time_budget_s > 0`` the ensemble trains from one evaluation epoch to the next and stops at
    the end of the first evaluated epoch at which the cell's wall time (training, evaluation and
    checkpoints, counted across resumes) passes the budget; the last trained epoch is recorded as
    ``trained_epochs`` and the seconds as ``train_seconds`` (member 0, cell-level), and everything that is
    recorded "at the last epoch" (predictions, agreement) is at that epoch. A record
    ``checkpoints/<cell>.budget.pt`` keeps the progress, so a resumed cell continues where it stopped.

    Args:
        cfg: the experiment's config (epochs, batch size, normalization, packing, evaluation epochs, budget).
        task: the cell's data.
        members: the ensemble.
        model_fn: builds one model (one output logit) from a generator.
        ctx: where the cell keeps its checkpoint and artifacts.
        optimizer: ``"sgd"`` or ``"adam"``.
        with_agreement: add the agreement metrics (needs one member per weight and seed).

    Returns:
        The cell's result; its artifact ``predictions`` is ``artifacts/<cell>_predictions.npz``.
    """
    M = len(members)
    index = {id(m): i for i, m in enumerate(members)}  # pack member -> global member
    final_preds: dict[int, dict[str, Tensor]] = {}  # global member -> predictions per set at ``target[0]``
    target = [cfg.epochs]  # the epoch the current fit ends at: its predictions are kept
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
        if epoch == target[0]:
            for j, m in enumerate(tr.members):
                final_preds[index[id(m)]] = {k: v[j].cpu() for k, v in preds.items()}
        return mask_diverged(out, tr.diverged_at)

    evals = cfg.eval_epochs()
    progress = ctx.progress
    if callable(progress):  # segments end before cfg.epochs: show the progress against the whole run
        progress = lambda epoch, _total: ctx.progress(epoch, cfg.epochs)  # noqa: E731
    fit_kw = {"callbacks": [metrics], "progress": progress}
    budget = cfg.time_budget_s
    budget_path = ctx.checkpoint_path.with_suffix(".budget.pt")
    done = _budget_state(budget_path) if budget > 0 else {"epoch": 0, "seconds": 0.0, "stopped": False}
    # without a budget one fit to cfg.epochs; with one, a fit per evaluation epoch (the budget is checked
    # between fits) after the last one a resumed cell finished (its checkpoints are at most one fit ahead);
    # stopped by the budget earlier, or every fit done: reload that epoch and train no further
    targets = [cfg.epochs] if budget <= 0 else [e for e in evals if e > done["epoch"]]
    if done["stopped"] or not targets:
        targets = [done["epoch"]]
    start, seconds = time.perf_counter(), done["seconds"]
    trainers: list[Any] = []
    for end in targets:
        target[0] = end
        final_preds.clear()  # a pack resumed at ``end`` trains nothing and is recomputed below
        kw = {**fit_kw, "epochs": target[0], "eval_epochs": [e for e in evals if e <= target[0]]}
        if not trainers:
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
                checkpoint_path=ctx.checkpoint_path,
                precision=cfg.precision,
                channels_last=cfg.channels_last,
                conv_impl=cfg.conv_impl,
                compile=cfg.compile,
                **kw,
            )
        else:  # continue the packs (their sizes after any out-of-memory halving) from their checkpoints
            lo = 0
            for t in trainers:
                t.fit(x, y, checkpoint_path=pack_checkpoint_path(ctx.checkpoint_path, lo, lo + t.M), **kw)
                lo += t.M
        if budget > 0:
            seconds = done["seconds"] + time.perf_counter() - start
            stopped = done["stopped"] or (seconds > budget and target[0] < cfg.epochs)
            atomic_save({"epoch": target[0], "seconds": seconds, "stopped": stopped}, budget_path)
            if stopped:
                break
    last = target[0]
    history = merge_histories(trainers)
    diverged = torch.cat([t.diverged_at for t in trainers])
    if len(final_preds) != M:  # every pack was resumed past its last epoch: recompute the predictions
        for t in trainers:
            metrics(t, last)
    preds = {k: torch.stack([final_preds[i][k] for i in range(M)]) for k in final_preds[0]}  # (M, N) per set
    dead = (diverged >= 0).numpy()
    per_member, per_cell = save_predictions(
        pred_path, members, preds, task.y_test, dead, with_agreement, cfg.agreement_permutations
    )
    history.rows.extend((last, i, name, float(v)) for name, vals in per_member.items() for i, v in enumerate(vals))
    if budget > 0:
        per_cell |= {"trained_epochs": float(last), "train_seconds": seconds}
    history.rows.extend((last, 0, name, v) for name, v in per_cell.items())  # cell-level: on member 0
    return CellResult(
        members=[m.labels for m in members],
        rows=history.rows,
        diverged=diverged.tolist(),
        artifacts=[("predictions", str(pred_path.relative_to(ctx.run_dir)))],
    )


def save_predictions(
    path: Path,
    members: list[Member],
    preds: dict[str, Tensor],
    y_test: Tensor,
    dead: np.ndarray,
    with_agreement: bool,
    n_permutations: int = 1000,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Write the members' last-epoch predictions; return the agreement metrics, per member and per cell.

    The npz holds ``weight (M,)``, ``seed (M,)``, ``diverged (M,) bool``, ``y_test (Nt,)`` and
    ``pred_<set> (M, N_set) int8`` for each of :data:`SETS`. Per member (each ``(M,)``):
    ``agree_seeds_<set>``, ``agree_weights_<set>``. Per cell (floats, :func:`agreement_metrics`): the
    observed gap and its permutation null. All are left out when a member diverged, when the members do
    not form a weight x seed grid, or when ``with_agreement`` is false.
    """
    weights = [m.labels["weight"] for m in members]
    seeds = [m.labels["seed"] for m in members]
    arrays = {f"pred_{k}": v.cpu().numpy().astype(np.int8) for k, v in preds.items()}
    np.savez_compressed(
        path, weight=np.array(weights), seed=np.array(seeds), diverged=dead, y_test=y_test.numpy(), **arrays
    )
    out: dict[str, Tensor] = {}
    cell: dict[str, float] = {}
    where = grid_index(weights, seeds)
    if not with_agreement or len(where) != len(weights) or dead.any():
        return out, cell
    for name, p in arrays.items():
        if p.shape[1] == 0:
            continue
        grid = member_grid(p, weights, seeds)  # (W, S, N)
        a_seeds, a_weights = agreement_per_member(grid)
        set_name = name.removeprefix("pred_")
        idx = [where[(w, s)] for w, s in zip(weights, seeds, strict=True)]
        out[f"agree_seeds_{set_name}"] = torch.tensor([a_seeds[i, j] for i, j in idx])
        out[f"agree_weights_{set_name}"] = torch.tensor([a_weights[i] for i, _ in idx])
        cell |= {f"{k}_{set_name}": v for k, v in agreement_metrics(grid, n_permutations).items()}
    return out, cell


def agreement_metrics(grid: np.ndarray, n_permutations: int) -> dict[str, float]:
    """The cell-level agreement numbers of one ``(W, S, N)`` grid: the gap and, with ``n_permutations > 0`` and
    ``W >= 2``, its null.

    Names: ``agree_gap`` (across weightings - across seeds), ``agree_null_gap`` (the null's mean),
    ``agree_null_lo`` / ``agree_null_hi`` (its central 95% interval), ``agree_p_above`` / ``agree_p_below``
    (one-sided permutation p-values; :func:`iwlab.functional.agreement.agreement_null`, seed
    :data:`AGREEMENT_SEED`). Shared with :func:`iwlab.plots.cifar.agreement_from_artifacts`.

    Example:
        >>> g = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
        >>> {k: round(v, 3) for k, v in agreement_metrics(g, 0).items()}
        {'agree_gap': -0.083}
    """
    if n_permutations == 0 or grid.shape[0] < 2:  # one weighting: nothing to permute
        aw, a_s = grid_agreement(grid)
        return {"agree_gap": aw - a_s}
    r = agreement_null(grid, n_permutations, seed=AGREEMENT_SEED, level=0.95)
    return {
        "agree_gap": r.gap,
        "agree_null_gap": r.null_mean,
        "agree_null_lo": r.null_lo,
        "agree_null_hi": r.null_hi,
        "agree_p_above": r.p_above,
        "agree_p_below": r.p_below,
    }
