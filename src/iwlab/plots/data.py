"""Figure of the three synthetic datasets (:mod:`iwlab.data.synthetic`).

Uses :class:`matplotlib.figure.Figure` directly, so no pyplot state or backend is touched, and the shared
style (:mod:`iwlab.plots.style`): class 0 blue and class 1 vermillion, as in every other figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from iwlab.data.synthetic import SEPARABLE_PARAMS, make_gaussians, make_moons, make_separable
from iwlab.implicit_bias import max_margin_separator
from iwlab.plots import style as S

__all__ = ["plot_synthetic_datasets"]

CAPTION = (
    "The three training sets, coloured by class (class 0 = negatives blue, class 1 = positives vermillion, as in "
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


def plot_synthetic_datasets(
    path: str | Path, seed: int = 0, n_per_class: int = 512, fmt: str | None = None, caption: str | None = None
) -> Path:
    """Plot the ``separable``, ``moons`` and ``gaussians`` datasets side by side and save the figure.

    Points are coloured by class; the separable panel also shows the hard-margin separators of
    :func:`iwlab.implicit_bias.max_margin_separator` (``"homogeneous"``: solid, the limit of
    gradient descent with a trained bias; ``"free"``: dotted, the textbook SVM). Panel titles list
    the generation parameters.

    Args:
        path: output file or stem; parent folders are created.
        seed: dataset seed.
        n_per_class: points per class.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``; None: from ``path``'s suffix (png when it has none).
        caption: recorded for the report in ``captions.json`` next to the file (None: nothing recorded;
            :data:`CAPTION` is the experiment's).

    Returns:
        The path written, as a :class:`pathlib.Path` (suffix ``.fmt``).

    Raises:
        ValueError: ``fmt`` (or the suffix of ``path``) is not png, pdf or svg.

    Example:
        >>> out = plot_synthetic_datasets("/tmp/synthetic.png", seed=0)  # doctest: +SKIP
    """
    path = Path(path)
    if fmt is None:
        fmt = path.suffix.lower().lstrip(".") or "png"
        if fmt not in S.FORMATS:
            raise ValueError(f"path: suffix {path.suffix!r} of {path} is not a figure format ({', '.join(S.FORMATS)})")
    S.check_format(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(15, 5.2), layout="constrained")
    axes = fig.subplots(1, 3)

    # separable
    p = SEPARABLE_PARAMS
    X, y = make_separable(n_per_class=n_per_class, seed=seed)
    Xn, yn = X.numpy(), y.numpy()
    ax = axes[0]
    _scatter(ax, Xn, yn)
    lo, hi = Xn.min(0), Xn.max(0)
    pad = 0.15 * (hi - lo)
    xlim = (float(lo[0] - pad[0]), float(hi[0] + pad[0]))
    ylim = (float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    for bias, style, color in (("homogeneous", "-", "k"), ("free", ":", S.BOUNDARY_COLOR)):
        w, b = max_margin_separator(X, y, bias=bias)
        wn = w.numpy()
        gamma = 1.0 / float(np.linalg.norm(wn))
        _line(ax, wn, b, xlim, color=color, ls=style, lw=1.8, label=f"max margin, {bias} bias")
        if bias == "free":
            margin_text = f"free-bias geometric margin {gamma:.3f}"
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_title(
        f"separable (n={n_per_class}/class, seed={seed})\n"
        f"TN mean={p['mean']}, std={p['std']}, trunc=±{p['truncation']:g} std\n"
        f"neg = R({math.degrees(p['angle']):.0f}°)·pos + {p['translation']}; {margin_text}",
        fontsize=9,
    )

    # moons
    noise = 0.2
    X, y = make_moons(n_per_class=n_per_class, noise=noise, seed=seed)
    _scatter(axes[1], X.numpy(), y.numpy())
    axes[1].set_title(
        f"moons (n={n_per_class}/class, seed={seed})\nnoise={noise:g}, shifted by -(0.5, 0.25)\npositives = lower moon",
        fontsize=9,
    )

    # gaussians
    distance, std = 2.0, 1.0
    X, y = make_gaussians(n_per_class=n_per_class, distance=distance, std=std, seed=seed)
    _scatter(axes[2], X.numpy(), y.numpy())
    axes[2].set_title(
        f"gaussians (n={n_per_class}/class, seed={seed})\n"
        f"distance={distance:g}, std={std:g}\nmeans (±distance/2, 0), positives at +",
        fontsize=9,
    )

    for a in axes:
        a.set_aspect("equal", adjustable="box")
    S.figure_legend(fig, axes[0].get_legend_handles_labels()[0], ncol=4)
    return S.save(fig, path, fmt, caption)
