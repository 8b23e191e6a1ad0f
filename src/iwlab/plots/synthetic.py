"""Figures of the synthetic experiment, read from the store and the saved decision surfaces.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state), so they work headless
and inside worker processes.

Example:
    >>> # fraction_curves(iwlab.results.load(run_dir), cfg, "fractions.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 110


def _weight_label(w: float) -> str:
    return "1" if w >= 1 else f"1/{1 / w:.0f}"


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


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
) -> Path | None:
    """Rows = weights, columns = snapshot epochs: MLP decision surface, logistic-regression boundary
    (red line, when that model ran) and the max-margin separator (dotted, separable data).

    Example:
        >>> # surface_figure(run_dir, df, cfg, "separable", "mlp", 0.0, Path("fig1.png"), "Figure 1")
    """
    from iwlab.experiments.synthetic import _data

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
    svm = None
    try:
        from iwlab.implicit_bias import max_margin_separator

        svm = max_margin_separator(x, y, bias="homogeneous")
    except ValueError:
        pass
    fig = Figure(figsize=(2.2 * len(epochs) + 0.6, 2.2 * len(weights) + 0.6))
    axes = fig.subplots(len(weights), len(epochs), squeeze=False)
    gx = np.linspace(x0, x1, size)
    gy = np.linspace(y0, y1, size)
    xn, yn = x.numpy(), y.numpy()
    for r, w in enumerate(weights):
        mi = _member_index(members, dataset, model, w, l2, seed)
        li = _member_index(members, dataset, "logreg", w, l2, seed) if lr_loaded else None
        for c, e in enumerate(epochs):
            ax = axes[r][c]
            if mi is not None:
                ax.contourf(gx, gy, surf[e][mi], levels=np.linspace(0, 1, 11), cmap="RdBu", alpha=0.55)
                ax.contour(gx, gy, surf[e][mi], levels=[0.5], colors="k", linewidths=0.6)
            if li is not None and e in lr_loaded[0]:
                ax.contour(gx, gy, lr_loaded[0][e][li], levels=[0.5], colors="red", linewidths=1.2)
            ax.scatter(xn[:, 0], xn[:, 1], c=yn, cmap="RdBu", s=2, vmin=0, vmax=1, edgecolors="none")
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
                ax.set_ylabel(f"w = {_weight_label(w)}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def surface_figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fig_dir: Path) -> list[Path]:
    """Figures 1, 2, 3, A.1 and A.2 (those whose models and datasets ran).

    Example:
        >>> # surface_figures(run_dir, df, cfg, run_dir / "figures")
    """
    l2_reg = max(cfg.l2) if cfg.l2 else 0.0
    specs = [
        (
            "separable",
            "mlp",
            0.0,
            "fig1_separable_plain.png",
            "Fig. 1: MLP decision surface (shading), logistic regression (red), max margin (dotted)",
        ),
        ("separable", "mlp", l2_reg, "fig2_separable_l2.png", f"Fig. 2: same with L2 = {l2_reg:g}"),
        (
            "separable",
            "mlp_dropout",
            0.0,
            "fig3_separable_dropout.png",
            f"Fig. 3: MLP with dropout {cfg.dropout:g}",
        ),
        ("moons", "mlp", 0.0, "figA1_moons.png", "Fig. A.1: moons (not separable)"),
        ("gaussians", "mlp", 0.0, "figA2_gaussians.png", "Fig. A.2: overlapping Gaussians"),
    ]
    out = []
    for ds, model, l2, name, title in specs:
        if l2 == 0.0 or l2 in cfg.l2:
            p = surface_figure(run_dir, df, cfg, ds, model, l2, fig_dir / name, title)
            if p is not None:
                out.append(p)
    return out


def _curve_panel(ax: Any, d: pd.DataFrame, logy: bool = False) -> None:
    weights = sorted(d.weight.unique(), reverse=True)
    for w, col in zip(weights, _colors(len(weights)), strict=True):
        g = d[d.weight == w].groupby("epoch").value.agg(["mean", "std"]).reset_index()
        ax.plot(g.epoch, g["mean"], color=col, lw=1.2, label=_weight_label(w))
        if g["std"].notna().any():
            ax.fill_between(
                g.epoch,
                g["mean"] - g["std"].fillna(0),
                g["mean"] + g["std"].fillna(0),
                color=col,
                alpha=0.15,
            )
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")


def fraction_curves(df: pd.DataFrame, cfg: Any, path: Path, metric: str = "frac_down_test") -> Path:
    """Fraction predicted as the down-weighted class vs epoch (log axis), one line per weight.

    Rows: datasets; columns: model variants (model, L2). Bands: std over seeds.

    Example:
        >>> # fraction_curves(df, cfg, Path("fractions.png"))
    """
    d = df[df.name.isin([metric, "frac_down_grid"])]
    variants = d[["model", "l2"]].drop_duplicates().sort_values(["model", "l2"]).values.tolist()
    datasets = [ds for ds in cfg.datasets if ds in set(d.dataset)]
    fig = Figure(figsize=(3.0 * len(variants) + 0.8, 2.6 * 2 * len(datasets) + 0.6))
    axes = fig.subplots(2 * len(datasets), len(variants), squeeze=False)
    for r, ds in enumerate(datasets):
        for k, (m_name, label) in enumerate(((metric, "test points"), ("frac_down_grid", "grid"))):
            for c, (model, l2) in enumerate(variants):
                ax = axes[2 * r + k][c]
                _curve_panel(
                    ax,
                    d[(d.dataset == ds) & (d.model == model) & (d.l2 == l2) & (d.name == m_name)],
                )
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{ds}: {model}, L2={l2:g}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"frac. down-weighted\n({label})", fontsize=8)
                if 2 * r + k == 2 * len(datasets) - 1:
                    ax.set_xlabel("epoch")
    axes[0][-1].legend(title="weight", fontsize=6, title_fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def angle_curves(df: pd.DataFrame, cfg: Any, path: Path) -> Path:
    """Logistic regression: angle to the max-margin direction and parameter norm vs epoch.

    Example:
        >>> # angle_curves(df, cfg, Path("angle.png"))
    """
    d = df[(df.model == "logreg")]
    l2s = sorted(d.l2.unique())
    fig = Figure(figsize=(3.4 * len(l2s) + 0.6, 5.6))
    axes = fig.subplots(2, len(l2s), squeeze=False)
    for c, l2 in enumerate(l2s):
        a = d[(d.l2 == l2) & (d.name == "angle")]
        _curve_panel(axes[0][c], a, logy=True)
        axes[0][c].set_title(f"logistic regression, L2={l2:g}", fontsize=9)
        axes[0][c].set_ylabel("angle to max margin (rad)")
        n = d[(d.l2 == l2) & (d.name == "param_norm") & (d.dataset == "separable")]
        _curve_panel(axes[1][c], n)
        axes[1][c].set_ylabel("parameter norm")
        axes[1][c].set_xlabel("epoch")
    axes[0][-1].legend(title="weight", fontsize=6, title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path
