"""The one figure style of iwlab: colour-blind-safe colours, weight labels, bands, one legend, saving.

Every figure module draws with these, so a class, a weight or a method has the same colour in every
figure, and no line is drawn in a colour that vanishes on white (light grey, yellow).

* Categorical colours: the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), without its
  yellow, which is too light on white.
* Ordered weights: viridis truncated to ``[0, 0.8]`` (dark purple to green; its light yellow end is cut),
  perceptually uniform and ordered in lightness, so it stays readable for deuteranopes and in grey print.
* Classes: class 0 blue, class 1 vermillion, in every figure; decision surfaces shade from one to the
  other through white, and boundaries are drawn in colours that are on neither (black, bluish green).

Figures use ``layout="constrained"`` and one figure-level legend. :func:`save` writes png, pdf or svg
and records the figure's caption in ``captions.json`` next to it, which :func:`iwlab.report.render_report`
shows under the image.

Example:
    >>> weight_label(0.25), weight_label(4.0, base=2), weight_label(2.0)
    ('1/4', '$2^{2}$', '2')
    >>> seed_band_text(1), seed_band_text(3)
    ('no band: 1 seed', 'band: mean ± 1 std over 3 seeds')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

# the caption file is shared with the report, a sibling layer: it lives in the store (see store.captions)
from iwlab.store.captions import CAPTIONS_FILE, read_captions, write_caption

__all__ = [
    "BOUNDARY_COLOR",
    "CAPTIONS_FILE",
    "CLASS_COLORS",
    "DPI",
    "FORMATS",
    "OKABE_ITO",
    "PALETTE",
    "band_handle",
    "check_format",
    "class_cmap",
    "figure_legend",
    "line_handle",
    "lognormal_band",
    "new_figure",
    "ordered_colors",
    "read_captions",
    "save",
    "seed_band_text",
    "weight_colors",
    "weight_label",
]

FORMATS = ("png", "pdf", "svg")
DPI = 110
LEGEND_FONTSIZE = 8

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
# categorical colours, in the order they are handed out; yellow is left out (it vanishes on white)
PALETTE = tuple(OKABE_ITO[k] for k in ("black", "blue", "vermillion", "bluish_green", "reddish_purple", "orange"))
CLASS_COLORS = (OKABE_ITO["blue"], OKABE_ITO["vermillion"])  # class 0, class 1: the same in every figure
BOUNDARY_COLOR = OKABE_ITO["bluish_green"]  # on neither class colour nor the white between them
SEQUENTIAL_CMAP = "viridis"
SEQUENTIAL_RANGE = (0.0, 0.8)  # viridis above 0.8 turns light yellow, which vanishes on white


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`, else a one-line ``ValueError``.

    Raises:
        ValueError: ``fmt`` is not ``"png"``, ``"pdf"`` or ``"svg"``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: figure format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def figure_dir(run_dir: str | Path, fmt: str) -> Path:
    """``run_dir/figures``, created, after checking ``fmt``: the start of every experiment's ``figures``.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     figure_dir(d, "svg").name
        'figures'
    """
    check_format(fmt)
    out = Path(run_dir) / "figures"
    out.mkdir(exist_ok=True)
    return out


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A headless figure (no pyplot state) with constrained layout, so a figure legend and colorbar fit."""
    return Figure(figsize=figsize, layout="constrained")


def ordered_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` RGBA colours along truncated viridis, darkest first (for ordered values such as weights)."""
    cm = colormaps[SEQUENTIAL_CMAP]
    lo, hi = SEQUENTIAL_RANGE
    return [cm(lo + (hi - lo) * i / max(n - 1, 1)) for i in range(n)]


def weight_colors(weights: Iterable[float]) -> dict[float, tuple[float, float, float, float]]:
    """One colour per distinct weight, by rank (smallest weight darkest), so a weight keeps its colour in
    every panel of a figure even where some weights are missing from a panel.

    Example:
        >>> sorted(weight_colors([1.0, 0.25, 1.0]))
        [0.25, 1.0]
    """
    ws = sorted({float(w) for w in weights})
    return dict(zip(ws, ordered_colors(len(ws)), strict=True))


def weight_label(w: float, base: int | None = None) -> str:
    """Exact, short label of a weight: ``base``-powers as ``$b^{k}$`` when ``base`` is given, ``1/k`` for
    reciprocals of integers, integers plainly, anything else with 4 significant digits.

    Raises:
        ValueError: ``w`` is not positive and finite.

    Example:
        >>> [weight_label(w) for w in (1.0, 0.5, 1 / 256, 2.0, 0.3)]
        ['1', '1/2', '1/256', '2', '0.3']
        >>> weight_label(1 / 16, base=4)
        '$4^{-2}$'
    """
    w = float(w)
    if not (w > 0 and math.isfinite(w)):
        raise ValueError(f"w: a weight must be positive and finite, got {w}")
    if w == 1:
        return "1"
    if base is not None:
        k = math.log(w) / math.log(base)
        if abs(k - round(k)) < 1e-9:
            return f"${base}^{{{round(k)}}}$"
    if w < 1 and abs(1 / w - round(1 / w)) < 1e-9 * (1 / w):
        return f"1/{round(1 / w)}"
    if abs(w - round(w)) < 1e-9 * w:
        return f"{round(w)}"
    return f"{w:.4g}"


def class_cmap() -> Any:
    """Colormap for P(class 1): class 0's colour at 0, white at 0.5, class 1's colour at 1."""
    return LinearSegmentedColormap.from_list("iwlab_classes", [CLASS_COLORS[0], "#FFFFFF", CLASS_COLORS[1]])


def seed_band_text(n_seeds: int, kind: str = "std") -> str:
    """What a band over seeds means, for the legend: ``kind="std"`` (mean ± 1 std, linear axes) or
    ``"range"`` (min to max over seeds: quantiles, so it stays positive on log axes)."""
    if n_seeds < 2:
        return f"no band: {n_seeds} seed"
    if kind == "range":
        return f"band: min to max over {n_seeds} seeds"
    return f"band: mean ± 1 std over {n_seeds} seeds"


def log_axis(ax: Any, which: str = "y") -> None:
    """A log scale labelled in plain numbers (``0.5``, ``2``, ``50``, not ``5×10⁻¹``); call it after plotting.

    Ticks at 1, 2 and 5 per decade when the data span at most 2 decades, else one per decade. Matplotlib
    labels the minor ticks of a log axis that spans less than a decade in scientific notation, which
    overlap when the ticks are close; here only the major ticks are labelled.

    Example:
        >>> ax = new_figure((3, 2)).subplots()
        >>> log_axis(ax, "y")
        >>> ax.get_yscale()
        'log'
    """
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    box = ax.dataLim  # the drawn data's extent (not the view, which autoscaling sets later)
    lo, hi = (box.y0, box.y1) if which == "y" else (box.x0, box.x1)
    # 1, 2 and 5 per decade over a short range; over more than 2 decades they would crowd: decades only
    short = bool(np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi / lo <= 100)
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def integer_ticks(ax: Any, which: str = "x") -> None:
    """Ticks only at whole numbers (epochs), never at 1.25 or 1.5.

    Example:
        >>> ax = new_figure((3, 2)).subplots()
        >>> integer_ticks(ax)
    """
    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def n_seeds(df: Any) -> int:
    """How many seeds a metric frame holds (1 when it has no seed column or no seed).

    Example:
        >>> import pandas as pd
        >>> n_seeds(pd.DataFrame({"seed": [0, 0, 1]})), n_seeds(pd.DataFrame())
        (2, 1)
    """
    return int(df.seed.nunique()) if "seed" in df and df.seed.notna().any() else 1


def band_handle(text: str) -> Patch:
    """A grey legend entry that says what the bands of a figure mean (an empty one for "no band: ...")."""
    if text.startswith("no band"):
        return Patch(facecolor="none", edgecolor="none", label=text)
    return Patch(facecolor="0.5", alpha=0.3, edgecolor="none", label=text)


def line_handle(color: Any, label: str, **kw: Any) -> Line2D:
    """A legend entry for a line drawn elsewhere (one legend per figure, built from explicit handles)."""
    return Line2D([], [], color=color, label=label, **{"lw": 1.5, **kw})


def lognormal_band(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """Band of a positive quantity given its mean and std: the log-normal with those moments, geometric
    mean ×/÷ geometric std (``s² = ln(1 + std²/mean²)``, ``g = mean / sqrt(1 + std²/mean²)``,
    band ``[g e^-s, g e^s]``). It is positive wherever ``mean > 0``, so it never dips below zero on a log axis.

    Args:
        mean: array-like, any shape, > 0 where a band is wanted (NaN elsewhere).
        std: array-like, broadcastable to ``mean``, >= 0.

    Returns:
        ``(lo, hi)``, float64 arrays of ``mean``'s shape; NaN where ``mean <= 0`` or either is not finite.

    Example:
        >>> lo, hi = lognormal_band([1.0], [0.0]); float(lo[0]), float(hi[0])
        (1.0, 1.0)
    """
    m = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.0 + (sd / m) ** 2
        s = np.sqrt(np.log(r))
        g = m / np.sqrt(r)
        ok = (m > 0) & np.isfinite(m) & np.isfinite(sd) & (sd >= 0)
        lo = np.where(ok, g * np.exp(-s), np.nan)
        hi = np.where(ok, g * np.exp(s), np.nan)
    return lo, hi


def _fitting_columns(labels: Sequence[str], width_in: float) -> int:
    """Most legend columns that fit across ``width_in`` inches. matplotlib fills columns top to bottom, and a
    column is as wide as its longest label (about 0.065 in per character at 8 pt) plus the line sample."""
    n = len(labels)
    for ncol in range(n, 1, -1):
        rows = math.ceil(n / ncol)
        cols = [labels[j * rows : (j + 1) * rows] for j in range(ncol)]
        need = sum(0.6 + 0.065 * max(len(lb) for lb in col) for col in cols if col)
        if need <= width_in - 0.3:
            # balance the rows: 10 labels that fit 9 to a row read better as 2 rows of 5 than as 9 + 1
            return math.ceil(n / math.ceil(n / ncol))
    return 1


def figure_legend(
    fig: Figure,
    handles: Sequence[Any],
    *,
    title: str | None = None,
    ncol: int | None = None,
    loc: str = "outside lower center",
) -> Legend:
    """The figure's one legend, outside the panels (below them by default), in a readable size."""
    labels = [h.get_label() for h in handles]
    if ncol is None:
        ncol = _fitting_columns(labels, fig.get_figwidth())
    return fig.legend(
        handles,
        labels,
        loc=loc,
        ncol=ncol,
        title=title,
        fontsize=LEGEND_FONTSIZE,
        title_fontsize=LEGEND_FONTSIZE,
        frameon=False,
    )


def save(fig: Figure, path: str | Path, fmt: str = "png", caption: str | None = None) -> Path:
    """Write ``fig`` as ``<stem>.<fmt>`` (a ``.png``/``.pdf``/``.svg`` suffix on ``path`` is replaced) and
    record ``caption`` under the file's name in ``captions.json`` in the same folder.

    pdf and svg are written without a creation date, so the same figure gives the same bytes.

    Args:
        fig: the figure.
        path: output path or stem; parent folders are created.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        caption: what the figure shows and what to look for (shown under it in the report).

    Returns:
        The path written.

    Raises:
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    check_format(fmt)
    path = Path(path)
    if path.suffix.lower() in tuple(f".{f}" for f in FORMATS):
        path = path.with_suffix("")
    out = path.parent / f"{path.name}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    # bbox_inches="tight": a figure legend wider than the figure is grown into, never clipped
    fig.savefig(out, dpi=DPI, format=fmt, metadata=metadata, bbox_inches="tight", pad_inches=0.05)
    if caption:
        write_caption(out.parent, out.name, caption)
    return out
