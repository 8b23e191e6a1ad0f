"""Figures of the ``remedies`` experiment (iwlab issue 15), read from the store: per method, the spread across
weights of the fraction predicted as the down-weighted class (first vs last epoch), that fraction over epochs,
and CIFAR-10-LT top-1 accuracy beside each paper's own number.

Built with ``matplotlib.figure.Figure`` in the shared style (:mod:`iwlab.plots.style`): Okabe-Ito colours for
categories, truncated viridis for the ordered weights, one figure-level legend that says what bars, bands and
markers mean. A part absent from the store, or a metric it did not record, leaves its figure (or panel) out.

Example:
    >>> import tempfile
    >>> [p.name for p in figures(Path(tempfile.mkdtemp()), _toy_frame(), None)]
    ['spread.png', 'fraction_over_epochs.png', 'long_tailed.png']
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from iwlab.experiments.findings import FADED_SPREAD, FITTED_ACC
from iwlab.experiments.remedies_summary import LABELS, PUBLISHED, spreads
from iwlab.plots import style as S

_OI = S.OKABE_ITO
BINARY_PARTS = ("separable", "cifar_catdog")
_PART_TITLE = {"separable": "separable 2-D data (Byrd & Lipton)", "cifar_catdog": "CIFAR-10 cats vs dogs, CNN"}
_METRIC_TITLE = {"frac_down_test": "test points", "frac_down_grid": "grid over the plane"}
# first epoch light, last epoch dark: the pair reads as "before -> after" in grey print too
_FIRST, _LAST = _OI["sky_blue"], _OI["blue"]
_REQUIRED = ("epoch", "name", "value", "part", "method", "weight")
_NUMBER_BOX = {"fc": "white", "ec": "none", "pad": 0.4, "alpha": 0.85}  # a number stays legible over the dashed line
_LEADING_FLOAT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)")


def _label(m: str) -> str:
    return LABELS.get(m, m)


def _ordered(methods: Any) -> list[str]:
    """Methods in :data:`LABELS` order (the summary table's), unknown ones after it, alphabetically."""
    order = list(LABELS)
    return sorted(set(methods), key=lambda m: (order.index(m) if m in order else len(order), m))


def _binary_parts(d: pd.DataFrame) -> list[str]:
    return [p for p in BINARY_PARTS if ((d.part == p) & (d.name == "frac_down_test")).any()]


def _spread(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """Grouped horizontal bars per method: spread across weights at the first and last epoch; one row per part."""
    parts = _binary_parts(d)
    if not parts:
        return None
    metrics = [m for m in _METRIC_TITLE if any(not spreads(d, p, m).empty for p in parts)]
    n_methods = max(d[d.part.isin(parts)].method.nunique(), 1)
    fig = S.new_figure((4.3 * len(metrics) + 1.4, (0.34 * n_methods + 1.0) * len(parts) + 0.9))
    axes = fig.subplots(len(parts), len(metrics), squeeze=False)
    hatched = False
    for i, part in enumerate(parts):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            s = spreads(d, part, metric)
            if s.empty:
                ax.set_axis_off()
                continue
            y = np.arange(len(s))[::-1]  # first method on top
            h = 0.38
            ax.barh(y + h / 2, s.spread_first, height=h, color=_FIRST)
            fitted = s.train_acc.to_numpy() >= FITTED_ACC
            # the verdict needs interpolation: a last-epoch bar of a method that has not fitted is hatched
            hatch = ["" if f else "///" for f in fitted]
            hatched |= not fitted.all()
            ax.barh(y - h / 2, s.spread_last, height=h, color=_LAST, hatch=hatch, edgecolor="white", lw=0)
            for yy, v in zip(y, s.spread_last, strict=True):
                # zero-length bars are invisible: the number says the spread was measured, and is 0
                ax.text(v + 0.01, yy - h / 2, f"{v:.2f}", va="center", fontsize=6.5, color=_LAST, bbox=_NUMBER_BOX)
            ax.axvline(FADED_SPREAD, color=_OI["vermillion"], ls="--", lw=1.1)
            ax.text(
                FADED_SPREAD,
                1.0,
                " survives \u2192",
                transform=ax.get_xaxis_transform(),
                va="bottom",
                fontsize=7,
                color=_OI["vermillion"],
            )
            ax.set_yticks(y, [_label(m) for m in s.method] if j == 0 else [])
            top = float(np.nanmax(s[["spread_first", "spread_last"]].to_numpy(), initial=0.0))
            # room for the numbers right of the bars; a spread is at most 1
            ax.set_xlim(0, min(1.05, max(0.3, 1.12 * top + 0.06)))
            ax.set_ylim(-0.7, len(s) - 0.3)
            ax.set_xlabel(f"spread across weights (epochs {s.first_epoch.min()} and {s.last_epoch.max()})")
            ax.set_title(f"{_PART_TITLE[part]}: {_METRIC_TITLE[metric]}", fontsize=9, pad=12)  # room: "survives"
            ax.grid(axis="x", color="0.9", lw=0.6)
            ax.set_axisbelow(True)
    handles = [
        Patch(color=_FIRST, label="first recorded epoch"),
        Patch(color=_LAST, label="last recorded epoch (number: its spread)"),
        S.line_handle(_OI["vermillion"], f"{FADED_SPREAD:g}: 'survives' threshold", ls="--", lw=1.1),
    ]
    if hatched:
        handles.append(Patch(facecolor=_LAST, hatch="///", edgecolor="white", label=f"train acc < {FITTED_ACC:g}"))
    S.figure_legend(fig, handles, title="spread of the seed-mean fraction predicted as class 1")
    caption = (
        "Per method: spread (max - min) across the weights w of class 1 of the fraction of points predicted as "
        "class 1 (mean over seeds), at the first (light) and last (dark) recorded epoch; left: test points, right "
        "(separable data only): a grid over the plane. Dashed: the 'survives' threshold "
        f"{FADED_SPREAD:g}; a hatched last-epoch bar: some model of that method still has training accuracy below "
        f"{FITTED_ACC:g} (not interpolated, no verdict). Look for: dark bars left of the threshold: the weights' "
        "effect fades with interpolation (Byrd & Lipton 2019, expected for CE + IW); Wang et al. (2022) expect the "
        "poly + IW bars to stay right of it. Methods that ignore w (CE) have no spread."
    )
    return S.save(fig, path, fmt, caption)


def _fraction_panel(ax: Any, g: pd.DataFrame, colors: dict[float, Any]) -> None:
    """One method: seed-mean fraction vs epoch per weight, min-max band over seeds where there are >= 2."""
    n = len(colors)
    for w, gw in g.groupby("weight"):
        a = gw.groupby("epoch").value.agg(["mean", "min", "max", "count"])
        # smallest w drawn first and thickest: lines that coincide (w has no effect) show as nested stripes
        lw = 1.0 + 1.6 * (n - 1 - list(colors).index(float(w))) / max(n - 1, 1)
        ax.plot(a.index, a["mean"], color=colors[float(w)], lw=lw)
        many = a["count"] >= 2
        if many.any():
            ax.fill_between(a.index[many], a["min"][many], a["max"][many], color=colors[float(w)], alpha=0.2, lw=0)


def _fraction_over_epochs(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """Small multiples per binary part: one panel per method, frac_down_test vs epoch (log x), one line per weight."""
    parts = _binary_parts(d)
    if not parts:
        return None
    f = d[d.part.isin(parts) & (d.name == "frac_down_test") & np.isfinite(d.value)]
    colors = S.weight_colors(f.weight.unique())
    ncol = min(5, max(f.groupby("part").method.nunique()))  # 5 columns at most; fewer methods, fewer columns
    rows = [math.ceil(f[f.part == p].method.nunique() / ncol) for p in parts]
    fig = S.new_figure((2.0 * ncol + 0.6, sum(1.75 * r + 0.5 for r in rows) + 0.9))
    subs = np.atleast_1d(fig.subfigures(len(parts), 1, height_ratios=[1.75 * r + 0.5 for r in rows]))
    n = S.n_seeds(f)
    band = S.seed_band_text(n, "range")
    for sub, part, nrow in zip(subs, parts, rows, strict=True):
        p = f[f.part == part]
        ms = _ordered(p.method.unique())
        axes = sub.subplots(nrow, ncol, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, m in zip(axes, ms, strict=False):
            _fraction_panel(ax, p[p.method == m], colors)
            ax.set_title(_label(m), fontsize=8.5)
            ax.set_ylim(-0.03, 1.03)
            ax.grid(color="0.92", lw=0.6)
        for ax in axes[len(ms) :]:
            ax.set_axis_off()
        S.log_axis(axes[0], "x")  # shared: one call sets every panel's log axis
        for k, ax in enumerate(axes[: len(ms)]):
            if k % ncol == 0:
                ax.set_ylabel("frac. pred. class 1", fontsize=8)
            if k >= len(ms) - ncol:
                ax.set_xlabel("epoch", fontsize=8)
                ax.tick_params(labelbottom=True)
        sub.suptitle(f"{_PART_TITLE[part]} ({band})", fontsize=9.5)
    n_w = len(colors)
    handles = [
        S.line_handle(c, S.weight_label(w), lw=1.0 + 1.6 * (n_w - 1 - i) / max(n_w - 1, 1))
        for i, (w, c) in enumerate(colors.items())
    ]
    S.figure_legend(fig, [*handles, S.band_handle(band)], title="weight of class 1 (seed mean)")
    caption = (
        "Fraction of test points predicted as the down-weighted class 1 vs epoch (log axis), one panel per method "
        f"(shared axes), one colour per weight w of class 1 (darkest and thickest: smallest w, so lines that coincide "
        f"show as nested stripes); mean over seeds, {band}. Look "
        "for: lines that start apart (small w: few class-1 predictions) and merge as training goes on mean the "
        "weights' effect fades with interpolation; lines that stay apart mean it survives."
    )
    return S.save(fig, path, fmt, caption)


def published_top1(method: str) -> tuple[float, bool] | None:
    """A paper's CIFAR-10-LT top-1 (%) for ``method`` from :data:`~iwlab.experiments.remedies_summary.PUBLISHED`:
    the leading number of its entry, and whether the entry is verified (no ``unverified`` in it); None if absent.

    Example:
        >>> published_top1("ldam_drw"), published_top1("vs"), published_top1("poly_logit_iw")
        ((77.03, True), (80.82, False), None)
    """
    if method not in PUBLISHED:
        return None
    text = PUBLISHED[method][0]
    m = _LEADING_FLOAT.match(text)
    if m is None:
        return None
    return float(m.group(1)), "unverified" not in text


def _long_tailed(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """Top-1 per method at the last epoch (bars, std error bars over seeds) with each paper's number (marker)."""
    t = d[(d.part == "cifar10_lt") & (d.name == "top1") & np.isfinite(d.value)]
    if t.empty:
        return None
    last = int(t.epoch.max())
    g = t[t.epoch == last].groupby("method").value
    mean, std, count = 100 * g.mean(), 100 * g.std(), g.count()
    ms = _ordered(mean.index)
    n_seed = S.n_seeds(t)
    y = np.arange(len(ms))[::-1]
    fig = S.new_figure((6.4, 0.36 * len(ms) + 1.9))
    ax = fig.subplots()
    err = [std[m] if count[m] >= 2 else 0.0 for m in ms]
    ax.barh(y, [mean[m] for m in ms], height=0.6, color=_OI["blue"], xerr=err, ecolor="0.2", capsize=2.5)
    unverified = False
    for yy, m in zip(y, ms, strict=True):
        pub = published_top1(m)
        if pub is not None:
            unverified |= not pub[1]
            face = _OI["vermillion"] if pub[1] else "white"
            ax.plot([pub[0]], [yy], "D", ms=6, mfc=face, mec=_OI["vermillion"], mew=1.4, zorder=3)
        ax.text(1, yy, f"{mean[m]:.1f}", va="center", fontsize=7, color="white")
    ax.set_yticks(y, [_label(m) for m in ms])
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-1 test accuracy (%)")
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    bars = "mean ± 1 std over seeds" if n_seed >= 2 else "1 seed, no error bar"
    ax.set_title(f"CIFAR-10-LT, imbalance 100, ResNet-32 ({bars})", fontsize=9)
    handles = [
        Patch(color=_OI["blue"], label=f"ours (epochs reached: {last})"),
        S.line_handle(_OI["vermillion"], "paper (200 epochs)", ls="", marker="D", ms=6),
    ]
    if unverified:
        handles.append(
            S.line_handle(_OI["vermillion"], "paper, unverified", ls="", marker="D", ms=6, mfc="white", mew=1.4)
        )
    S.figure_legend(fig, handles)
    caption = (
        f"CIFAR-10-LT (imbalance 100): top-1 test accuracy per method at our last recorded epoch ({last}), "
        f"{bars} (the number in the bar: the mean); diamonds: each paper's own number after 200 epochs "
        "(remedies_summary.PUBLISHED: Cao et al. 2019, Menon et al. 2021; hollow: a number not found in a stored "
        "copy of the paper). Look for: the ordering of the methods (LDAM-DRW and LA above plain CE) and, once "
        "our run reaches 200 epochs, bars that end near their diamonds."
    )
    return S.save(fig, path, fmt, caption)


def _toy_frame() -> pd.DataFrame:
    """A tiny store frame for the doctests: two methods x two weights on the separable part, one LT method."""
    rows = []
    for m in ("ce_iw", "poly_logit_iw"):
        for w in (1.0, 1 / 16):
            for e in (1, 10, 100):
                frac = 0.5 - (0.4 if w < 1 else 0.0) / (e if m == "ce_iw" else 1)
                rows += [("separable", m, w, 0, e, "frac_down_test", frac), ("separable", m, w, 0, e, "train_acc", 1.0)]
    rows += [("cifar10_lt", "ldam_drw", 1.0, s, 2, "top1", 0.7 + 0.01 * s) for s in (0, 1)]
    return pd.DataFrame(rows, columns=["part", "method", "weight", "seed", "epoch", "name", "value"])


def figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fmt: str = "png") -> list[Path]:
    """All figures of a remedies run, written as ``fmt`` under ``run_dir/figures`` with their captions.

    ``spread`` and ``fraction_over_epochs`` (the binary parts ``separable`` and ``cifar_catdog``) and
    ``long_tailed`` (``cifar10_lt``); a figure whose parts or metrics are absent is skipped.

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.store.load`): long form, columns ``epoch``, ``name``, ``value``, ``part``,
            ``method``, ``weight`` (class 1's weight), optionally ``seed`` (bands and error bars over it).
        cfg: its :class:`~iwlab.experiments.remedies.Config` (unused: everything is read from ``df``).
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.

    Returns:
        The files written, in report order (empty when ``df`` is empty).

    Raises:
        ValueError: ``fmt`` is not a known format, or ``df`` lacks a required column.

    Source:
        Byrd & Lipton (2019), the spread across weights; Wang et al. (ICLR 2022); Cao et al. (2019) and Menon
        et al. (2021), the published CIFAR-10-LT numbers.

    Example:
        >>> import tempfile
        >>> figures(Path(tempfile.mkdtemp()), _toy_frame().iloc[:0], None)
        []
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    if df.empty:
        return []
    missing = [c for c in _REQUIRED if c not in df]
    if missing:
        raise ValueError(f"df: missing column(s) {', '.join(missing)}")
    steps = (
        (_spread, "spread"),
        (_fraction_over_epochs, "fraction_over_epochs"),
        (_long_tailed, "long_tailed"),
    )
    out = [fn(df, fig_dir / stem, fmt) for fn, stem in steps]
    return [p for p in out if p is not None]
