"""Figures in the input plane of the synthetic experiment (Byrd & Lipton 2019, section 3): the training sets
(:mod:`iwlab.data.synthetic`) and the models' decision surfaces over them (Figs. 1, 2, 3, A.1, A.2).

They draw what a run saved (:mod:`iwlab.experiments.synthetic`: each cell's ``data.npz`` and surfaces,
found through the run's store), so a figure never rebuilds data or trains. They use
:class:`matplotlib.figure.Figure` directly, so no pyplot state or backend is touched, and the shared style
(:mod:`iwlab.plots.style`): class 0 blue and class 1 vermillion, as in every other figure. The curves over
epochs and the figure list of a run are in :mod:`iwlab.plots.synthetic`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from iwlab.data.synthetic import GAUSSIANS_PARAMS, MOONS_PARAMS, SEPARABLE_PARAMS
from iwlab.experiments.synthetic import DATASETS
from iwlab.implicit_bias import max_margin_separator
from iwlab.plots import style as S
from iwlab.store import Store

__all__ = [
    "CAPTION",
    "CLASS_NAMES",
    "cell_artifacts",
    "plot_synthetic_datasets",
    "class_label",
    "surface_figure",
    "training_sets",
]

DATASET_ORDER = DATASETS  # separable first: the paper's claim is about it
CLASS_NAMES = ("negatives", "positives")  # y = 0 and y = 1 in iwlab.data.synthetic
MODEL_NAMES = {"logreg": "logistic regression", "mlp": "MLP", "mlp_dropout": "MLP with dropout"}

CAPTION = (
    "The training sets, coloured by class (class 0 = negatives blue, class 1 = positives vermillion, as in "
    "every figure). Look for: the separable set has an empty strip between the classes, where the max-margin "
    "separators lie (solid: homogeneous bias, the limit of gradient descent with a trained bias; dotted: the "
    "textbook SVM with a free bias); the moons interleave and the Gaussians overlap, so no line separates them."
)


def _scatter(ax: Axes, X: np.ndarray, y: np.ndarray) -> None:
    neg, pos = y == 0, y == 1
    ax.scatter(X[neg, 0], X[neg, 1], s=6, c=S.CLASS_COLORS[0], alpha=0.7, label="class 0: negatives (y=0)")
    ax.scatter(X[pos, 0], X[pos, 1], s=6, c=S.CLASS_COLORS[1], alpha=0.7, label="class 1: positives (y=1)")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(alpha=0.3)


def _line(ax: Axes, w: np.ndarray, b: float, xlim: tuple[float, float], **kwargs: object) -> None:
    """Draw ``w . x + b = 0`` across ``xlim`` (vertical when ``w_2 ~ 0``)."""
    if abs(w[1]) > 1e-12 * max(abs(w[0]), 1e-300):
        xs = np.linspace(*xlim, 2)
        ax.plot(xs, -(w[0] * xs + b) / w[1], **kwargs)
    else:
        ax.axvline(-b / w[0], **kwargs)


def _separators(ax: Axes, X: np.ndarray, y: np.ndarray) -> str:
    """Draw both hard-margin separators of separable data; returns the free-bias margin as text ('' if none)."""
    lo, hi = X.min(0), X.max(0)
    pad = 0.15 * (hi - lo)
    xlim = (float(lo[0] - pad[0]), float(hi[0] + pad[0]))
    text = ""
    for bias, ls, color in (("homogeneous", "-", "k"), ("free", ":", S.BOUNDARY_COLOR)):
        try:
            w, b = max_margin_separator(X, y, bias=bias)
        except ValueError:  # not separable (e.g. a set that is no longer the paper's)
            return ""
        wn = w.numpy()
        _line(ax, wn, b, xlim, color=color, ls=ls, lw=1.8, label=f"max margin, {bias} bias")
        text = f"free-bias geometric margin {1.0 / float(np.linalg.norm(wn)):.3f}"
    ax.set_xlim(*xlim)
    ax.set_ylim(float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    return text


def _title(name: str, n_per_class: int, seed: int | None, margin: str) -> str:
    head = f"{name} (n={n_per_class}/class" + ("" if seed is None else f", seed={seed}") + ")"
    if name == "separable":
        p = SEPARABLE_PARAMS
        return (
            f"{head}\nTN mean={p['mean']}, std={p['std']}, trunc=±{p['truncation']:g} std\n"
            f"neg = R({math.degrees(p['angle']):.0f}°)·pos + {p['translation']}; {margin}"
        )
    if name == "moons":
        shift = MOONS_PARAMS["shift"]
        return f"{head}\nnoise={MOONS_PARAMS['noise']:g}, shifted by -{shift}\npositives = lower moon"
    if name == "gaussians":
        g = GAUSSIANS_PARAMS
        return f"{head}\ndistance={g['distance']:g}, std={g['std']:g}\nmeans (±distance/2, 0), positives at +"
    return head


def plot_synthetic_datasets(
    path: str | Path,
    datasets: Mapping[str, tuple[Any, Any]],
    *,
    seed: int | None = None,
    fmt: str | None = None,
    caption: str | None = None,
) -> Path:
    """Plot 2-D training sets side by side (separable, moons, gaussians first) and save the figure.

    Points are coloured by class; the separable panel also shows the hard-margin separators of
    :func:`iwlab.implicit_bias.max_margin_separator` (``"homogeneous"``: solid, the limit of gradient
    descent with a trained bias, Soudry et al. 2018; ``"free"``: dotted, the textbook SVM). Panel titles
    give the generators' parameters (:data:`~iwlab.data.synthetic.SEPARABLE_PARAMS` etc.), assuming the
    sets were made with the defaults of :mod:`iwlab.data.synthetic`.

    Args:
        path: output file or stem; parent folders are created.
        datasets: name -> ``(X, y)``: ``X`` ``(N, 2)`` float, ``y`` ``(N,)`` labels in {0, 1} (numpy arrays
            or tensors), ``N / 2`` points per class.
        seed: the data seed, shown in the titles (None: not shown).
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``; None: from ``path``'s suffix (png when it has none).
        caption: recorded for the report in ``captions.json`` next to the file (None: nothing recorded;
            :data:`CAPTION` is the experiment's).

    Returns:
        The path written, as a :class:`pathlib.Path` (suffix ``.fmt``).

    Raises:
        ValueError: ``fmt`` (or the suffix of ``path``) is not png, pdf or svg, or ``datasets`` is empty.

    Example:
        >>> import tempfile
        >>> from iwlab.data.synthetic import make_dataset
        >>> sets = {name: make_dataset(name, 16) for name in ("moons", "separable")}
        >>> plot_synthetic_datasets(Path(tempfile.mkdtemp()) / "data.svg", sets, seed=0).suffix
        '.svg'
    """
    path = Path(path)
    if fmt is None:
        fmt = path.suffix.lower().lstrip(".") or "png"
        if fmt not in S.FORMATS:
            raise ValueError(f"path: suffix {path.suffix!r} of {path} is not a figure format ({', '.join(S.FORMATS)})")
    S.check_format(fmt)
    if not datasets:
        raise ValueError("datasets: nothing to plot")
    names = sorted(datasets, key=lambda n: (DATASET_ORDER.index(n) if n in DATASET_ORDER else len(DATASET_ORDER), n))
    fig = S.new_figure((5 * len(names), 5.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        X, y = (np.asarray(a) for a in datasets[name])
        _scatter(ax, X, y)
        margin = _separators(ax, X, y) if name == "separable" else ""
        ax.set_title(_title(name, len(y) // 2, seed, margin), fontsize=9)
        ax.set_aspect("equal", adjustable="box")
    handles, labels = [], set()
    for ax in axes:  # one legend: classes, then the separators where drawn
        for h in ax.get_legend_handles_labels()[0]:
            if h.get_label() not in labels:
                handles.append(h)
                labels.add(h.get_label())
    S.figure_legend(fig, handles, ncol=4)
    return S.save(fig, path, fmt, caption)


def class_label(c: int, down: int) -> str:
    """``"class 1 (positives, down-weighted)"``: class ``c``'s name, marked when it is the ``down`` class."""
    return f"class {c} ({CLASS_NAMES[c]}{', down-weighted' if c == down else ''})"


def _pick_weights(weights: list[float], k: int = 5) -> list[float]:
    ws = sorted(weights, reverse=True)
    if len(ws) <= k:
        return ws
    idx = np.unique(np.round(np.linspace(0, len(ws) - 1, k)).astype(int))
    return [ws[i] for i in idx]


def cell_artifacts(run_dir: Path) -> dict[tuple[str, str], Path]:
    """``(run_id, kind) -> path`` of the files the run's cells saved, as recorded in its store.

    Kinds of the synthetic cells: ``"surfaces"`` (a folder) and ``"data"`` (``data.npz``).

    Raises:
        iwlab.store.StoreError: ``run_dir/results.db`` is not a readable store.
    """
    store = Store(run_dir / "results.db")
    try:
        return {(a["run_id"], a["kind"]): run_dir / a["path"] for a in store.artifacts()}
    finally:
        store.close()


def training_sets(path: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A cell's saved training sets, dataset -> ``(X (N, 2) float32, y (N,) int64)``; ``{}`` when not saved."""
    if path is None or not path.exists():
        return {}
    with np.load(path) as f:
        return {k[2:]: (f[k], f["y_" + k[2:]]) for k in f.files if k.startswith("x_")}


def _run_of(df: pd.DataFrame, model: str) -> str | None:
    """The run (cell) that trained ``model``."""
    runs = df.loc[df.model == model, "run_id"] if "run_id" in df else pd.Series(dtype=object)
    return None if runs.empty else str(runs.iloc[0])


def _load_surfaces(folder: Path | None) -> tuple[dict[int, np.ndarray], Any] | None:
    if folder is None or not (folder / "grid.npz").exists():
        return None
    meta = np.load(folder / "grid.npz")
    surf = {int(e): np.load(folder / f"surface_e{int(e)}.npy").astype(np.float32) for e in meta["epochs"]}
    return surf, meta


def _member_index(df: pd.DataFrame, dataset: str, model: str, weight: float, wd: float, seed: int) -> int | None:
    m = df[
        (df.dataset == dataset)
        & (df.model == model)
        & (df.weight == weight)
        & (df.weight_decay == wd)
        & (df.seed == seed)
    ]
    return None if m.empty else int(m.member.iloc[0])


def surface_figure(
    run_dir: Path,
    df: pd.DataFrame,
    cfg: Any,
    dataset: str,
    model: str,
    weight_decay: float,
    path: Path,
    title: str,
    fmt: str = "png",
    caption: str | None = None,
) -> Path | None:
    """Rows = weights, columns = snapshot epochs: the model's P(class 1) as shading (class 0 blue, white
    at 0.5, class 1 vermillion; colorbar), its decision boundary (black), the logistic-regression boundary
    (bluish green, dashed, when that model ran) and the max-margin separator (black dotted, separable data).

    Args:
        run_dir: the run folder (its store names each cell's saved surfaces and training sets).
        df: the run's metrics (:func:`iwlab.store.load`).
        cfg: the synthetic :class:`~iwlab.experiments.synthetic.Config`.
        dataset, model, weight_decay: which members to show (first seed).
        path: output path or stem; the suffix becomes ``fmt``.
        title: figure title.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        caption: caption for the report.

    Returns:
        The file written, or None when that model or dataset did not run. Without the saved training set
        (runs from before it was saved) the points and the max-margin separator are left out.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        surface_figure(run_dir, iwlab.store.load(run_dir), cfg, "separable", "mlp", 0.0, Path("fig1"), "Figure 1")
    """
    S.check_format(fmt)
    arts = cell_artifacts(run_dir)
    run, lr_run = _run_of(df, model), _run_of(df, "logreg") if model != "logreg" else None
    loaded = _load_surfaces(arts.get((run, "surfaces")))
    if loaded is None:
        return None
    surf, meta = loaded
    lr_loaded = _load_surfaces(arts.get((lr_run, "surfaces"))) if lr_run else None
    train = training_sets(arts.get((run, "data"))).get(dataset)
    size = int(meta["size"])
    epochs = sorted(surf)
    members = df[["run_id", "member", "dataset", "model", "weight", "weight_decay", "seed"]].drop_duplicates()
    w_max = members[members.dataset == dataset].weight.max()
    first = _member_index(members, dataset, model, w_max, weight_decay, cfg.seed)
    if first is None:
        return None
    x0, x1, y0, y1 = meta["boxes"][first].tolist()
    weights = _pick_weights(sorted(members[members.dataset == dataset].weight.unique().tolist()))
    seed = cfg.seed
    down = cfg.down_class
    svm = None
    if train is not None:
        try:
            svm = max_margin_separator(*train, bias="homogeneous")
        except ValueError:  # not separable: no max-margin line
            pass
    cmap = S.class_cmap()
    fig = S.new_figure((2.2 * len(epochs) + 1.6, 2.2 * len(weights) + 1.6))
    axes = fig.subplots(len(weights), len(epochs), squeeze=False)
    gx = np.linspace(x0, x1, size)
    gy = np.linspace(y0, y1, size)
    xn, yn = train if train is not None else (np.zeros((0, 2)), np.zeros(0, dtype=int))
    point_colors = np.array(S.CLASS_COLORS)[yn.astype(int)]
    drew_lr = False
    for r, w in enumerate(weights):
        mi = _member_index(members, dataset, model, w, weight_decay, seed)
        li = _member_index(members, dataset, "logreg", w, weight_decay, seed) if lr_loaded else None
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
        f"{MODEL_NAMES.get(model, model)}: P(class 1 = {CLASS_NAMES[1]})\n{class_label(down, down)} by w",
        fontsize=8,
    )
    handles = [S.line_handle(S.CLASS_COLORS[k], class_label(k, down), lw=0, marker="o", markersize=5) for k in (0, 1)]
    handles.append(S.line_handle("k", f"{MODEL_NAMES.get(model, model)} boundary (P = 0.5)", lw=0.8))
    if drew_lr:
        handles.append(S.line_handle(S.BOUNDARY_COLOR, "logistic regression boundary", ls="--", lw=1.4))
    if svm is not None:
        handles.append(S.line_handle("k", "max-margin separator (homogeneous)", ls=":", lw=1.2))
    S.figure_legend(fig, handles, title=f"rows: weight w on class {down}; first seed only", ncol=3)
    fig.suptitle(title, fontsize=10)
    return S.save(fig, path, fmt, caption)
