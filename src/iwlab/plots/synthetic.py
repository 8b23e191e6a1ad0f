"""Figures of the synthetic experiment (Byrd & Lipton 2019, Figs. 1-3, A.1, A.2), read from the store and
the artifacts its cells saved (:mod:`iwlab.experiments.synthetic`: training sets, decision surfaces).

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state), so they work headless and
inside worker processes, and share :mod:`iwlab.plots.style`: class 0 blue, class 1 vermillion in every
figure, weights on truncated viridis, one figure-level legend that also says what the bands mean.
Separable data come first in every figure.

Example:
    >>> import tempfile
    >>> [p.name for p in figures(Path(tempfile.mkdtemp()), _toy_frame(("frac_down_test",)), Config())]
    ['fraction_vs_epoch.png']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from iwlab.experiments.synthetic import DATASETS, MODELS, Config
from iwlab.plots import style as S
from iwlab.plots.data import CAPTION as DATA_CAPTION
from iwlab.plots.data import (
    CLASS_NAMES,
    cell_artifacts,
    class_label,
    plot_synthetic_datasets,
    surface_figure,
    training_sets,
)

DATASET_ORDER = DATASETS  # separable first: the paper's claim is about it
MODEL_ORDER = MODELS


def _order(values: Any, order: tuple[str, ...]) -> list:
    """``values`` (distinct) in ``order``, unknown ones last in their own sorted order."""
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def surface_figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fig_dir: Path, fmt: str = "png") -> list[Path]:
    """Figures 1, 2, 3, A.1 and A.2 (those whose models and datasets ran), each with its caption.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        surface_figures(run_dir, iwlab.store.load(run_dir), cfg, run_dir / "figures", fmt="pdf")
    """
    S.check_format(fmt)
    decay = max(cfg.weight_decay) if cfg.weight_decay else 0.0
    down = class_label(cfg.down_class, cfg.down_class)
    shading = (
        "Shading: the model's P(class 1) (blue: class 0, vermillion: class 1; colorbar); black line: its decision "
        "boundary; green dashed: logistic regression's; dotted: the max-margin separator. Rows: weight w on "
        f"{down}; columns: epochs (first seed). "
    )
    fades = (
        "Look for: early on, smaller w gives the down-weighted class less of the plane; by the last epoch the "
        "boundaries of different rows nearly coincide, and logistic regression's approaches the max-margin line "
        "(Byrd & Lipton: the effect of the weights fades once the training data are separated)."
    )
    specs = [
        (
            "separable",
            "mlp",
            0.0,
            "fig1_separable_plain",
            "Fig. 1: separable data, MLP and logistic regression, no regularization",
            shading + fades,
        ),
        (
            "separable",
            "mlp",
            decay,
            "fig2_separable_l2",
            f"Fig. 2: same with L2 regularization, weight decay {decay:g}",
            shading + "Look for: with weight decay the rows stay different at the last epoch (L2 keeps the weights' "
            "effect, Byrd & Lipton Fig. 2).",
        ),
        (
            "separable",
            "mlp_dropout",
            0.0,
            "fig3_separable_dropout",
            f"Fig. 3: MLP with dropout {cfg.dropout:g}",
            shading + "Look for: with dropout the rows still converge, as without regularization (dropout does not "
            "keep the effect, Byrd & Lipton Fig. 3).",
        ),
        (
            "moons",
            "mlp",
            0.0,
            "figA1_moons",
            "Fig. A.1: moons (not linearly separable)",
            shading + "Look for: the MLP can separate the moons, so its rows converge late as on separable data; "
            "logistic regression cannot, and its boundary keeps moving with w.",
        ),
        (
            "gaussians",
            "mlp",
            0.0,
            "figA2_gaussians",
            "Fig. A.2: overlapping Gaussians (no model separates them)",
            shading + "Look for: the classes overlap, so the training data are never separated and the paper makes "
            "no fading claim here: the boundary may keep depending on w.",
        ),
    ]
    out = []
    for ds, model, wd, name, title, caption in specs:
        if ds not in cfg.datasets or not (wd == 0.0 or wd in cfg.weight_decay):
            continue
        p = surface_figure(run_dir, df, cfg, ds, model, wd, fig_dir / name, title, fmt=fmt, caption=caption)
        if p is not None:
            out.append(p)
    return out


def _toy_frame(names: tuple[str, ...]) -> pd.DataFrame:
    """A tiny store frame for the doctests: logistic regression on separable data, 2 weights, epochs 1 and 2."""
    rows = [("separable", "logreg", 0.0, w, 0, e, n, 0.4 * w / e) for w in (1.0, 0.25) for e in (1, 2) for n in names]
    return pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "seed", "epoch", "name", "value"])


def _seed_stats(d: pd.DataFrame) -> pd.DataFrame:
    """Per epoch over seeds: mean, std, min, max, n (one value per seed and epoch in ``d``)."""
    return d.groupby("epoch").value.agg(["mean", "std", "min", "max", "count"]).reset_index()


def _curve_panel(ax: Any, d: pd.DataFrame, colors: dict[float, Any], band: str = "std", logy: bool = False) -> None:
    """One line per weight (colour from ``colors``); ``band="std"``: mean ± 1 std over seeds, ``"range"``:
    min to max over seeds (positive on log axes). No band where a weight has one seed."""
    for w in sorted(d.weight.unique(), reverse=True):
        col = colors[float(w)]
        g = _seed_stats(d[d.weight == w])
        ax.plot(g.epoch, g["mean"], color=col, lw=1.3)
        many = g["count"] >= 2
        if many.any():
            lo, hi = (g["mean"] - g["std"], g["mean"] + g["std"]) if band == "std" else (g["min"], g["max"])
            ax.fill_between(g.epoch[many], lo[many], hi[many], color=col, alpha=0.18, lw=0)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")


def _legend_weights(fig: Any, colors: dict[float, Any], band: str, title: str) -> None:
    handles = [S.line_handle(colors[w], S.weight_label(w)) for w in sorted(colors, reverse=True)]
    S.figure_legend(fig, [*handles, S.band_handle(band)], title=title)


def fraction_curves(df: pd.DataFrame, cfg: Any, path: Path, metric: str = "frac_down_test", fmt: str = "png") -> Path:
    """Fraction predicted as the down-weighted class vs epoch (log axis), one line per weight; mean ± 1 std
    over seeds (no band with one seed).

    Rows: datasets (separable first), each on test points and on the grid; columns: model variants
    (model, weight decay).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> df = _toy_frame(("frac_down_test", "frac_down_grid"))
        >>> fraction_curves(df, Config(), Path(tempfile.mkdtemp()) / "fraction_vs_epoch", fmt="svg").name
        'fraction_vs_epoch.svg'
    """
    S.check_format(fmt)
    d = df[df.name.isin([metric, "frac_down_grid"])]
    variants = d[["model", "weight_decay"]].drop_duplicates().values.tolist()
    variants.sort(key=lambda v: (MODEL_ORDER.index(v[0]) if v[0] in MODEL_ORDER else len(MODEL_ORDER), v[1]))
    datasets = _order([ds for ds in cfg.datasets if ds in set(d.dataset)], DATASET_ORDER)
    colors = S.weight_colors(d.weight.unique())
    n_seeds = int(d.seed.nunique()) if "seed" in d else 1
    fig = S.new_figure((3.0 * len(variants) + 0.8, 2.5 * 2 * len(datasets) + 1.4))
    axes = fig.subplots(2 * len(datasets), len(variants), squeeze=False)
    for r, ds in enumerate(datasets):
        for k, (m_name, label) in enumerate(((metric, "test points"), ("frac_down_grid", "grid"))):
            for c, (model, wd) in enumerate(variants):
                ax = axes[2 * r + k][c]
                sel = (d.dataset == ds) & (d.model == model) & (d.weight_decay == wd) & (d.name == m_name)
                _curve_panel(ax, d[sel], colors)
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{ds}: {model}, weight decay {wd:g} ({label})", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"fraction predicted\nclass {cfg.down_class} ({label})", fontsize=8)
                if 2 * r + k == 2 * len(datasets) - 1:
                    ax.set_xlabel("epoch")
    _legend_weights(
        fig,
        colors,
        S.seed_band_text(n_seeds),
        f"weight w on class {cfg.down_class} ({CLASS_NAMES[cfg.down_class]}, the down-weighted class)",
    )
    caption = (
        f"Fraction of test points (and of a grid over the plane) predicted as the down-weighted class "
        f"{cfg.down_class} vs epoch, one line per weight; {S.seed_band_text(n_seeds)}. Look for: in the separable "
        "rows without weight decay (and with dropout) the lines of different weights start apart and converge as "
        "training goes on (the effect fades); with weight decay (L2) they stay apart. The table in Results gives the "
        "verdict per row."
    )
    return S.save(fig, path, fmt, caption)


def angle_curves(df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """Logistic regression on separable data: angle to the max-margin direction (log axis, band min to max
    over seeds) and parameter norm (band mean ± 1 std) vs epoch, one column per weight decay.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> angle_curves(_toy_frame(("angle", "param_norm")), Config(), Path(tempfile.mkdtemp()) / "angle").name
        'angle.png'
    """
    S.check_format(fmt)
    d = df[(df.model == "logreg")]
    decays = sorted(d.weight_decay.unique())
    colors = S.weight_colors(d.weight.unique())
    n_seeds = int(d.seed.nunique()) if "seed" in d else 1
    fig = S.new_figure((3.4 * len(decays) + 0.6, 6.0))
    axes = fig.subplots(2, len(decays), squeeze=False)
    for c, wd in enumerate(decays):
        a = d[(d.weight_decay == wd) & (d.name == "angle")]
        _curve_panel(axes[0][c], a, colors, band="range", logy=True)
        axes[0][c].set_title(f"logistic regression, weight decay {wd:g}", fontsize=9)
        axes[0][c].set_ylabel("angle to max margin (rad)")
        n = d[(d.weight_decay == wd) & (d.name == "param_norm") & (d.dataset == "separable")]
        _curve_panel(axes[1][c], n, colors)
        axes[1][c].set_ylabel("parameter norm")
        axes[1][c].set_xlabel("epoch")
    band = "no band: 1 seed" if n_seeds < 2 else f"band: min to max (angle), mean ± 1 std (norm) over {n_seeds} seeds"
    _legend_weights(fig, colors, band, f"weight w on class {cfg.down_class} (the down-weighted class)")
    caption = (
        "Logistic regression on the separable data: angle between (w, b) and the max-margin direction (log axis) "
        f"and the parameter norm vs epoch, one line per weight; {band}. The angle's band is the min to max over "
        "seeds, so it stays positive on the log axis. Look for: without weight decay the angle falls towards 0 for "
        "every weight while the norm grows (gradient descent converges in direction to the max-margin separator "
        "whatever the weights, Soudry et al. 2018); with weight decay (L2) the norm levels off and the angle stops "
        "falling."
    )
    return S.save(fig, path, fmt, caption)


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config, fmt: str = "png") -> list[Path]:
    """All figures of a synthetic run, from its store and saved artifacts, written as ``fmt`` under
    ``run_dir/figures`` with their captions (``captions.json``, shown in the report).

    The training sets (:func:`~iwlab.plots.data.plot_synthetic_datasets`), Figs. 1, 2, 3, A.1 and A.2
    (:func:`surface_figures`), the fraction predicted as the down-weighted class (:func:`fraction_curves`)
    and, when recorded, logistic regression's angle to the max-margin direction (:func:`angle_curves`).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.store.load`).
        cfg: its :class:`~iwlab.experiments.synthetic.Config`.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Returns:
        The files written, in report order.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        figures(Path("runs/synthetic-quick"), iwlab.store.load("runs/synthetic-quick"), cfg, fmt="svg")
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    out = []
    saved = [p for (_, kind), p in sorted(cell_artifacts(run_dir).items()) if kind == "data"]
    data = training_sets(saved[0]) if saved else {}
    if data:
        data = {ds: data[ds] for ds in cfg.datasets if ds in data}
        out.append(plot_synthetic_datasets(fig_dir / "data", data, seed=cfg.data_seed, fmt=fmt, caption=DATA_CAPTION))
    out += surface_figures(run_dir, df, cfg, fig_dir, fmt=fmt)
    out.append(fraction_curves(df, cfg, fig_dir / "fraction_vs_epoch", fmt=fmt))
    if "angle" in set(df.name):
        out.append(angle_curves(df, cfg, fig_dir / "angle_vs_epoch", fmt=fmt))
    return out
