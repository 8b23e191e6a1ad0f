"""cifar_multiclass: all ten CIFAR-10 classes, an MLP, one class weighted by rho (Byrd & Lipton 2019, Fig. 5).

One cell per rho; in a cell, one model per seed x weighted class k, whose loss weights class k by rho and
every other class by (1 - rho)/9 (:func:`iwlab.functional.weighting.one_class_share_weights`; rho = 0.1
is the unweighted model). The test accuracy is weighted the same way (``weighted_acc``,
:func:`iwlab.functional.metrics.weighted_accuracy`); ``acc_class<c>`` per class lets :func:`multiclass_frame`
score the unweighted models under any rho's test weights. Byrd & Lipton: weighting helps the weighted
accuracy early in training and the benefit dissipates. The MLP keeps PyTorch's default initialization.

Example:
    >>> [c for c, _ in cells(MulticlassConfig(fixture=True, rhos=(0.1, 0.5)))]
    ['rho=0.1', 'rho=0.5']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from iwlab.config import RATE, Bound, count
from iwlab.data.cifar10 import CLASSES
from iwlab.data.cifar10_tasks import multiclass_task
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import CI, DATA_PAPER, DataConfig, check_data, load_arrays
from iwlab.experiments.cifar_summary import diverged_lines
from iwlab.experiments.findings import TREND_RULE, claim_match, finding_line, trend_text
from iwlab.functional.weighting import one_class_share_weights
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member
from iwlab.train.evaluators import combine, fit_metrics, held_out_metrics

N_CLASSES = 10


@dataclass
class MulticlassConfig(DataConfig):
    """cifar_multiclass: 10 classes, MLP; class k weighted by rho, the others by (1 - rho)/9; defaults: quick."""

    rhos: tuple[float, ...] = (0.1, 0.3, 0.6, 0.9)  # one cell each; rho = 0.1 is no weighting
    weighted_classes: tuple[int, ...] = tuple(range(10))  # the classes that take rho in turn
    hidden: int = 256
    lr: float = 0.01
    normalization: Literal["batch_size", "weight_sum"] = "weight_sum"  # as torch's cross_entropy(weight=...)
    n_train_per_class: int = 200
    n_test_per_class: int = 200
    size: int = 8
    seeds: int = 1
    epochs: int = 200

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "rhos": Bound(0, 1, lo_open=True, hi_open=True),
        "weighted_classes": count(9, lo=0),
        "hidden": count(65_536),
        "lr": RATE,
    }

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: repeated rhos or rhos outside (0, 1), a class index outside 0..9, a bad ``hidden`` or lr.
        """
        super().validate()
        if not self.rhos or any(not 0.0 < r < 1.0 for r in self.rhos) or len(set(self.rhos)) != len(self.rhos):
            raise ValueError(f"rhos must be distinct values in (0, 1), got {self.rhos}")
        if min(self.rhos) < 1e-30:  # the trainer's float32 weights would flush such a share to 0
            raise ValueError(f"rhos must be >= 1e-30 (float32 weights), got {min(self.rhos):g}")
        if not self.weighted_classes or any(not 0 <= k < 10 for k in self.weighted_classes):
            raise ValueError(f"weighted_classes must be class indices 0..9, got {self.weighted_classes}")
        if self.hidden < 1 or not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError("hidden must be >= 1 and lr finite and >= 0")


PROFILES: dict[str, dict] = {
    "quick": {},
    # all 50,000 training images at 32x32 (MLP on 3072 inputs), rho = 0.1 ... 0.9; the epoch count is an assumption
    "paper": {**DATA_PAPER, "rhos": tuple(round(0.1 * k, 1) for k in range(1, 10)), "seeds": 1},
    "ci": {**CI, "size": 8, "hidden": 32, "rhos": (0.1, 0.5), "weighted_classes": (0, 3)},
}
PACK_KEYS = ("rhos", "weighted_classes")


def _is_uniform(rho: float, n_classes: int = N_CLASSES) -> bool:
    """rho = 1/n_classes weights every class alike: the unweighted model."""
    return abs(rho - 1.0 / n_classes) < 1e-9


def cells(cfg: MulticlassConfig) -> list[tuple[str, dict]]:
    """One cell per rho.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
    """
    check_data(cfg)
    return [(f"rho={r:g}", {"rho": r}) for r in cfg.rhos]


def members(cfg: MulticlassConfig, rho: float) -> list[Member]:
    """One model per seed x weighted class; the seed depends on (seed, class) only, not on rho.

    Example:
        >>> [(m.seed, round(m.class_weight[3], 2)) for m in members(MulticlassConfig(weighted_classes=(0, 3)), 0.5)]
        [(0, 0.06), (3, 0.5)]
    """
    out = []
    for s in range(cfg.seeds):
        for k in cfg.weighted_classes:
            # the same init and shuffles for every rho
            seed = cfg.seed + 10 * s + k
            labels = {"rho": rho, "weighted_class": k, "class_name": CLASSES[k], "seed": seed, "lr": cfg.lr}
            out.append(Member(seed=seed, class_weight=one_class_share_weights(rho, k), lr=cfg.lr, labels=labels))
    return out


def run_cell(cfg: MulticlassConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one rho's MLPs; record the training objective and accuracies, test, weighted and per class."""
    task = multiclass_task(
        load_arrays(cfg),
        n_train_per_class=cfg.n_train_per_class or None,
        n_test_per_class=cfg.n_test_per_class or None,
        size=cfg.size,
        seed=cfg.data_seed,
    )
    ms = members(cfg, params["rho"])
    in_dim = 3 * cfg.size * cfg.size

    def model_fn(g: torch.Generator) -> MLP:
        return MLP(in_dim, (cfg.hidden,), N_CLASSES, generator=g)

    trainer = EnsembleTrainer(
        model_fn, ms, batch_size=cfg.batch_size, normalization=cfg.normalization, device=ctx.device
    )
    dev = ctx.device
    x, y = task.x_train.reshape(len(task.x_train), -1).to(dev), task.y_train.to(dev)  # (N, 3 s s), (N,)
    xt, yt = task.x_test.reshape(len(task.x_test), -1).to(dev), task.y_test.to(dev)
    cw = torch.tensor([m.class_weight for m in ms], dtype=torch.float32, device=dev)  # (M, 10)
    metrics = combine(
        fit_metrics(x, y, class_weight=cw, normalization=cfg.normalization),
        held_out_metrics(xt, yt, class_weight=cw, per_class=True),
    )
    trainer.fit(
        x,
        y,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    return CellResult(members=[m.labels for m in ms], rows=trainer.history.rows, diverged=trainer.diverged_at.tolist())


def multiclass_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Weighted accuracy per (rho, weighted class, epoch), mean over seeds, with the unweighted baseline.

    ``baseline`` is the weighted accuracy, under the same test weights, of the unweighted models (the rho =
    0.1 members, all weights equal) with the same seed, computed from their per-class test accuracies
    (``acc_class<c>``; the CIFAR test sets here are class-balanced). ``gain = wacc - baseline``. The
    summary and the Fig. 5 plot (:mod:`iwlab.plots.cifar`) both read this frame.

    Args:
        df: the store frame with ``rho``, ``weighted_class`` and ``seed`` labels.

    Returns:
        Columns ``rho, weighted_class, epoch, wacc, baseline, gain`` (``baseline`` NaN without rho = 0.1 models).

    Example:
        >>> multiclass_frame(pd.DataFrame(columns=["rho", "weighted_class", "seed", "epoch", "name", "value"])).empty
        True
    """
    keys = ["rho", "weighted_class", "seed", "epoch"]
    w = df[df.name == "weighted_acc"][keys + ["value"]].rename(columns={"value": "wacc"})
    if w.empty:
        return pd.DataFrame(columns=[*keys, "wacc", "baseline", "gain"])
    base = df[df.name.str.startswith("acc_class") & ((df.rho - 0.1).abs() < 1e-9)]  # rho = 1/10: unweighted
    w = w.assign(baseline=np.nan)
    if not base.empty:
        base = base.assign(c=base.name.str.removeprefix("acc_class").astype(int))
        piv = base.pivot_table(index=["weighted_class", "seed", "epoch"], columns="c", values="value")
        merged = w.merge(piv, left_on=["weighted_class", "seed", "epoch"], right_index=True, how="left")
        classes = list(piv.columns)
        acc = merged[classes].to_numpy(dtype=float)
        rho = merged.rho.to_numpy(dtype=float)[:, None]
        k = merged.weighted_class.to_numpy()[:, None]
        v = np.where(np.array(classes)[None, :] == k, rho, (1 - rho) / 9)
        w["baseline"] = (v * acc).sum(1) / v.sum(1)
    w["gain"] = w.wacc - w.baseline
    return w.groupby(["rho", "weighted_class", "epoch"], as_index=False)[["wacc", "baseline", "gain"]].mean()


def summary(df: pd.DataFrame, cfg: MulticlassConfig) -> str:
    """Markdown: weighted accuracy per rho first vs last epoch, and the gain over the unweighted models with a
    verdict computed from the numbers against Byrd & Lipton's claim (Fig. 5: the benefit dissipates)."""
    if df.empty:
        return "(no results)"
    lines = [
        f"MLP ({cfg.hidden} hidden) on {cfg.size}x{cfg.size} images, {cfg.n_train_per_class or 'all'} training "
        f"images per class, lr {cfg.lr:g}, batch {cfg.batch_size}, loss normalization {cfg.normalization}, "
        f"{cfg.epochs} epochs. Weighted accuracy: each test example weighted by its class's weight (rho for the "
        "weighted class, (1 - rho)/9 for the others), mean +- std over the weighted classes.",
        "",
    ]
    t = multiclass_frame(df)
    if t.empty:
        return "\n".join(lines + ["(no weighted accuracy recorded)"])
    first, last = t.epoch.min(), t.epoch.max()
    has_base = t.baseline.notna().any()
    table = [
        "| rho | weighted acc., first epoch | weighted acc., last epoch"
        + (
            " | gain over unweighted, first | max gain (epoch) | gain, last | benefit | matches |" if has_base else " |"
        ),
        "|---|---|---" + ("|---|---|---|---|---|" if has_base else "|"),
    ]
    found = []
    for rho, g in t.groupby("rho"):
        agg = g.groupby("epoch").agg(m=("wacc", "mean"), s=("wacc", "std"), gain=("gain", "mean"))
        sd = agg.s.fillna(0.0)
        row = f"| {rho:g} | {agg.m[first]:.3f} +- {sd[first]:.3f} | {agg.m[last]:.3f} +- {sd[last]:.3f}"
        if has_base and _is_uniform(rho):
            row += " | (the unweighted baseline) | | | | |"
        elif has_base:
            best = agg.gain.idxmax() if agg.gain.notna().any() else first
            # the benefit is the positive part of the gain: a loss is no benefit to dissipate
            b_max, b_last = max(float(agg.gain[best]), 0.0), max(float(agg.gain[last]), 0.0)
            verdict, matches = trend_text(b_max, b_last), claim_match(b_max, b_last, ("shrinks",))
            found.append((f"rho={rho:g}", verdict, "the benefit dissipates", matches))
            row += (
                f" | {agg.gain[first]:+.3f} | {agg.gain[best]:+.3f} ({best}) | {agg.gain[last]:+.3f} "
                f"| {verdict} | {matches} |"
            )
        else:
            row += " |"
        table.append(row)
    if has_base:
        lines += [
            "Gain = weighted accuracy of the weighted model minus that of the unweighted (rho = 0.1) models under "
            "the same test weights; benefit = the gain where positive, at its maximum vs at the last epoch. Byrd & "
            f"Lipton's claim (Fig. 5): a benefit early in training that dissipates ('shrinks'). {TREND_RULE}",
            "",
            finding_line(found, "benefit of weighting"),
            "",
        ]
    lines += [*table, ""]
    return "\n".join(lines + diverged_lines(df))


EXPERIMENT = Experiment(
    name="cifar_multiclass",
    description="CIFAR-10 10 classes, MLP: one class weighted by rho, weighted test accuracy vs epochs (Fig 5)",
    config=MulticlassConfig,
    profiles=PROFILES,
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
