"""Figures of the CIFAR-10 experiments (Byrd & Lipton Figs. 4, 5, A.3-A.9), read from the store.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), so they work headless and in workers.
Lines are means over seeds, bands one standard deviation (as in the paper).

Example:
    >>> # fraction_curves(df[df.variant == "plain"], "frac_dog", Path("fig4abc.png"), "Fig. 4 (a-c)")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 110
SETS = (("test", "test set (2 classes)"), ("other", "other 8 classes"), ("noise", "random noise"))


def _colors(n: int, cmap: str = "coolwarm") -> list:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    return [cm(i / max(n - 1, 1)) for i in range(n)]


def _weight_colors(weights: list[float]) -> list:
    """Blue for w < 1 (class 1 down-weighted), red for w > 1, black for no weighting."""
    cols = _colors(len(weights))
    return ["k" if w == 1 else c for w, c in zip(weights, cols, strict=True)]


def _wlabel(w: float) -> str:
    if w == 1:
        return "1"
    k = math.log2(w)
    return f"$2^{{{k:g}}}$" if abs(k - round(k)) < 1e-9 else f"{w:g}"


def _band(ax: Any, x: Any, mean: Any, std: Any, color: Any, label: str, ls: str = "-") -> None:
    ax.plot(x, mean, color=color, lw=1.3, ls=ls, label=label)
    std = np.nan_to_num(np.asarray(std, dtype=float))
    if std.any():
        ax.fill_between(x, np.asarray(mean) - std, np.asarray(mean) + std, color=color, alpha=0.15)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)


def fraction_curves(df: pd.DataFrame, prefix: str, path: Path, title: str) -> Path:
    """Fig. 4 (a-c) style: fraction predicted as class 1 vs epoch (log axis) on the test set, the other
    8 classes and noise; one line per weight, mean +- std over seeds. ``df`` holds one variant.

    Example:
        >>> # fraction_curves(df[df.variant == "plain"], "frac_dog", Path("fig4abc.png"), "Fig. 4 (a-c)")
    """
    fig = Figure(figsize=(11.5, 3.4))
    axes = fig.subplots(1, 3, squeeze=False)[0]
    weights = sorted(df.weight.unique())
    cols = _weight_colors(weights)
    pos = prefix.removeprefix("frac_")
    for ax, (name, label) in zip(axes, SETS, strict=True):
        d = df[df.name == f"{prefix}_{name}"]
        for w, col in zip(weights, cols, strict=True):
            g = d[d.weight == w].groupby("epoch").value.agg(["mean", "std"])
            if not g.empty:
                _band(ax, g.index, g["mean"], g["std"], col, _wlabel(w))
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"fraction predicted {pos}")
    axes[-1].legend(title=f"{pos} weight", fontsize=6, title_fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def fraction_vs_weight(df: pd.DataFrame, prefix: str, variants: list[str], path: Path, title: str) -> Path:
    """Fig. 4 (d-f) style: fraction predicted as class 1 at the last epoch vs weight (log axis), one panel
    per variant, one line per evaluation set; mean +- std over seeds.

    Example:
        >>> # fraction_vs_weight(df, "frac_dog", ["plain", "l2", "dropout"], Path("fig4def.png"), "Fig. 4 (d-f)")
    """
    fig = Figure(figsize=(3.6 * len(variants) + 0.4, 3.3))
    axes = fig.subplots(1, len(variants), squeeze=False)[0]
    pos = prefix.removeprefix("frac_")
    for ax, variant in zip(axes, variants, strict=True):
        d = df[(df.variant == variant) & df.name.str.startswith(prefix)]
        if d.empty:
            continue
        last = d[d.epoch == d.epoch.max()]
        for (name, label), col in zip(SETS, ("C0", "C1", "C2"), strict=True):
            g = last[last.name == f"{prefix}_{name}"].groupby("weight").value.agg(["mean", "std"])
            if not g.empty:
                _band(ax, np.log2(g.index.to_numpy(dtype=float)), g["mean"], g["std"], col, label)
                ax.plot(np.log2(g.index.to_numpy(dtype=float)), g["mean"], "o", color=col, ms=3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{variant}, epoch {int(last.epoch.max())}", fontsize=9)
        ax.set_xlabel(f"log2 {pos} weight")
        ax.set_ylabel(f"fraction predicted {pos}")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def accuracy_curves(df: pd.DataFrame, path: Path) -> Path:
    """Train and test accuracy vs epoch per variant (or sub-sampling cell), one line per weight.

    Example:
        >>> # accuracy_curves(df, Path("accuracy.png"))
    """
    by = "variant" if "subsampled" not in df or df.subsampled.isna().all() else "run_id"
    order = ("plain", "l2", "dropout", "adam", "batchnorm")
    groups = sorted(dict.fromkeys(df[by]), key=lambda g: order.index(g) if g in order else len(order))
    fig = Figure(figsize=(3.3 * len(groups) + 0.4, 5.6))
    axes = fig.subplots(2, len(groups), squeeze=False)
    for c, key in enumerate(groups):
        d = df[df[by] == key]
        weights = sorted(d.weight.unique())
        for r, metric in enumerate(("train_acc", "test_acc")):
            ax = axes[r][c]
            m = d[d.name == metric]
            for w, col in zip(weights, _weight_colors(weights), strict=True):
                g = m[m.weight == w].groupby("epoch").value.agg(["mean", "std"])
                if not g.empty:
                    _band(ax, g.index, g["mean"], g["std"], col, _wlabel(w))
            ax.set_xscale("log")
            ax.set_ylim(0.4, 1.01)
            ax.set_title(f"{key}: {metric.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("epoch")
    axes[0][-1].legend(title="weight", fontsize=6, title_fontsize=7)
    return _save(fig, path)


def imbalanced_curves(df: pd.DataFrame, prefix: str, path: Path) -> Path:
    """Fig. A.6: rows = (sub-sampled class, factor); columns = test / other 8 / noise; solid = unweighted,
    dashed = with the compensating weight; mean +- std over seeds.

    Example:
        >>> # imbalanced_curves(df, "frac_dog", Path("figA6.png"))
    """
    keys = df[["subsampled", "factor"]].drop_duplicates().sort_values(["subsampled", "factor"]).values.tolist()
    fig = Figure(figsize=(11.5, 3.0 * len(keys) + 0.6))
    axes = fig.subplots(len(keys), 3, squeeze=False)
    pos = prefix.removeprefix("frac_")
    for r, (sub, f) in enumerate(keys):
        cell = df[(df.subsampled == sub) & (df.factor == f)]
        for c, (name, label) in enumerate(SETS):
            ax = axes[r][c]
            d = cell[cell.name == f"{prefix}_{name}"]
            for weighted, ls, col in ((False, "-", "C0"), (True, "--", "C3")):
                g = d[d.weighted == weighted].groupby("epoch").value.agg(["mean", "std"])
                if not g.empty:
                    lab = f"weighted (other class x 1/{f:g})" if weighted else "sub-sampling only"
                    _band(ax, g.index, g["mean"], g["std"], col, lab, ls)
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{sub} kept 1/{f:g}: {label}", fontsize=9)
            ax.set_ylabel(f"fraction predicted {pos}")
            ax.set_xlabel("epoch")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Fig. A.6: imbalanced training set, with and without importance weights", fontsize=10)
    return _save(fig, path)


def multiclass_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Weighted accuracy per (rho, weighted class, epoch), mean over seeds, with the unweighted baseline.

    ``baseline`` is the weighted accuracy, under the same test weights, of the unweighted models (the rho =
    0.1 members, all weights equal) with the same seed, computed from their per-class test accuracies
    (``acc_class<c>``; the CIFAR test sets here are class-balanced). ``gain = wacc - baseline``.

    Example:
        >>> # multiclass_frame(iwlab.results.load(run_dir)).groupby(["rho", "epoch"]).gain.mean()
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


def weighted_accuracy_curves(df: pd.DataFrame, cfg: Any, path: Path) -> Path:
    """Fig. 5: weighted test accuracy vs epoch per rho (mean +- std over the weighted classes); with the
    unweighted models present (rho = 0.1), a second panel shows the gain over them.

    Example:
        >>> # weighted_accuracy_curves(df, cfg, Path("fig5.png"))
    """
    t = multiclass_frame(df)
    has_base = t.baseline.notna().any()
    fig = Figure(figsize=(10.5 if has_base else 5.5, 3.8))
    axes = fig.subplots(1, 2 if has_base else 1, squeeze=False)[0]
    rhos = sorted(t.rho.unique())
    for rho, col in zip(rhos, _colors(len(rhos), "viridis"), strict=True):
        g = t[t.rho == rho].groupby("epoch")
        _band(axes[0], g.wacc.mean().index, g.wacc.mean(), g.wacc.std(), col, f"{rho:g}")
        if has_base and abs(rho - 0.1) > 1e-9:
            _band(axes[1], g.gain.mean().index, g.gain.mean(), g.gain.std(), col, f"{rho:g}")
    axes[0].set_ylabel("weighted test accuracy")
    axes[0].set_title("Fig. 5: weighted accuracy (weights as in the loss)", fontsize=9)
    if has_base:
        axes[1].axhline(0, color="k", lw=0.6)
        axes[1].set_ylabel("gain over the unweighted model")
        axes[1].set_title("same test weights, weighted minus unweighted model", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
    axes[0].legend(title="rho", fontsize=7, title_fontsize=7)
    return _save(fig, path)
