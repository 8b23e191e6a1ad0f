"""Figure of the MRPC experiment (Byrd & Lipton Fig. 6), read from the store.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), so it works headless and in workers, in
the shared style of :mod:`iwlab.plots.style`: weights on truncated viridis (no light grey line, whatever the
number of weights), one figure-level legend that also says what the bands mean.

Example:
    >>> figures.__name__  # figures(run_dir, iwlab.results.load(run_dir), cfg) draws them from a finished run
    'figures'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iwlab.experiments.mrpc import Config
from iwlab.plots import style as S


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
        >>> import tempfile
        >>> df = pd.DataFrame({"weight": [1.0, 1.0, 0.25, 0.25], "epoch": [1, 2, 1, 2], "seed": 0,
        ...                    "name": ["frac_paraphrase_test"] * 4, "value": [0.5, 0.6, 0.2, 0.5]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     figure6(df, Path(d) / "fig6").suffix
        '.png'
    """
    S.check_format(fmt)
    fig = S.new_figure((9.5, 4.3))
    ax_f, ax_a = fig.subplots(1, 2)
    colors = S.weight_colors(df.weight.unique())
    many = df.epoch.max() >= 30  # log axis once there are many epochs, as the early epochs matter most
    n_seeds = S.n_seeds(df)
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
    handles = [S.line_handle(colors[w], S.weight_label(w, base=4), marker="o", ms=3) for w in sorted(colors)]
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


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config, fmt: str = "png") -> list[Path]:
    """Figure 6 (fraction of test pairs predicted paraphrase vs epoch) and test accuracy, from the store, saved
    as ``fmt`` under ``run_dir/figures`` with its caption (``captions.json``, shown in the report).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.results.load`).
        cfg: its :class:`Config`.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

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
    look = (
        "Look for: the lines of different weights start apart and converge once the training pairs are fitted (Byrd "
        "& Lipton Fig. 6: over about 100 epochs with BERT-base); test accuracy stays similar across weights."
    )
    path = fig_dir / "fig6_paraphrase_fraction_vs_epoch"
    return [figure6(df, path, title=f"MRPC, {cfg.model}", fmt=fmt, look_for=look)]
