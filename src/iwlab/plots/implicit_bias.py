"""Figures of the ``implicit_bias`` experiment (iwlab issue 14), read from the store: direction error vs the
predicted curve, the offset residual, homogeneous-net margins, the L2 sweep and learned weights.

Built with ``matplotlib.figure.Figure`` in the shared style (:mod:`iwlab.plots.style`): one Okabe-Ito colour per
weighting in every figure (uniform black), one figure-level legend that also says what line styles and bands
mean. ``t = epoch * steps_per_epoch`` is the gradient-descent step. A part absent from the store, or a metric
it did not record, leaves its figure (or panel) out.

Example:
    >>> import tempfile
    >>> [p.name for p in figures(Path(tempfile.mkdtemp()), _toy_frame(), Config(parts=("linear",)))]
    ['direction_error.png', 'residual.png']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.experiments.implicit_bias import Config
from iwlab.plots import style as S

_OI = S.OKABE_ITO
# one colour per weighting in every figure; the learned part reuses the palette (it never shares a panel)
COLORS = {
    "uniform": _OI["black"],
    "minority_x10": _OI["vermillion"],
    "majority_x10": _OI["blue"],
    # the paper profile's extra ratio: Okabe-Ito has no more dark colours; these two are from Paul Tol's
    # colour-blind-safe "muted" scheme
    "minority_x100": "#882255",
    "majority_x100": "#999933",
    "lognormal": _OI["bluish_green"],
    "alpha": _OI["reddish_purple"],
    "uniform_x0.1": _OI["orange"],
    "non_support_random": _OI["sky_blue"],
    "focal": _OI["vermillion"],
    "class_balanced": _OI["blue"],
    "meta_reweight": _OI["bluish_green"],
    "margin_decay": _OI["reddish_purple"],
}
_LOSS_LS = {"exponential": "-", "ce": ":", "focal": "-"}
_PART_TITLE = {"linear": "linear, two support vectors (default data)", "byrd_lipton": "Byrd & Lipton separable data"}
_TINY = 1e-12  # a predicted error below this is zero up to rounding (alpha weights): nothing to draw on a log axis
_REQUIRED = ("epoch", "name", "value", "part")


def _color(w: str) -> Any:
    return COLORS.get(w, _OI["orange"])


def _label(w: str) -> str:
    return w.replace("_x", " x").replace("_", " ")


def _frame(df: pd.DataFrame, cfg: Any) -> pd.DataFrame:
    d = df.copy()
    spe = d["steps_per_epoch"] if "steps_per_epoch" in d else getattr(cfg, "steps_per_epoch", 1)
    d["t"] = d["epoch"] * spe  # the GD step: the predictions are in steps, not epochs
    return d


def _series(d: pd.DataFrame, name: str, **keys: Any) -> pd.DataFrame:
    """Rows of metric ``name`` matching ``keys``, finite values only, sorted by t."""
    m = d.name == name
    for k, v in keys.items():
        m &= d[k] == v
    s = d[m & np.isfinite(d.value)]
    return s.sort_values("t")


def _weightings(p: pd.DataFrame) -> list[str]:
    order = list(COLORS)
    return sorted(p.weighting.dropna().unique(), key=lambda w: (order.index(w) if w in order else len(order), w))


def _axes(ax: Any, title: str, logy: bool = False) -> None:
    """Title, the step axis (log) and, with ``logy``, a log y axis; after plotting (log_axis reads the data)."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("GD step t")
    S.log_axis(ax, "x")
    if logy:
        S.log_axis(ax, "y")


def _handles(ws: list[str]) -> list:
    return [S.line_handle(_color(w), _label(w)) for w in ws]


def _direction_error(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """dir_err vs t (log-log) per weighting, one panel per linear part; predicted curve dashed."""
    parts = [p for p in ("linear", "byrd_lipton") if not _series(d[d.part == p], "dir_err").empty]
    if not parts:
        return None
    fig = S.new_figure((4.6 * len(parts) + 0.4, 3.9))
    axes = fig.subplots(1, len(parts), squeeze=False)[0]
    ws_all: list[str] = []
    dropped = 0
    for ax, part in zip(axes, parts, strict=True):
        p = d[d.part == part]
        ws = _weightings(p)
        ws_all += [w for w in ws if w not in ws_all]
        for w in ws:
            for loss in ("exponential", "ce"):
                s = _series(p, "dir_err", weighting=w, loss=loss)
                ax.plot(s.t, s.value, color=_color(w), ls=_LOSS_LS[loss], lw=1.4)
            # one predicted curve per weighting: the exponential loss's (logistic shares its tail, hence its rho)
            pr = _series(p, "pred_dir_err", weighting=w, loss="exponential")
            dropped += int((pr.value < _TINY).sum())
            pr = pr[pr.value >= _TINY]
            ax.plot(pr.t, pr.value, color=_color(w), ls="--", lw=1.0, alpha=0.85)
        _axes(ax, _PART_TITLE[part], logy=True)
    axes[0].set_ylabel("direction error ||u - u_svm||")
    style = [
        S.line_handle("0.3", "solid: measured (exp. loss)"),
        S.line_handle("0.3", "dotted: logistic", ls=":"),
        S.line_handle("0.3", "dashed: predicted theta_hat log t + rho", ls="--", lw=1.0),
    ]
    S.figure_legend(fig, [*_handles(ws_all), *style], title="weighting (colour); line style: see entries")
    note = f" {dropped} predicted values below {_TINY:g} (alpha weights: predicted 0) are not drawn." if dropped else ""
    caption = (
        "Direction error ||theta/||theta|| - theta_hat/||theta_hat|||| vs gradient-descent step t (log-log), one "
        "colour per weighting; solid: exponential loss, dotted: logistic loss, dashed: the predicted curve "
        "||v/||v|| - u||, v = theta_hat log t + rho(w) (Soudry et al. 2018; Xu, Ye & Ruan 2021, P1-P3)."
        + note
        + " Look for: every curve falls towards 0 (the limit ignores the weights) at a 1/log t rate, the dashed "
        "curve meets the solid one at large t, and alpha-proportional weights fall fastest (P4)."
    )
    return S.save(fig, path, fmt, caption)


def _residual(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """||theta - theta_hat log t - rho|| vs t (log-log) per weighting, linear part, with a 1/t guide."""
    p = d[d.part == "linear"]
    if _series(p, "residual").empty:
        return None
    fig = S.new_figure((5.2, 4.0))
    ax = fig.subplots()
    ws = _weightings(p)
    for w in ws:
        for loss in ("exponential", "ce"):
            s = _series(p, "residual", weighting=w, loss=loss)
            s = s[s.value > 0]
            ax.plot(s.t, s.value, color=_color(w), ls=_LOSS_LS[loss], lw=1.4)
    r = _series(p, "residual")
    t = np.sort(r.t.unique()).astype(float)
    # the guide passes through the largest residual at the last t, so it sits above the curves it is compared to
    anchor = r[r.t == t[-1]].value.max()
    ax.plot(t, anchor * t[-1] / t, color="0.45", ls="-.", lw=1.0)
    ax.set_ylabel("residual\n||theta - theta_hat log t - rho||")
    _axes(ax, _PART_TITLE["linear"], logy=True)
    style = [
        S.line_handle("0.3", "solid: exp. loss"),
        S.line_handle("0.3", "dotted: logistic", ls=":"),
        S.line_handle("0.45", "guide: slope 1/t", ls="-.", lw=1.0),
    ]
    S.figure_legend(fig, [*_handles(ws), *style], title="weighting (colour)")
    caption = (
        "Residual ||theta(t) - theta_hat log t - rho(w)|| of the linear part vs step t (log-log), one colour per "
        "weighting; solid: exponential loss, dotted: logistic; dash-dot grey: a 1/t guide through the largest "
        "residual at the last t. Look for: every residual falls to 0 (the weights sit only in the offset rho, P2), "
        "roughly parallel to the guide at large t."
    )
    return S.save(fig, path, fmt, caption)


def _homogeneous_margin(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """relu part: normalized margin (mean over seeds, min-max band) and smoothed margin (dashed) vs t."""
    p = d[d.part == "relu"]
    if _series(p, "norm_margin").empty:
        return None
    n = S.n_seeds(p)
    band = S.seed_band_text(n, "range")
    fig = S.new_figure((5.4, 4.0))
    ax = fig.subplots()
    ws = _weightings(p)
    for w in ws:
        g = _series(p, "norm_margin", weighting=w).groupby("t").value.agg(["mean", "min", "max", "count"])
        ax.plot(g.index, g["mean"], color=_color(w), lw=1.5)
        many = g["count"] >= 2
        if many.any():
            ax.fill_between(g.index[many], g["min"][many], g["max"][many], color=_color(w), alpha=0.18, lw=0)
        sm = _series(p, "smoothed_margin", weighting=w).groupby("t").value.mean()
        ax.plot(sm.index, sm.values, color=_color(w), ls="--", lw=1.0)
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_ylabel("normalized margin\nmin_i s_i f(x_i) / ||theta||^2")
    _axes(ax, f"bias-free 2-layer ReLU net ({band})")
    style = [
        S.line_handle("0.3", "solid: normalized margin (mean)"),
        S.line_handle("0.3", "dashed: smoothed margin", ls="--", lw=1.0),
    ]
    S.figure_legend(fig, [*_handles(ws), *style, S.band_handle(band)], title="weighting (colour)")
    caption = (
        "2-homogeneous ReLU network (no biases): normalized margin min_i s_i f(x_i)/||theta||^2 vs step t (log "
        f"axis), mean over seeds, {band}; dashed: the smoothed margin (mean over seeds), a lower bound that "
        "increases (Lyu & Li 2020). Look for: once the data are separated the margins rise and the gap between "
        "weightings shrinks (P6: the weights' effect fades as O(1/log t))."
    )
    return S.save(fig, path, fmt, caption)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between unit vectors: 2 atan2(||a-b||, ||a+b||) is exact near 0 and pi, where acos(a.b) loses digits."""
    return float(2.0 * math.atan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))


def _l2_sweep(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """l2 part at the last t: dir_err_svm vs weight decay, and the angle between uniform and minority x10."""
    p = d[d.part == "l2"]
    if _series(p, "dir_err_svm").empty or "weight_decay" not in p:
        return None
    last = p[p.t == p.t.max()]
    ws = [w for w in ("uniform", "minority_x10") if w in set(last.weighting)]
    fig = S.new_figure((8.4, 3.7))
    ax_e, ax_a = fig.subplots(1, 2)
    for w in ws:
        s = _series(last, "dir_err_svm", weighting=w).sort_values("weight_decay")
        ax_e.plot(s.weight_decay, s.value, color=_color(w), marker="o", ms=4, lw=1.4)
    ax_e.set_ylabel("direction error to the SVM at the last t")
    comps = sorted({n for n in last.name.unique() if n[:1] == "u" and n[1:].isdigit()}, key=lambda n: int(n[1:]))
    angles = {}
    if len(ws) == 2 and comps:
        for lam, g in last.groupby("weight_decay"):
            u = [np.array([g[(g.name == c) & (g.weighting == w)].value.mean() for c in comps]) for w in ws]
            if all(np.isfinite(v).all() for v in u):
                angles[lam] = _angle(*u)
    if angles:
        lams = sorted(angles)
        ax_a.plot(lams, [angles[lam] for lam in lams], color=_OI["bluish_green"], marker="s", ms=4, lw=1.4)
    ax_a.set_ylabel("angle(uniform, minority x10) (rad)")
    for ax in (ax_e, ax_a):
        ax.set_xlabel("weight decay lambda")
        S.log_axis(ax, "x")
    T = p.t.max()
    ax_e.set_title(f"direction error, t = {T:.0e}", fontsize=9)
    ax_a.set_title("angle between the two members' directions", fontsize=9)
    handles = [S.line_handle(_color(w), _label(w), marker="o", ms=4) for w in ws]
    handles.append(S.line_handle(_OI["bluish_green"], "angle between them", marker="s", ms=4))
    S.figure_legend(fig, handles, title="logistic loss, L2 (coupled weight decay), last step")
    caption = (
        f"L2-regularized logistic regression at the last step t = {T:.0e}: left, the direction error to the "
        "hard-margin SVM vs weight decay lambda (log axis) for uniform and minority x10 weights; right, the angle "
        "between the two members' directions. Look for: with lambda > 0 the angle stays above 0 (L2 keeps a "
        "weight-dependent direction, P7) and the direction error falls as lambda -> 0."
    )
    return S.save(fig, path, fmt, caption)


def _learned_weights(d: pd.DataFrame, path: Path, fmt: str) -> Path | None:
    """learned part: dir_err to each member's predicted limit vs t (log-log) per weighting."""
    p = d[d.part == "learned"]
    if _series(p, "dir_err").empty:
        return None
    fig = S.new_figure((5.4, 4.0))
    ax = fig.subplots()
    ws = _weightings(p)
    for w in ws:
        s = _series(p, "dir_err", weighting=w)
        s = s[s.value > 0]
        ax.plot(s.t, s.value, color=_color(w), lw=1.5)
    md = _series(p, "dir_err_svm", weighting="margin_decay")
    style = []
    if not md.empty:
        ax.plot(md.t, md.value, color=_color("margin_decay"), ls=":", lw=1.2)
        style = [S.line_handle(_color("margin_decay"), "margin decay, to the plain SVM", ls=":")]
    ax.set_ylabel("direction error to the predicted limit")
    _axes(ax, "learned weights, linear model (default data)", logy=True)
    losses = p.drop_duplicates("weighting").set_index("weighting").loss.to_dict() if "loss" in p else {}
    handles = [S.line_handle(_color(w), f"{_label(w)} ({losses.get(w, '?')})") for w in ws]
    S.figure_legend(fig, [*handles, *style], title="weighting (loss)")
    caption = (
        "Weights learned with the model: direction error to each member's predicted limit vs step t (log-log). "
        "The limit is the hard-margin SVM for bounded learned weights (focal loss, class-balanced, meta-reweighting) "
        "and the SVM of the rescaled points (1 + rate_y) x_i for weights decaying exponentially in the margin; "
        "dotted: that member's error to the plain SVM. Look for: every solid curve falls (bounded weights do not "
        "move the limit); margin decay converges to its new limit, away from the plain SVM."
    )
    return S.save(fig, path, fmt, caption)


def _toy_frame() -> pd.DataFrame:
    """A tiny linear-part store frame for the doctests: two weightings, both losses, t = 100..10000."""
    rows = []
    for w, c in (("uniform", 1.0), ("minority_x10", 2.0)):
        for loss in ("exponential", "ce"):
            for e in (1, 10, 100):
                for name, v in (
                    ("dir_err", c / math.log(100 * e)),
                    ("pred_dir_err", c / math.log(100 * e)),
                    ("residual", c / e),
                ):
                    rows.append(("linear", loss, w, 100, e, name, v))
    return pd.DataFrame(rows, columns=["part", "loss", "weighting", "steps_per_epoch", "epoch", "name", "value"])


def figures(run_dir: Path, df: pd.DataFrame, cfg: Config, fmt: str = "png") -> list[Path]:
    """All figures of an implicit_bias run, written as ``fmt`` under ``run_dir/figures`` with their captions.

    ``direction_error`` (linear and byrd_lipton parts), ``residual`` (linear), ``homogeneous_margin`` (relu),
    ``l2_sweep`` (l2) and ``learned_weights`` (learned); a figure whose part or metric is absent is skipped.

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.store.load`): long form, columns ``epoch``, ``name``, ``value``, ``part``
            and the member labels (``weighting``, ``loss``, ``steps_per_epoch``, ``weight_decay``, ``seed``).
        cfg: its :class:`~iwlab.experiments.implicit_bias.Config` (``steps_per_epoch`` when ``df`` lacks it).
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.

    Returns:
        The files written, in report order (empty when ``df`` is empty).

    Raises:
        ValueError: ``fmt`` is not a known format, or ``df`` lacks a required column.

    Source:
        Xu, Ye & Ruan (2021) as reconstructed in the notes (P1-P7); Soudry et al. (2018), Lyu & Li (2020).

    Example:
        >>> import tempfile
        >>> [p.name for p in figures(Path(tempfile.mkdtemp()), _toy_frame().iloc[:0], Config())]
        []
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    if df.empty:
        return []
    missing = [c for c in _REQUIRED if c not in df]
    if missing:
        raise ValueError(f"df: missing column(s) {', '.join(missing)}")
    d = _frame(df, cfg)
    for col in ("weighting", "loss"):
        if col not in d:
            d[col] = None
    steps = (
        (_direction_error, "direction_error"),
        (_residual, "residual"),
        (_homogeneous_margin, "homogeneous_margin"),
        (_l2_sweep, "l2_sweep"),
        (_learned_weights, "learned_weights"),
    )
    out = [fn(d, fig_dir / stem, fmt) for fn, stem in steps]
    return [p for p in out if p is not None]
