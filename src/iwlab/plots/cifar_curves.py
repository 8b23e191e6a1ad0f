"""The drawings of the CIFAR-10 figures (Byrd & Lipton 2019, Figs. 4, 5, A.3-A.9), from the store frame.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), so they work headless and in workers,
in the shared style of :mod:`iwlab.plots.style` (weights on truncated viridis, one figure-level legend
that says what the bands mean). Lines are means over seeds, bands one standard deviation (as in the paper);
with one seed there is no band, and the legend says so. :func:`iwlab.plots.cifar.figures` picks and
captions them per experiment.

Example:
    >>> import tempfile
    >>> df = pd.DataFrame({"variant": "plain", "weight": [0.25, 4.0] * 2, "seed": 0, "epoch": [1, 1, 2, 2],
    ...                    "name": "frac_dog_test", "value": [0.2, 0.8, 0.4, 0.6]})
    >>> fraction_curves(df, "frac_dog", Path(tempfile.mkdtemp()) / "fig", "Fig. 4", fmt="svg").suffix
    '.svg'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.experiments.cifar_multiclass import multiclass_frame
from iwlab.plots import style as S

__all__ = ["accuracy_curves", "fraction_curves", "fraction_vs_weight", "imbalanced_curves", "weighted_accuracy_curves"]

SETS = (("test", "test set (2 classes)"), ("other", "other 8 classes"), ("noise", "random noise"))
# evaluation sets and weighted/unweighted lines: colours that are neither class colour
SET_COLORS = (S.OKABE_ITO["black"], S.OKABE_ITO["bluish_green"], S.OKABE_ITO["reddish_purple"])


def _band(ax: Any, x: Any, mean: Any, std: Any, color: Any, ls: str = "-") -> None:
    """Mean line, and mean ± std where the std exists (two or more seeds)."""
    ax.plot(x, mean, color=color, lw=1.3, ls=ls)
    std = np.asarray(std, dtype=float)
    ok = np.isfinite(std)
    if ok.any():
        m = np.asarray(mean, dtype=float)
        ax.fill_between(np.asarray(x)[ok], (m - std)[ok], (m + std)[ok], color=color, alpha=0.15, lw=0)


def _weights_title(classes: tuple[str, str] | None, pos: str) -> str:
    if classes is None:
        return f"{pos} weight w"
    neg, pos = classes
    return f"weight w of {pos} relative to {neg} (w < 1: {pos} down-weighted; w > 1: {neg} down-weighted)"


def _weight_legend(fig: Any, colors: dict[float, Any], band: str, title: str) -> None:
    handles = [S.line_handle(colors[w], S.weight_label(w, base=2)) for w in sorted(colors)]
    S.figure_legend(fig, [*handles, S.band_handle(band)], title=title)


def fraction_curves(
    df: pd.DataFrame,
    prefix: str,
    path: Path,
    title: str,
    fmt: str = "png",
    *,
    classes: tuple[str, str] | None = None,
    weights: list[float] | None = None,
    look_for: str = "",
) -> Path:
    """Fig. 4 (a-c) style: fraction predicted as class 1 vs epoch (log axis) on the test set, the other
    8 classes and noise; one line per weight, mean ± 1 std over seeds. ``df`` holds one variant.

    Args:
        df: metrics of one variant.
        prefix: ``"frac_<class 1>"``.
        path: output path or stem; the suffix becomes ``fmt``.
        title: figure title.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        classes: (class 0, class 1) names, to say which class a weight down-weights.
        weights: every weight of the experiment, so a weight has the same colour in every figure.
        look_for: the caption's "Look for" sentence.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        fraction_curves(df[df.variant == "plain"], "frac_dog", Path("fig4abc"), "Fig. 4 (a-c)")
    """
    S.check_format(fmt)
    fig = S.new_figure((11.5, 4.2))
    axes = fig.subplots(1, 3, squeeze=False)[0]
    colors = S.weight_colors(weights if weights is not None else df.weight.unique())
    pos = prefix.removeprefix("frac_")
    for ax, (name, label) in zip(axes, SETS, strict=True):
        d = df[df.name == f"{prefix}_{name}"]
        for w in sorted(d.weight.unique()):
            g = d[d.weight == w].groupby("epoch").value.agg(["mean", "std"])
            if not g.empty:
                _band(ax, g.index, g["mean"], g["std"], colors[float(w)])
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"fraction predicted {pos}")
    band = S.seed_band_text(S.n_seeds(df))
    _weight_legend(fig, colors, band, _weights_title(classes, pos))
    fig.suptitle(title, fontsize=10)
    caption = (
        f"Fraction of images predicted as {pos} vs epoch (log axis) on the test set, on the other 8 CIFAR-10 classes "
        f"and on random noise; one line per weight; {band}. {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())


def fraction_vs_weight(
    df: pd.DataFrame, prefix: str, variants: list[str], path: Path, title: str, fmt: str = "png", *, look_for: str = ""
) -> Path:
    """Fig. 4 (d-f) style: fraction predicted as class 1 at the last epoch vs weight (log axis), one panel
    per variant, one line per evaluation set; mean ± 1 std over seeds.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        fraction_vs_weight(df, "frac_dog", ["plain", "l2", "dropout"], Path("fig4def"), "Fig. 4 (d-f)")
    """
    S.check_format(fmt)
    fig = S.new_figure((3.6 * len(variants) + 0.4, 3.9))
    axes = fig.subplots(1, len(variants), squeeze=False)[0]
    pos = prefix.removeprefix("frac_")
    for ax, variant in zip(axes, variants, strict=True):
        d = df[(df.variant == variant) & df.name.str.startswith(prefix)]
        if d.empty:
            continue
        last = d[d.epoch == d.epoch.max()]
        for (name, _), col in zip(SETS, SET_COLORS, strict=True):
            g = last[last.name == f"{prefix}_{name}"].groupby("weight").value.agg(["mean", "std"])
            if not g.empty:
                x = np.log2(g.index.to_numpy(dtype=float))
                _band(ax, x, g["mean"], g["std"], col)
                ax.plot(x, g["mean"], "o", color=col, ms=3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{variant}, epoch {int(last.epoch.max())}", fontsize=9)
        ax.set_xlabel(f"log2 {pos} weight")
        ax.set_ylabel(f"fraction predicted {pos}")
    band = S.seed_band_text(S.n_seeds(df))
    handles = [S.line_handle(c, lab, marker="o", ms=3) for (_, lab), c in zip(SETS, SET_COLORS, strict=True)]
    S.figure_legend(fig, [*handles, S.band_handle(band)])
    fig.suptitle(title, fontsize=10)
    caption = (
        f"Fraction predicted as {pos} at the last epoch vs log2 of the {pos} weight, one panel per variant, one line "
        f"per evaluation set; {band}. {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())


def accuracy_curves(df: pd.DataFrame, path: Path, fmt: str = "png", *, look_for: str = "") -> Path:
    """Train and test accuracy vs epoch per variant (or sub-sampling cell), one line per weight, mean ± 1 std
    over seeds.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        accuracy_curves(df, Path("accuracy_vs_epoch"))
    """
    S.check_format(fmt)
    by = "variant" if "subsampled" not in df or df.subsampled.isna().all() else "run_id"
    order = ("plain", "l2", "dropout", "adam", "batchnorm")
    groups = sorted(dict.fromkeys(df[by]), key=lambda g: order.index(g) if g in order else len(order))
    fig = S.new_figure((3.3 * len(groups) + 0.6, 6.2))
    axes = fig.subplots(2, len(groups), squeeze=False)
    colors = S.weight_colors(df.weight.unique())
    for c, key in enumerate(groups):
        d = df[df[by] == key]
        for r, metric in enumerate(("train_acc", "test_acc")):
            ax = axes[r][c]
            m = d[d.name == metric]
            for w in sorted(d.weight.unique()):
                g = m[m.weight == w].groupby("epoch").value.agg(["mean", "std"])
                if not g.empty:
                    _band(ax, g.index, g["mean"], g["std"], colors[float(w)])
            ax.set_xscale("log")
            ax.set_ylim(0.4, 1.01)
            ax.set_title(f"{key}: {metric.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("epoch")
    band = S.seed_band_text(S.n_seeds(df))
    _weight_legend(fig, colors, band, "weight w")
    caption = (
        f"Training (top) and test (bottom) accuracy vs epoch, one column per {by.replace('run_id', 'cell')}, one line "
        f"per weight; {band}. {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())


def imbalanced_curves(df: pd.DataFrame, prefix: str, path: Path, fmt: str = "png", *, look_for: str = "") -> Path:
    """Fig. A.6: rows = (sub-sampled class, factor); columns = test / other 8 / noise; solid = unweighted,
    dashed = with the compensating weight; mean ± 1 std over seeds.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        imbalanced_curves(df, "frac_dog", Path("figA6"))
    """
    S.check_format(fmt)
    keys = df[["subsampled", "factor"]].drop_duplicates().sort_values(["subsampled", "factor"]).values.tolist()
    fig = S.new_figure((11.5, 3.0 * len(keys) + 1.2))
    axes = fig.subplots(len(keys), 3, squeeze=False)
    pos = prefix.removeprefix("frac_")
    styles = ((False, "-", SET_COLORS[0]), (True, "--", SET_COLORS[1]))
    for r, (sub, f) in enumerate(keys):
        cell = df[(df.subsampled == sub) & (df.factor == f)]
        for c, (name, label) in enumerate(SETS):
            ax = axes[r][c]
            d = cell[cell.name == f"{prefix}_{name}"]
            for weighted, ls, col in styles:
                g = d[d.weighted == weighted].groupby("epoch").value.agg(["mean", "std"])
                if not g.empty:
                    _band(ax, g.index, g["mean"], g["std"], col, ls)
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{sub} kept 1/{f:g}: {label}", fontsize=9)
            ax.set_ylabel(f"fraction predicted {pos}")
            ax.set_xlabel("epoch")
    band = S.seed_band_text(S.n_seeds(df))
    handles = [
        S.line_handle(styles[0][2], "sub-sampling only", ls="-"),
        S.line_handle(styles[1][2], "sub-sampling + weight 1/f on the other class", ls="--"),
        S.band_handle(band),
    ]
    S.figure_legend(fig, handles)
    fig.suptitle("Fig. A.6: imbalanced training set, with and without importance weights", fontsize=10)
    caption = (
        f"Fraction predicted as {pos} vs epoch when one class is kept at 1/f of its images (rows), on the test set, "
        f"the other 8 classes and noise (columns); solid: sub-sampling only, dashed: plus the compensating weight; "
        f"{band}. {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())


def weighted_accuracy_curves(df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png", *, look_for: str = "") -> Path:
    """Fig. 5: weighted test accuracy vs epoch per rho (mean ± std over the weighted classes); with the
    unweighted models present (rho = 0.1), a second panel shows the gain over them.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        weighted_accuracy_curves(df, cfg, Path("fig5"))
    """
    S.check_format(fmt)
    t = multiclass_frame(df)
    has_base = t.baseline.notna().any()
    fig = S.new_figure((10.5 if has_base else 5.5, 4.4))
    axes = fig.subplots(1, 2 if has_base else 1, squeeze=False)[0]
    rhos = sorted(t.rho.unique())
    colors = dict(zip(rhos, S.ordered_colors(len(rhos)), strict=True))
    n_classes = int(t.weighted_class.nunique()) if not t.empty else 0
    for rho in rhos:
        g = t[t.rho == rho].groupby("epoch")
        _band(axes[0], g.wacc.mean().index, g.wacc.mean(), g.wacc.std(), colors[rho])
        if has_base and abs(rho - 0.1) > 1e-9:
            _band(axes[1], g.gain.mean().index, g.gain.mean(), g.gain.std(), colors[rho])
    axes[0].set_ylabel("weighted test accuracy")
    axes[0].set_title("Fig. 5: weighted accuracy (weights as in the loss)", fontsize=9)
    if has_base:
        axes[1].axhline(0, color="k", lw=0.6)
        axes[1].set_ylabel("gain over the unweighted model")
        axes[1].set_title("same test weights, weighted minus unweighted model", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
    band = (
        f"band: mean ± 1 std over the {n_classes} weighted classes"
        if n_classes >= 2
        else f"no band: {n_classes} weighted class"
    )
    handles = [S.line_handle(colors[r], f"{r:g}") for r in rhos]
    S.figure_legend(fig, [*handles, S.band_handle(band)], title="rho (weight of the weighted class)")
    caption = (
        "Weighted test accuracy vs epoch (each test example weighted as in the loss: rho for the weighted class, "
        f"(1 - rho)/9 for the others), one line per rho; {band}"
        + ("; right: gain over the unweighted (rho = 0.1) models under the same test weights" if has_base else "")
        + f". {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())
