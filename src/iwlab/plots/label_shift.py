"""Figures of the ``label_shift`` experiment, read from the store: estimator error vs target sample size, and
target accuracy per correction vs epoch.

Built with ``matplotlib.figure.Figure`` in the shared style (:mod:`iwlab.plots.style`): Okabe-Ito colours,
one figure-level legend that also says what the bands mean. Corrections: black = none, blue = post-hoc,
vermillion = IW-ERM; solid = estimated w, dashed = true w.

Example:
    >>> figures.__name__  # figures(run_dir, iwlab.results.load(run_dir), cfg) draws them from a finished run
    'figures'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iwlab.experiments.label_shift import Config
from iwlab.experiments.label_shift_summary import CORRECTION_TEXT, correction_frame, estimator_frame
from iwlab.plots import style as S

CORRECTION_STYLE = {
    "none": (S.OKABE_ITO["black"], "-"),
    "posthoc_est": (S.OKABE_ITO["blue"], "-"),
    "posthoc_true": (S.OKABE_ITO["blue"], "--"),
    "iw_est": (S.OKABE_ITO["vermillion"], "-"),
    "iw_true": (S.OKABE_ITO["vermillion"], "--"),
}
_ESTIMATOR_COLORS = ("blue", "vermillion", "bluish_green", "reddish_purple", "orange", "sky_blue", "black")


# estimator names as the docs write them
DISPLAY = {
    "bbse_hard": "BBSE hard",
    "bbse_soft": "BBSE soft",
    "rlls": "RLLS",
    "mlls": "MLLS (no calibration)",
    "mlls_bcts": "MLLS + BCTS",
}


def _band_text(counts: pd.Series, log: bool = False) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    if hi < 2:
        return "no band: one seed x shift per point"
    span = f"{lo}" if lo == hi else f"{lo} to {hi}"
    what = "log-normal band (geometric mean ×/÷ geometric std) with the mean and std" if log else "mean ± 1 std"
    return f"band: {what} over the seeds x shifts of a point ({span})"


def mse_figure(df: pd.DataFrame, path: Path, fmt: str = "png") -> Path | None:
    """MSE of each estimator's w vs target sample size, log-log, one panel per shift family (last epoch).

    Lines: mean over seeds x shifts; bands: the log-normal band with that mean and std
    (:func:`~iwlab.plots.style.lognormal_band`, positive on the log axis). Black dashed: the target
    sample's own label-frequency ratio ("empirical"), the sampling noise. None when nothing was recorded.

    Example:
        >>> import tempfile
        >>> df = pd.DataFrame({"family": "f", "shift": "s", "seed": [0, 0, 1, 1], "epoch": 3,
        ...                    "name": ["mse_bbse_hard_n10", "mse_bbse_hard_n30"] * 2, "value": [0.5, 0.2, 0.4, 0.1]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     mse_figure(df, Path(d) / "mse").suffix
        '.png'
    """
    S.check_format(fmt)
    e = estimator_frame(df)
    if e.empty:
        return None
    fams = list(dict.fromkeys(e.family))
    ests = [x for x in dict.fromkeys(e.estimator) if x != "empirical"]
    colors = {x: S.OKABE_ITO[_ESTIMATOR_COLORS[i % len(_ESTIMATOR_COLORS)]] for i, x in enumerate(ests)}
    fig = S.new_figure((3.2 * len(fams) + 0.6, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(fams), sharey=True))
    for ax, fam in zip(axes, fams, strict=True):
        for est in [*ests, "empirical"]:
            g = e[(e.family == fam) & (e.estimator == est)].sort_values("n")
            if g.empty:
                continue
            col, ls = (S.OKABE_ITO["black"], "--") if est == "empirical" else (colors[est], "-")
            ax.plot(g.n, g["mean"], color=col, ls=ls, marker="o", ms=3, lw=1.4)
            if g["count"].min() >= 2:
                lo, hi = S.lognormal_band(g["mean"], g["std"].fillna(0.0))
                ax.fill_between(g.n, lo, hi, color=col, alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("target sample size n")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("MSE of w (mean over classes)")
    handles = [S.line_handle(colors[x], DISPLAY.get(x, x), marker="o", ms=3) for x in ests]
    handles += [S.line_handle(S.OKABE_ITO["black"], "empirical (sampling noise)", ls="--")]
    S.figure_legend(fig, [*handles, S.band_handle(_band_text(e["count"], log=True))], title="estimator")
    caption = (
        "Mean squared error of the estimated importance weights against the true w = q/p vs the number of unlabeled "
        "target examples, log-log, at the last epoch; one panel per shift family. Look for: errors falling roughly "
        "as 1/n (slope -1) and MLLS with BCTS calibration at or below BBSE/RLLS (Alexandari et al. 2020), all near "
        "the black dashed sampling-noise line for large n. RLLS with its default regularization often coincides "
        "with BBSE hard and hides its line."
    )
    return S.save(fig, path, fmt, caption=caption)


def accuracy_figure(df: pd.DataFrame, path: Path, fmt: str = "png") -> Path | None:
    """Target accuracy per correction vs epoch, one panel per shift family, plus the training accuracy of the
    source model and the class-weighted one of the IW-ERM models (all shifts). Lines: mean over seeds x shifts;
    bands: mean ± 1 std.

    Example:
        >>> import tempfile
        >>> df = pd.DataFrame({"family": "f", "shift": "s", "seed": 0, "epoch": [1, 2] * 2,
        ...                    "name": ["acc_none"] * 2 + ["train_acc_source"] * 2, "value": [.5, .6, .7, .9]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     accuracy_figure(df, Path(d) / "acc").suffix
        '.png'
    """
    S.check_format(fmt)
    c = correction_frame(df)
    if c.empty:
        return None
    fams = list(dict.fromkeys(c.family))
    fig = S.new_figure((3.0 * (len(fams) + 1) + 0.6, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(fams) + 1))
    many = c.epoch.max() >= 30
    for ax, fam in zip(axes[:-1], fams, strict=True):
        for corr, (col, ls) in CORRECTION_STYLE.items():
            g = c[(c.family == fam) & (c.correction == corr)].sort_values("epoch")
            if g.empty:
                continue
            ax.plot(g.epoch, g.acc, color=col, ls=ls, lw=1.4)
            sd = g.acc_std.to_numpy(dtype=float)
            ok = np.isfinite(sd)
            if ok.any():
                ax.fill_between(g.epoch[ok], (g.acc - sd)[ok], (g.acc + sd)[ok], color=col, alpha=0.1, lw=0)
        ax.set_title(fam, fontsize=9)
        ax.set_ylabel("target accuracy", fontsize=8)
    ax_t = axes[-1]
    fam = fams[-1]  # "all shifts" when there are several families
    for corr in ("none", "iw_est", "iw_true"):
        g = c[(c.family == fam) & (c.correction == corr)].sort_values("epoch")
        col, ls = CORRECTION_STYLE[corr]
        ax_t.plot(g.epoch, g.train_acc if corr == "none" else g.train_wacc, color=col, ls=ls, lw=1.4)
    ax_t.set_title(f"training accuracy ({fam})", fontsize=9)
    ax_t.set_ylabel("training accuracy (IW-ERM: weighted by w)", fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if many:
            ax.set_xscale("log")
    handles = [S.line_handle(col, CORRECTION_TEXT[k], ls=ls) for k, (col, ls) in CORRECTION_STYLE.items()]
    S.figure_legend(
        fig,
        [*handles, S.band_handle(_band_text(c["count"]))],
        title="correction (training-accuracy panel: black = source model, red = IW-ERM models)",
    )
    caption = (
        "Target accuracy of each correction vs training epoch (log axis for long runs), one panel per shift family; "
        "right: training accuracy (of the IW-ERM models with each example weighted by its class weight: what they are "
        "weighted to fit), to see when the models interpolate. Look for: IW-ERM (red) ahead of no correction "
        "(black) early and falling back to it once training accuracy reaches 1 (Byrd & Lipton 2019), while "
        "post-hoc correction (blue) keeps its gain."
    )
    return S.save(fig, path, fmt, caption=caption)


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config, fmt: str = "png") -> list[Path]:
    """The estimator-error and accuracy figures, saved as ``fmt`` under ``run_dir/figures`` with their captions.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     figures(Path(d), pd.DataFrame(), Config())
        []
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    if df.empty:
        return []
    out = [
        mse_figure(df, fig_dir / "label_shift_mse_vs_target_size", fmt),
        accuracy_figure(df, fig_dir / "label_shift_target_accuracy_vs_epoch", fmt),
    ]
    return [p for p in out if p is not None]
