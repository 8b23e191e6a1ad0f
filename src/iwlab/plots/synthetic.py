"""Figures of the synthetic experiment (Byrd & Lipton 2019, Figs. 1-3, A.1, A.2), read from the store and
the saved decision surfaces.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state), so they work headless and
inside worker processes, and share :mod:`iwlab.plots.style`: class 0 blue, class 1 vermillion in every
figure, weights on truncated viridis, one figure-level legend that also says what the bands mean.
Separable data come first in every figure.

Example:
    >>> # fraction_curves(iwlab.results.load(run_dir), cfg, Path("fraction_vs_epoch"), fmt="svg")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.plots import style as S

CLASS_NAMES = ("negatives", "positives")  # y = 0 and y = 1 in iwlab.data.synthetic
DATASET_ORDER = ("separable", "moons", "gaussians")  # separable first: the paper's claim is about it
MODEL_ORDER = ("logreg", "mlp", "mlp_dropout")
MODEL_NAMES = {"logreg": "logistic regression", "mlp": "MLP", "mlp_dropout": "MLP with dropout"}


def _order(values: Any, order: tuple[str, ...]) -> list:
    """``values`` (distinct) in ``order``, unknown ones last in their own sorted order."""
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def _class_name(c: int, down: int) -> str:
    return f"class {c} ({CLASS_NAMES[c]}{', down-weighted' if c == down else ''})"


def _pick_weights(weights: list[float], k: int = 5) -> list[float]:
    ws = sorted(weights, reverse=True)
    if len(ws) <= k:
        return ws
    idx = np.unique(np.round(np.linspace(0, len(ws) - 1, k)).astype(int))
    return [ws[i] for i in idx]


def _load_surfaces(run_dir: Path, model: str) -> tuple[dict[int, np.ndarray], Any] | None:
    d = run_dir / "artifacts" / model
    if not (d / "grid.npz").exists():
        return None
    meta = np.load(d / "grid.npz")
    surf = {int(e): np.load(d / f"surface_e{int(e)}.npy").astype(np.float32) for e in meta["epochs"]}
    return surf, meta


def _member_index(df: pd.DataFrame, dataset: str, model: str, weight: float, l2: float, seed: int) -> int | None:
    m = df[(df.dataset == dataset) & (df.model == model) & (df.weight == weight) & (df.l2 == l2) & (df.seed == seed)]
    return None if m.empty else int(m.member.iloc[0])


def surface_figure(
    run_dir: Path,
    df: pd.DataFrame,
    cfg: Any,
    dataset: str,
    model: str,
    l2: float,
    path: Path,
    title: str,
    fmt: str = "png",
    caption: str | None = None,
) -> Path | None:
    """Rows = weights, columns = snapshot epochs: the model's P(class 1) as shading (class 0 blue, white
    at 0.5, class 1 vermillion; colorbar), its decision boundary (black), the logistic-regression boundary
    (bluish green, dashed, when that model ran) and the max-margin separator (black dotted, separable data).

    Args:
        run_dir: the run folder (surfaces under ``artifacts/<model>/``).
        df: the run's metrics (:func:`iwlab.results.load`).
        cfg: the synthetic :class:`~iwlab.experiments.synthetic.Config`.
        dataset, model, l2: which members to show (first seed).
        path: output path or stem; the suffix becomes ``fmt``.
        title: figure title.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        caption: caption for the report.

    Returns:
        The file written, or None when that model or dataset did not run.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # surface_figure(run_dir, df, cfg, "separable", "mlp", 0.0, Path("fig1"), "Figure 1", fmt="svg")
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from iwlab.experiments.synthetic import _data

    S.check_format(fmt)
    loaded = _load_surfaces(run_dir, model)
    if loaded is None:
        return None
    surf, meta = loaded
    lr_loaded = _load_surfaces(run_dir, "logreg") if model != "logreg" else None
    x, y, _, _ = _data(cfg, dataset)
    size = int(meta["size"])
    epochs = sorted(surf)
    members = df[["run_id", "member", "dataset", "model", "weight", "l2", "seed"]].drop_duplicates()
    first = _member_index(members, dataset, model, members[members.dataset == dataset].weight.max(), l2, cfg.seed)
    if first is None:
        return None
    x0, x1, y0, y1 = meta["boxes"][first].tolist()
    weights = _pick_weights(sorted(members[members.dataset == dataset].weight.unique().tolist()))
    seed = cfg.seed
    down = cfg.down_class
    svm = None
    try:
        from iwlab.implicit_bias import max_margin_separator

        svm = max_margin_separator(x, y, bias="homogeneous")
    except ValueError:
        pass
    cmap = S.class_cmap()
    fig = S.new_figure((2.2 * len(epochs) + 1.6, 2.2 * len(weights) + 1.6))
    axes = fig.subplots(len(weights), len(epochs), squeeze=False)
    gx = np.linspace(x0, x1, size)
    gy = np.linspace(y0, y1, size)
    xn, yn = x.numpy(), y.numpy()
    point_colors = np.array(S.CLASS_COLORS)[yn.astype(int)]
    drew_lr = False
    for r, w in enumerate(weights):
        mi = _member_index(members, dataset, model, w, l2, seed)
        li = _member_index(members, dataset, "logreg", w, l2, seed) if lr_loaded else None
        for c, e in enumerate(epochs):
            ax = axes[r][c]
            if mi is not None:
                ax.contourf(gx, gy, surf[e][mi], levels=np.linspace(0, 1, 11), cmap=cmap, vmin=0, vmax=1, alpha=0.6)
                ax.contour(gx, gy, surf[e][mi], levels=[0.5], colors="k", linewidths=0.8)
            if li is not None and e in lr_loaded[0]:
                ax.contour(
                    gx, gy, lr_loaded[0][e][li], levels=[0.5], colors=S.BOUNDARY_COLOR, linewidths=1.4, linestyles="--"
                )
                drew_lr = True
            ax.scatter(xn[:, 0], xn[:, 1], c=point_colors, s=3, edgecolors="none")
            if svm is not None:
                (wv, b) = svm
                wv = wv.numpy()
                xs = np.array([x0, x1])
                if abs(wv[1]) > 1e-12:
                    ax.plot(xs, -(wv[0] * xs + b) / wv[1], "k:", lw=1.2)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"epoch {e}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"w = {S.weight_label(w)}", fontsize=9)
    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.5, aspect=30, pad=0.02)
    cb.set_label(
        f"{MODEL_NAMES.get(model, model)}: P(class 1 = {CLASS_NAMES[1]})\n{_class_name(down, down)} by w",
        fontsize=8,
    )
    handles = [S.line_handle(S.CLASS_COLORS[k], _class_name(k, down), lw=0, marker="o", markersize=5) for k in (0, 1)]
    handles.append(S.line_handle("k", f"{MODEL_NAMES.get(model, model)} boundary (P = 0.5)", lw=0.8))
    if drew_lr:
        handles.append(S.line_handle(S.BOUNDARY_COLOR, "logistic regression boundary", ls="--", lw=1.4))
    if svm is not None:
        handles.append(S.line_handle("k", "max-margin separator (homogeneous)", ls=":", lw=1.2))
    S.figure_legend(fig, handles, title=f"rows: weight w on class {down}; first seed only", ncol=3)
    fig.suptitle(title, fontsize=10)
    return S.save(fig, path, fmt, caption)


def surface_figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fig_dir: Path, fmt: str = "png") -> list[Path]:
    """Figures 1, 2, 3, A.1 and A.2 (those whose models and datasets ran), each with its caption.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # surface_figures(run_dir, df, cfg, run_dir / "figures", fmt="pdf")
    """
    S.check_format(fmt)
    l2_reg = max(cfg.l2) if cfg.l2 else 0.0
    down = _class_name(cfg.down_class, cfg.down_class)
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
            l2_reg,
            "fig2_separable_l2",
            f"Fig. 2: same with L2 = {l2_reg:g}",
            shading + "Look for: with L2 the rows stay different at the last epoch (L2 keeps the weights' effect, "
            "Byrd & Lipton Fig. 2).",
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
    for ds, model, l2, name, title, caption in specs:
        if ds not in cfg.datasets or not (l2 == 0.0 or l2 in cfg.l2):
            continue
        p = surface_figure(run_dir, df, cfg, ds, model, l2, fig_dir / name, title, fmt=fmt, caption=caption)
        if p is not None:
            out.append(p)
    return out


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
    (model, L2).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # fraction_curves(df, cfg, Path("fraction_vs_epoch"), fmt="svg")
    """
    S.check_format(fmt)
    d = df[df.name.isin([metric, "frac_down_grid"])]
    variants = d[["model", "l2"]].drop_duplicates().values.tolist()
    variants.sort(key=lambda v: (MODEL_ORDER.index(v[0]) if v[0] in MODEL_ORDER else len(MODEL_ORDER), v[1]))
    datasets = _order([ds for ds in cfg.datasets if ds in set(d.dataset)], DATASET_ORDER)
    colors = S.weight_colors(d.weight.unique())
    n_seeds = int(d.seed.nunique()) if "seed" in d else 1
    fig = S.new_figure((3.0 * len(variants) + 0.8, 2.5 * 2 * len(datasets) + 1.4))
    axes = fig.subplots(2 * len(datasets), len(variants), squeeze=False)
    for r, ds in enumerate(datasets):
        for k, (m_name, label) in enumerate(((metric, "test points"), ("frac_down_grid", "grid"))):
            for c, (model, l2) in enumerate(variants):
                ax = axes[2 * r + k][c]
                _curve_panel(ax, d[(d.dataset == ds) & (d.model == model) & (d.l2 == l2) & (d.name == m_name)], colors)
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{ds}: {model}, L2={l2:g} ({label})", fontsize=8)
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
        "rows without L2 (and with dropout) the lines of different weights start apart and converge as training "
        "goes on (the effect fades); with L2 they stay apart. The table in Results gives the verdict per row."
    )
    return S.save(fig, path, fmt, caption)


def angle_curves(df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """Logistic regression on separable data: angle to the max-margin direction (log axis, band min to max
    over seeds) and parameter norm (band mean ± 1 std) vs epoch, one column per L2 value.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # angle_curves(df, cfg, Path("angle_vs_epoch"))
    """
    S.check_format(fmt)
    d = df[(df.model == "logreg")]
    l2s = sorted(d.l2.unique())
    colors = S.weight_colors(d.weight.unique())
    n_seeds = int(d.seed.nunique()) if "seed" in d else 1
    fig = S.new_figure((3.4 * len(l2s) + 0.6, 6.0))
    axes = fig.subplots(2, len(l2s), squeeze=False)
    for c, l2 in enumerate(l2s):
        a = d[(d.l2 == l2) & (d.name == "angle")]
        _curve_panel(axes[0][c], a, colors, band="range", logy=True)
        axes[0][c].set_title(f"logistic regression, L2={l2:g}", fontsize=9)
        axes[0][c].set_ylabel("angle to max margin (rad)")
        n = d[(d.l2 == l2) & (d.name == "param_norm") & (d.dataset == "separable")]
        _curve_panel(axes[1][c], n, colors)
        axes[1][c].set_ylabel("parameter norm")
        axes[1][c].set_xlabel("epoch")
    band = "no band: 1 seed" if n_seeds < 2 else f"band: min to max (angle), mean ± 1 std (norm) over {n_seeds} seeds"
    _legend_weights(fig, colors, band, f"weight w on class {cfg.down_class} (the down-weighted class)")
    caption = (
        "Logistic regression on the separable data: angle between (w, b) and the max-margin direction (log axis) "
        f"and the parameter norm vs epoch, one line per weight; {band}. The angle's band is the min to max over "
        "seeds, so it stays positive on the log axis. Look for: without L2 the angle falls towards 0 for every "
        "weight while the norm grows (gradient descent converges in direction to the max-margin separator whatever "
        "the weights, Soudry et al. 2018); with L2 the norm levels off and the angle stops falling."
    )
    return S.save(fig, path, fmt, caption)
