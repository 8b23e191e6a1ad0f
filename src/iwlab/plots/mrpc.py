"""Figure of the MRPC experiment (Byrd & Lipton Fig. 6), read from the store.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), so it works headless and in workers.

Example:
    >>> # figure6(iwlab.results.load("runs/mrpc-quick"), Path("fig6.png"))
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

DPI = 110


def _wlabel(w: float) -> str:
    """Weights as powers of 4 where they are (the paper's grid), else plainly."""
    if w == 1:
        return "1"
    k = math.log(w, 4)
    return f"$4^{{{k:g}}}$" if abs(k - round(k)) < 1e-9 else f"{w:g}"


def _colors(weights: list[float]) -> list:
    """Blue for w < 1 (paraphrases down-weighted), red for w > 1, black for no weighting."""
    from matplotlib import colormaps

    cm = colormaps["coolwarm"]
    n = len(weights)
    return ["k" if w == 1 else cm(i / max(n - 1, 1)) for i, w in enumerate(weights)]


def figure6(df: pd.DataFrame, path: Path, title: str = "MRPC") -> Path:
    """Left: fraction of test pairs predicted paraphrase vs epoch, one line per weight (Fig. 6);
    right: test accuracy vs epoch.

    Example:
        >>> # figure6(df, Path("fig6_paraphrase_fraction_vs_epoch.png"))
    """
    fig = Figure(figsize=(9.5, 3.6))
    ax_f, ax_a = fig.subplots(1, 2)
    weights = sorted(df.weight.unique())
    many = df.epoch.max() >= 30  # log axis once there are many epochs, as the early epochs matter most
    for w, col in zip(weights, _colors(weights), strict=True):
        d = df[df.weight == w]
        for ax, metric in ((ax_f, "frac_paraphrase_test"), (ax_a, "test_acc")):
            s = d[d.name == metric].groupby("epoch").value.mean()
            if not s.empty:
                ax.plot(
                    s.index, s.values, color=col, lw=1.4, marker="o" if len(s) < 25 else None, ms=3, label=_wlabel(w)
                )
    for ax, ylabel in ((ax_f, "fraction of test pairs predicted paraphrase"), (ax_a, "test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if many:
            ax.set_xscale("log")
    ax_f.set_title(f"{title}: Fig. 6", fontsize=9)
    ax_a.set_title("test accuracy", fontsize=9)
    ax_f.legend(title="paraphrase weight", fontsize=6, title_fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)
