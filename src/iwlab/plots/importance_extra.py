"""The importance-sampling figures that read a run's seeds as curves relative to something: the moving
average of the test metric (Katharopoulos & Fleuret 2017, Fig. 2b), the within-epoch std of the training
loss relative to uniform's (variance reduction, Fig. 3b), and the uniform baseline's learning-rate search
(§4), its metric against the rate.

:mod:`iwlab.plots.importance` draws the other figures and registers these in its ``figures``; both use
the styles of :mod:`iwlab.plots.importance_style`, so a method has one colour, line style and label in
every figure (uniform always black).

Example:
    >>> import tempfile
    >>> from iwlab.experiments.importance_sampling_mnist import Config
    >>> rows = [(m, s, 1.0, 0, e, "test_error", 0.1 / e) for m, s in (("oracle_k1", "oracle"),) for e in (1, 2)]
    >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     metric_moving_average(df, Config(methods=("oracle_k1",)), "test_error", Path(d) / "ma", "svg").name
    'ma.svg'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.experiments.importance_sampling_common import PAPER_LR_GRID, lr_text
from iwlab.experiments.importance_sampling_lr import best_lr, lr_table
from iwlab.plots import style as S
from iwlab.plots.importance_style import dropped_note, mean_and_range, method_handles, method_specs, method_styles

__all__ = ["loss_std_ratio", "lr_search_figure", "metric_moving_average"]

# a metric's axis label; the val_ twins are the held-out split's (importance_sampling_lr.selection_metric)
_WORDS = {
    "test_error": "test error (%)",
    "val_error": "held-out error (%)",
    "perplexity": "validation perplexity",
    "val_perplexity": "held-out perplexity",
}


def metric_moving_average(
    df: pd.DataFrame, cfg: Any, metric: str, path: Path, fmt: str = "png", window: int = 3
) -> Path:
    """Trailing moving average of the test metric of the importance-sampling schemes (oracle and approx at
    each k; Fig. 2b), linear axis: line = mean over seeds of each seed's moving average, band = min to max
    over seeds of it. Uniform is left out, as in the paper (it is in the per-epoch metric figure).

    Args:
        df: the store's long frame with ``method``, ``strategy``, ``k``, ``seed``, ``epoch``, ``name``, ``value``.
        cfg: the experiment's config (its ``methods``, ``steps_per_epoch``, ``DATASET``).
        metric: ``"test_error"`` (drawn in %) or ``"perplexity"``.
        path: output path or stem.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        window: epochs averaged, the current one and the ``window - 1`` before it (fewer at the start).

    Returns:
        The file written.

    Raises:
        ValueError: ``fmt`` is not a known format, or ``window`` < 1.

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> rows = [("approx_k1", "approx", 1.0, 0, e, "test_error", 0.1 / e) for e in (1, 2)]
        >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     metric_moving_average(df, Config(methods=("approx_k1",)), "test_error", Path(d) / "ma", "svg").name
        'ma.svg'
    """
    S.check_format(fmt)
    if window < 1:
        raise ValueError(f"window must be at least 1 epoch, got {window}")
    scale = 100.0 if metric == "test_error" else 1.0
    what = "test error (%)" if scale > 1 else metric
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    specs = method_specs(df, cfg.methods)
    styles = {m: st for m, st in method_styles(df, cfg.methods).items() if specs[m].strategy in ("oracle", "approx")}
    for m, st in styles.items():
        d = df[(df.name == metric) & (df.method == m)].sort_values(["seed", "epoch"])
        if d.empty:
            continue
        # each seed's own trailing mean over its epochs, then the spread of those over seeds
        ma = d.groupby("seed").value.transform(lambda v: v.rolling(window, min_periods=1).mean())
        g = d.assign(ma=ma * scale).groupby("epoch").ma.agg(["mean", "min", "max", "count"]).reset_index()
        mean_and_range(ax, g, st)
    ax.set(xlabel=f"epoch ({cfg.steps_per_epoch} minibatches)", ylabel=f"{what}, {window}-epoch moving average")
    S.integer_ticks(ax, "x")
    ax.set_title(f"{cfg.DATASET}: {what} of the importance-sampling schemes, moving average (cf. Fig. 2b)", fontsize=9)
    n = S.n_seeds(df)
    band = S.seed_band_text(n, kind="range")
    S.figure_legend(fig, method_handles(styles, band, marker="o"))
    caption = (
        f"{what} vs epoch of oracle and approx sampling only, as the paper's Fig. 2b: line: mean over {n} seed(s) "
        f"of each seed's trailing moving average over {window} epochs (the epoch and the {window - 1} before it; "
        f"fewer at the first epochs); {band} of that moving average. Uniform is in the per-epoch {what} figure. "
        "Look for: k=0.5 (biased towards hard examples) below k=1, for oracle and approx alike "
        "(Katharopoulos & Fleuret §4.2)."
    )
    return S.save(fig, path, fmt, caption)


def loss_std_ratio(
    df: pd.DataFrame,
    cfg: Any,
    path: Path,
    fmt: str = "png",
    methods: Sequence[str] | None = None,
    paper_ref: str = "",
) -> Path:
    """Within-epoch std of the weighted minibatch training loss, relative to uniform's (1 = no variance
    reduction), per epoch, log axis: line = the method's mean over seeds over uniform's mean over seeds,
    band = min to max over seeds of the method's std over uniform's mean.

    With ``methods`` naming uniform, pcg and approx this is the paper's Fig. 3b (variance reduction of the
    per-class Gaussian against the LSTM); with every method it shows the variance reduction of Figs. 1a-3a.

    Args:
        df: the store's long frame with ``train_loss_std`` rows and the member columns.
        cfg: the experiment's config (its ``methods``, ``steps_per_epoch``, ``DATASET``).
        path: output path or stem.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.
        methods: the methods drawn (uniform is always drawn); None: all of ``cfg.methods``.
        paper_ref: the paper's figure this one redraws, named in the title and caption (e.g. ``"Fig. 3b"``).

    Returns:
        The file written.

    Raises:
        ValueError: ``fmt`` is not a known format, or no uniform run has ``train_loss_std`` rows.

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> runs = (("uniform", "uniform", 2.0), ("pcg_k1", "pcg", 1.0))
        >>> rows = [(m, s, 1.0, 0, e, "train_loss_std", v) for m, s, v in runs for e in (1, 2)]
        >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     loss_std_ratio(df, Config(methods=("uniform", "pcg_k1")), Path(d) / "r", "svg").name
        'r.svg'
    """
    S.check_format(fmt)
    specs = method_specs(df, cfg.methods)
    uniform = [m for m, sp in specs.items() if sp.strategy == "uniform"]
    sd = df[df.name == "train_loss_std"]
    base = sd[sd.method.isin(uniform)].groupby("epoch").value.mean()  # (E,) uniform's std, mean over seeds
    if base.empty:
        raise ValueError("loss_std_ratio needs a uniform run with train_loss_std rows, the reference")
    wanted = set(cfg.methods if methods is None else methods) | set(uniform)
    styles = {m: st for m, st in method_styles(df, cfg.methods).items() if m in wanted}
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    dropped = 0
    for m, st in styles.items():
        d = sd[sd.method == m]
        if d.empty:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = d.value.to_numpy(dtype=np.float64) / base.reindex(d.epoch).to_numpy(dtype=np.float64)  # (rows,)
        g = d.assign(r=r).groupby("epoch").r.agg(["mean", "min", "max", "count"]).reset_index()
        ok = np.isfinite(g["mean"]) & (g["mean"] > 0)
        dropped += int((~ok).sum())
        mean_and_range(ax, g, st, ok=ok, band_ok=(g["min"] > 0) & np.isfinite(g["max"]))
    ax.set(xlabel=f"epoch ({cfg.steps_per_epoch} minibatches)", ylabel="within-epoch loss std / uniform's")
    S.log_axis(ax, "y")
    S.integer_ticks(ax, "x")
    ref = f" (cf. {paper_ref})" if paper_ref else ""
    ax.set_title(f"{cfg.DATASET}: std of the training loss (within each epoch) over uniform's{ref}", fontsize=9)
    n = S.n_seeds(df)
    band = S.seed_band_text(n, kind="range")
    S.figure_legend(fig, method_handles(styles, band, marker="o"))
    caption = (
        "Std over each epoch's minibatches of the weighted minibatch training loss (the paper's moving std), "
        f"divided by uniform's, per epoch (log axis; 1 = no variance reduction{ref}). Line: the method's mean "
        f"over {n} seed(s) over uniform's mean over seeds; {band} of the method's std over uniform's mean."
        + (f" {dropped} epoch ratios that are not finite and positive are left out." if dropped else "")
        + " Look for: importance sampling below 1. For k < 1 the weights, and with them the weighted loss, are "
        "on a smaller scale, so part of their drop is that scale (Katharopoulos & Fleuret Figs. 1a-3a, 3b)."
    )
    return S.save(fig, path, fmt, caption)


def lr_search_figure(df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """The uniform baseline's learning-rate search (paper §4), two panels with log y axes. Left: the selection
    metric at the final epoch against the learning rate, point = mean over seeds, error bars = min to max over
    seeds, a star on the chosen rate (:func:`~iwlab.experiments.importance_sampling_lr.best_lr`). Right: the
    test metric per epoch, one line per rate (truncated viridis, darkest = smallest), mean over seeds.

    Values that are not finite (a diverged seed) are left out, as :func:`lr_table` leaves them out of the mean.

    Args:
        df: the store's long frame with the members' ``lr`` column (float64), ``method``, ``seed``, ``epoch``,
            ``name`` and ``value``; only uniform's rows are drawn, as the search selects on uniform alone.
        cfg: the run's config with ``lrs`` set (its ``seeds``, ``select_on``, ``METRIC``, ``DATASET``,
            ``iterations`` and ``steps_per_epoch``).
        path: output path or stem.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"``.

    Returns:
        The file written.

    Raises:
        ValueError: ``fmt`` is not a known format, or ``df`` has no ``lr`` column (not an lr search).

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> cfg = Config(methods=("uniform",), lrs=(0.001, 0.002), iterations=80, steps_per_epoch=40)
        >>> rows = [("uniform", lr, 0, e, "test_error", v / e) for lr, v in ((0.001, 0.05), (0.002, 0.03))
        ...         for e in (1, 2)]
        >>> df = pd.DataFrame(rows, columns=["method", "lr", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lr_search_figure(df, cfg, Path(d) / "lr_search", "svg").name
        'lr_search.svg'
    """
    S.check_format(fmt)
    t = lr_table(df, cfg)  # (lrs, ...) ascending; raises without an lr column
    sel, epoch = t.attrs["metric"], t.attrs["epoch"]
    try:
        chosen, why_none = best_lr(df, cfg)[0], ""
    except ValueError as e:
        chosen, why_none = None, str(e)
    u = df[(df.method == "uniform") & np.isfinite(df.value.to_numpy(dtype=np.float64))]
    lrs = [float(lr) for lr in t.index]
    colors = dict(zip(lrs, S.ordered_colors(len(lrs)), strict=True))
    fig = S.new_figure((11.0, 4.6))
    ax_sel, ax_ep = fig.subplots(1, 2)

    # left: the selection metric at the final epoch per rate, the points best_lr chooses among
    scale = 100.0 if sel.endswith("error") else 1.0
    final = u[(u.epoch == epoch) & (u.name == sel)]
    xs, ys, dropped = [], [], 0
    for lr in lrs:
        mean, n = float(t.loc[lr, f"{sel}_mean"]) * scale, int(t.loc[lr, "seeds"])
        if n == 0:
            continue
        if not mean > 0:
            dropped += 1
            continue
        v = final[final.lr == lr].value.to_numpy(dtype=np.float64) * scale  # (seeds,) the finite ones
        err = [[mean - v.min()], [v.max() - mean]] if n >= 2 else None
        ax_sel.errorbar([lr], [mean], yerr=err, fmt="o", ms=5, color=colors[lr], capsize=3, zorder=2)
        if n < cfg.seeds:  # best_lr passes over a rate with a seed missing: say so at the point
            ax_sel.annotate(f"{n}/{cfg.seeds}", (lr, mean), xytext=(4, 4), textcoords="offset points", fontsize=7)
        xs.append(lr)
        ys.append(mean)
    ax_sel.plot(xs, ys, color=S.OKABE_ITO["black"], lw=1, zorder=1)
    star = {"marker": "*", "ms": 14, "color": S.OKABE_ITO["vermillion"], "mec": S.OKABE_ITO["black"], "mew": 0.6}
    if chosen is not None:
        ax_sel.plot([chosen], [float(t.loc[chosen, f"{sel}_mean"]) * scale], ls="none", zorder=3, **star)
    if max(lrs) >= 20 * min(lrs):  # a grid over decades reads on a log axis; the paper's 0.001..0.01 step is linear
        ax_sel.set_xscale("log")
    if len(lrs) <= 12:
        ax_sel.set_xticks(lrs, [lr_text(lr) for lr in lrs], rotation=45, fontsize=7)
        ax_sel.set_xticks([], minor=True)  # a log axis would label its minor ticks between the rates
    ax_sel.set(xlabel="learning rate", ylabel=f"{_WORDS[sel]} at epoch {epoch}")
    S.log_axis(ax_sel, "y")
    ax_sel.set_title(f"{_WORDS[sel]} at the final epoch vs learning rate", fontsize=9)

    # right: the test metric over training, one line per rate
    tscale = 100.0 if cfg.METRIC == "test_error" else 1.0
    test = u[u.name == cfg.METRIC]
    for lr in lrs:
        g = test[test.lr == lr].groupby("epoch").value.mean().sort_index() * tscale  # (E,) mean over seeds
        dropped += int((g <= 0).sum())
        g = g[g > 0]
        if not g.empty:
            wide = {"lw": 2.8, "zorder": 3} if lr == chosen else {"lw": 1.3}  # the chosen rate on top
            ax_ep.plot(g.index, g.to_numpy(), color=colors[lr], marker="o", ms=3, **wide)
    S.integer_ticks(ax_ep, "x")
    ax_ep.set(xlabel=f"epoch ({cfg.steps_per_epoch} minibatches)", ylabel=_WORDS[cfg.METRIC])
    S.log_axis(ax_ep, "y")
    ax_ep.set_title(f"{_WORDS[cfg.METRIC]} per epoch, one line per learning rate", fontsize=9)
    fig.suptitle(f"{cfg.DATASET}: learning-rate search for the uniform baseline (paper §4)", fontsize=10)

    n = cfg.seeds
    bars = f"error bars: min to max over {n} seeds" if n >= 2 else "no error bars: 1 seed"
    bar_handle = S.line_handle("0.3", bars, lw=0, marker="|", ms=8) if n >= 2 else S.line_handle("none", bars, lw=0)
    handles = [
        S.line_handle(colors[lr], lr_text(lr) + (" (chosen)" if lr == chosen else ""), marker="o", ms=3) for lr in lrs
    ]
    handles.append(S.line_handle(star["color"], "chosen lr", lw=0, **{k: v for k, v in star.items() if k != "color"}))
    handles.append(bar_handle)
    S.figure_legend(fig, handles, title="learning rate (uniform)")
    missing = [lr_text(lr) for lr in lrs if t.loc[lr, "seeds"] == 0]
    grid = "the paper's grid" if tuple(sorted(lrs)) == PAPER_LR_GRID else "the paper's grid is 0.001 to 0.01 by 0.001"
    caption = (
        f"Learning-rate search for the uniform baseline over {len(lrs)} rates from {lr_text(lrs[0])} to "
        f"{lr_text(lrs[-1])} ({grid}; Katharopoulos & Fleuret §4). Left: "
        f"{_WORDS[sel]} at the final epoch ({epoch}) against the learning rate; point: mean over the seeds with a "
        f"finite value there (of {n}; a label n/{n} marks a rate with fewer, which cannot be chosen); "
        + ("error bars: min to max over those seeds" if n >= 2 else "no error bars (1 seed)")
        + (
            f"; star: the chosen rate, {lr_text(chosen)}, the lowest mean among the rates whose every seed has a "
            "finite value (ties go to the smaller)."
            if chosen is not None
            else f"; no rate chosen: {why_none}."
        )
        + f" Right: {_WORDS[cfg.METRIC]} per epoch, one line per learning rate (viridis, darkest = smallest "
        "rate), mean over the seeds with a finite value, no band; the chosen rate's line is thicker. Both y axes "
        "are logarithmic."
        + (f" No finite value at epoch {epoch} (diverged or failed): lr {', '.join(missing)}." if missing else "")
        + dropped_note(dropped, "means")
        + (
            " The rate is chosen on the metric Table 1 reports, as the paper did, which favours the baseline."
            if sel == cfg.METRIC
            else " The rate is chosen on held-out training examples, not on the metric Table 1 reports."
        )
        + " Look for: a minimum inside the grid (one at its edge means a better rate may lie outside it), and "
        "whether the chosen rate's curve still falls at the last epoch."
    )
    return S.save(fig, path, fmt, caption)
