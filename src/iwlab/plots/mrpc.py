"""Figure of the MRPC experiment (Byrd & Lipton Fig. 6), read from the store.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), so it works headless and in workers, in
the shared style of :mod:`iwlab.plots.style`: weights on truncated viridis (no light grey line, whatever the
number of weights), one figure-level legend that also says what the bands mean.

Example:
    >>> # figure6(iwlab.results.load("runs/mrpc-quick"), Path("fig6"), fmt="svg")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iwlab.plots import style as S


def _wlabel(w: float) -> str:
    """Weights as powers of 4 where they are (the paper's grid), else plainly."""
    return S.weight_label(w, base=4)


def figure6(df: pd.DataFrame, path: Path, title: str = "MRPC", fmt: str = "png", *, look_for: str = "") -> Path:
    """Left: fraction of test pairs predicted paraphrase vs epoch, one line per weight (Fig. 6);
    right: test accuracy vs epoch. Lines: mean over seeds; band: mean ± 1 std where there are two or more.

    Args:
        df: the run's metrics (:func:`iwlab.results.load`).
        path: output path or stem; the suffix becomes ``fmt``.
        title: panel title prefix.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        look_for: the caption's "Look for" sentence.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # figure6(df, Path("fig6_paraphrase_fraction_vs_epoch"))
    """
    S.check_format(fmt)
    fig = S.new_figure((9.5, 4.3))
    ax_f, ax_a = fig.subplots(1, 2)
    colors = S.weight_colors(df.weight.unique())
    many = df.epoch.max() >= 30  # log axis once there are many epochs, as the early epochs matter most
    n_seeds = int(df.seed.nunique()) if "seed" in df and df.seed.notna().any() else 1
    for w, col in colors.items():
        d = df[df.weight == w]
        for ax, metric in ((ax_f, "frac_paraphrase_test"), (ax_a, "test_acc")):
            s = d[d.name == metric].groupby("epoch").value.agg(["mean", "std"])
            if s.empty:
                continue
            ax.plot(s.index, s["mean"], color=col, lw=1.4, marker="o" if len(s) < 25 else None, ms=3)
            sd = s["std"].to_numpy(dtype=float)
            ok = np.isfinite(sd)
            if ok.any():
                m = s["mean"].to_numpy(dtype=float)
                ax.fill_between(s.index[ok], (m - sd)[ok], (m + sd)[ok], color=col, alpha=0.15, lw=0)
    for ax, ylabel in ((ax_f, "fraction of test pairs predicted paraphrase"), (ax_a, "test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if many:
            ax.set_xscale("log")
    ax_f.set_title(f"{title}: Fig. 6", fontsize=9)
    ax_a.set_title("test accuracy", fontsize=9)
    band = S.seed_band_text(n_seeds)
    handles = [S.line_handle(colors[w], _wlabel(w), marker="o", ms=3) for w in sorted(colors)]
    S.figure_legend(
        fig,
        [*handles, S.band_handle(band)],
        title="paraphrase weight w (w < 1: paraphrases down-weighted; w > 1: non-paraphrases down-weighted)",
    )
    caption = (
        "Left: fraction of test pairs predicted paraphrase vs epoch, one line per paraphrase weight; right: test "
        f"accuracy; {band}. {look_for}"
    )
    return S.save(fig, path, fmt, caption.strip())
