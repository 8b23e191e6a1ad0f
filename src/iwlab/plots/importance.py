"""Figures of the importance-sampling experiments (Katharopoulos & Fleuret 2018, Figs. 1-3), read from the store.

Built with ``matplotlib.figure.Figure`` (no pyplot global state), in the shared style of
:mod:`iwlab.plots.style`: Okabe-Ito colours per method (uniform always black), a line style per strategy,
one figure-level legend that also says what the bands mean. Every y axis here is logarithmic, so no band is
mean ± std (it would dip below zero): the training-loss band is the within-epoch spread of the minibatch loss
as a log-normal (geometric mean ×/÷ geometric std), the test-metric band is the min to max over seeds.
Values <= 0 cannot be drawn on a log axis; they are left out and the caption says how many. The method styles
and the figures drawn relative to something (Fig. 2b's moving average, Fig. 3b's loss std relative to
uniform's) are in :mod:`iwlab.plots.importance_extra`.

Figures read only the store's frame (a method's ``strategy`` and ``k`` are member columns there) and the
cells' ``losses`` artifacts; :func:`figures` draws them all for ``iwlab run``.

Example:
    >>> import tempfile
    >>> from iwlab.experiments.importance_sampling_mnist import Config
    >>> rows = [("uniform", "uniform", 1.0, 0, e, "test_error", 0.1 / e) for e in (1, 2)]
    >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     metric_curves(df, Config(methods=("uniform",)), "test_error", Path(d) / "test_error", fmt="svg").name
    'test_error.svg'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.plots import style as S
from iwlab.plots.importance_extra import loss_std_ratio, lr_search_figure, metric_moving_average
from iwlab.plots.importance_style import (
    dropped_note,
    mean_and_range,
    method_handles,
    method_specs,
    method_styles,
    panel,
)
from iwlab.store import Store

__all__ = ["figures", "loss_vs_gradnorm", "metric_curves", "metric_vs_time", "sorted_losses", "train_loss_curves"]


def train_loss_curves(df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """Per-epoch mean of the weighted minibatch loss (Figs. 1a, 2a, 3a), mean over seeds; band: its
    within-epoch spread as a log-normal with the same mean and std (:func:`iwlab.plots.style.lognormal_band`),
    so it stays positive on the log axis. The paper draws a moving average and moving std over steps; the
    per-epoch mean and std over the epoch's steps are the same kind of smoothing with an epoch-long window.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> values = (("train_loss", 0.5), ("train_loss_std", 0.1))
        >>> rows = [("uniform", "uniform", 1.0, 0, e, n, v / e) for e in (1, 2) for n, v in values]
        >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     train_loss_curves(df, Config(methods=("uniform",)), Path(d) / "loss", "svg").name
        'loss.svg'
    """
    S.check_format(fmt)
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    styles = method_styles(df, cfg.methods)
    for m in styles:
        mu = _mean_std(df, "train_loss", m)
        sd = _mean_std(df, "train_loss_std", m)
        if mu.empty:
            continue
        it = mu.epoch * cfg.steps_per_epoch
        ax.plot(it, mu["mean"], **styles[m])
        if not sd.empty:
            sdv = mu[["epoch"]].merge(sd, on="epoch", how="left")["mean"].to_numpy(dtype=float)  # (E,)
            lo, hi = S.lognormal_band(mu["mean"].to_numpy(dtype=float), sdv)
            ax.fill_between(it, lo, hi, color=styles[m]["color"], alpha=0.12, lw=0)
    ax.set(xlabel="iteration", ylabel="training loss (weighted minibatch)")
    S.log_axis(ax, "y")
    ax.set_title(
        f"{cfg.DATASET}: weighted minibatch loss per epoch ({panel(cfg, 'a')})\n"
        "the objective each method minimizes; alpha ~ P^(k-1), so k<1 curves sit lower by that factor",
        fontsize=8,
    )
    band = "band: within-epoch spread, geometric mean ×/÷ geometric std"
    S.figure_legend(fig, method_handles(styles, band))
    caption = (
        f"{panel(cfg, 'a')}: weighted minibatch training loss vs iteration (log axis). Line: the mean over each "
        f"epoch's {cfg.steps_per_epoch} minibatches (mean over {S.n_seeds(df)} seed(s)), where the paper draws a "
        "moving average; band: the within-epoch spread of the minibatch loss (the paper's moving std), as the "
        "log-normal with the same mean and std (geometric mean ×/÷ geometric std), so it stays positive on the log "
        "axis. Look for: importance sampling lowers the loss faster, with a narrower band, than uniform "
        f"(Katharopoulos & Fleuret {panel(cfg, 'a')}); k < 1 curves sit lower by construction (their weights are "
        "smaller)."
    )
    return S.save(fig, path, fmt, caption)


def sorted_losses(run_dir: Path, df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """Per-example training losses after training, sorted ascending (Fig. 1b); mean over seeds.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        df = iwlab.store.load(run_dir)  # a finished run, with its cells' "losses" artifacts
        sorted_losses(run_dir, df, cfg, run_dir / "figures" / "sorted_losses", fmt="svg")
    """
    S.check_format(fmt)
    arts = _artifacts(run_dir, df)
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    styles = method_styles(df, cfg.methods)
    dropped = 0
    for m in styles:
        curves = [np.load(run_dir / p)["sorted_losses"] for mm, p in arts if mm == m]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        c = np.mean([np.sort(c)[np.linspace(0, len(c) - 1, n).astype(int)] for c in curves], axis=0)  # (n,)
        pos = c > 0
        dropped += int((~pos).sum())
        ax.plot(np.arange(n)[pos], c[pos], **styles[m])
    ax.set(xlabel="training examples, sorted by loss", ylabel="loss after training")
    S.log_axis(ax, "y")
    ax.set_title("Per-example training loss after training (as the paper's Fig. 1b, MNIST)", fontsize=9)
    S.figure_legend(fig, method_handles(styles, "no band: mean over seeds"))
    caption = (
        "As the paper's Fig. 1b (drawn there for MNIST only): "
        f"per-example training loss after training, sorted ascending (log axis), mean over {S.n_seeds(df)} seed(s) "
        "of the sorted curves; no band." + dropped_note(dropped, "sorted positions with mean loss") + " Look for: "
        "importance sampling leaves fewer examples with a high loss (a lower right end) than uniform "
        "(Katharopoulos & Fleuret Fig. 1b)."
    )
    return S.save(fig, path, fmt, caption)


def _seed_range(df: pd.DataFrame, metric: str, method: str) -> pd.DataFrame:
    """Per epoch over seeds: mean, min, max, n."""
    d = df[(df.name == metric) & (df.method == method)]
    return d.groupby("epoch").value.agg(["mean", "min", "max", "count"]).reset_index()


def metric_curves(df: pd.DataFrame, cfg: Any, metric: str, path: Path, fmt: str = "png") -> Path:
    """Test error (%) or perplexity per epoch (Figs. 1c, 2c, 3c), log axis: line = mean over seeds,
    band = min to max over seeds (quantiles: positive wherever the values are, unlike mean ± std).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> rows = [("uniform", "uniform", 1.0, 0, e, n, v / e) for e in (1, 2) for n, v in (("test_error", 0.1),)]
        >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     metric_curves(df, Config(methods=("uniform",)), "test_error", Path(d) / "err", "svg").name
        'err.svg'
    """
    S.check_format(fmt)
    scale = 100.0 if metric == "test_error" else 1.0
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    styles = method_styles(df, cfg.methods)
    dropped = 0
    for m in styles:
        d = _seed_range(df, metric, m)
        if d.empty:
            continue
        dropped += int((d["mean"] <= 0).sum())
        mean_and_range(ax, d, styles[m], ok=d["mean"] > 0, band_ok=d["max"] > 0, scale=scale)
    what = "test error (%)" if scale > 1 else metric
    ax.set(xlabel=f"epoch ({cfg.steps_per_epoch} minibatches)", ylabel=what)
    S.log_axis(ax, "y")
    S.integer_ticks(ax, "x")
    ax.set_title(f"{cfg.DATASET}: {what} per epoch ({panel(cfg, 'c')})", fontsize=9)
    n = S.n_seeds(df)
    band = S.seed_band_text(n, kind="range")
    S.figure_legend(fig, method_handles(styles, band, marker="o"))
    caption = (
        f"{panel(cfg, 'c')}: {what} vs epoch (log axis), line: mean over {n} seed(s); {band} (quantiles, so the band "
        "stays positive on the log axis)." + dropped_note(dropped, "epoch means") + " Look for: importance sampling "
        f"(oracle, approx) below uniform at the same epoch (Katharopoulos & Fleuret Table 1, {panel(cfg, 'c')})."
    )
    return S.save(fig, path, fmt, caption)


def metric_vs_time(df: pd.DataFrame, cfg: Any, metric: str, path: Path, fmt: str = "png") -> Path:
    """The test metric against cumulative wall-clock training time, scoring included (honest speed); mean over
    seeds, no band.

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> import tempfile
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> values = (("test_error", 0.1), ("time_total", 1.0))
        >>> rows = [("uniform", "uniform", 1.0, 0, e, n, v / e) for e in (1, 2) for n, v in values]
        >>> df = pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     metric_vs_time(df, Config(methods=("uniform",)), "test_error", Path(d) / "t", "svg").name
        't.svg'
    """
    S.check_format(fmt)
    scale = 100.0 if metric == "test_error" else 1.0
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    styles = method_styles(df, cfg.methods)
    dropped = 0
    for m in styles:
        d = df[df.method == m].pivot_table(index=["seed", "epoch"], columns="name", values="value").reset_index()
        if d.empty or metric not in d:
            continue
        g = d.groupby("epoch")[[metric, "time_total"]].mean()
        ok = g[metric] > 0
        dropped += int((~ok).sum())
        ax.plot(g.time_total[ok], g[metric][ok] * scale, marker="o", ms=3, **styles[m])
    ax.set(xlabel="wall-clock seconds (scoring + training)", ylabel="test error (%)" if scale > 1 else metric)
    S.log_axis(ax, "y")
    S.figure_legend(fig, method_handles(styles, "no band: mean over seeds", marker="o"))
    what = "test error (%)" if scale > 1 else metric
    caption = (
        f"{what} (log axis) vs cumulative wall-clock seconds, scoring included, mean over {S.n_seeds(df)} seed(s) of "
        "both; no band." + dropped_note(dropped, "epoch means") + " Look for: whether importance sampling still "
        "wins per second once its scoring cost is paid (a method left of uniform at the same height is faster)."
    )
    return S.save(fig, path, fmt, caption)


def loss_vs_gradnorm(run_dir: Path, df: pd.DataFrame, cfg: Any, path: Path, fmt: str = "png") -> Path:
    """Per-example loss against gradient norm after training, first seed of each method (Appendix A.2).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example::

        df = iwlab.store.load(run_dir)  # a finished run, with its cells' "losses" artifacts
        loss_vs_gradnorm(run_dir, df, cfg, run_dir / "figures" / "loss_vs_gradnorm", fmt="svg")
    """
    S.check_format(fmt)
    arts = _artifacts(run_dir, df)
    fig = S.new_figure((6.5, 5.0))
    ax = fig.subplots()
    styles = method_styles(df, cfg.methods)
    done = set()
    dropped = 0
    for m, p in arts:
        if m in done or m not in styles:
            continue
        done.add(m)
        z = np.load(run_dir / p)
        loss, norm = np.asarray(z["grad_loss"], dtype=float), np.asarray(z["grad_norm"], dtype=float)  # (n,), (n,)
        ok = (loss > 0) & (norm > 0)
        dropped += int((~ok).sum())
        ax.scatter(loss[ok], norm[ok], s=6, color=styles[m]["color"], alpha=0.5)
    ax.set(xlabel="per-example loss", ylabel="per-example gradient norm")
    S.log_axis(ax, "x")
    S.log_axis(ax, "y")
    ax.set_title("Loss vs gradient norm after training (Appendix A.2)", fontsize=9)
    shown = {m: st for m, st in styles.items() if m in done}
    S.figure_legend(fig, [S.line_handle(st["color"], st["label"], lw=0, marker="o", ms=4) for st in shown.values()])
    caption = (
        "Per-example loss vs gradient norm after training (both log axes), the first seed of each method."
        + dropped_note(dropped, "examples with a loss or norm")
        + " Look for: the points lie along a rising band (the loss ranks examples nearly as the gradient norm "
        "does, the premise of loss-based importance sampling; Katharopoulos & Fleuret Appendix A.2)."
    )
    return S.save(fig, path, fmt, caption)


def figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fmt: str = "png") -> list[Path]:
    """Training-loss curves (Figs. 1a/2a/3a), sorted losses (Fig. 1b), test metric vs epoch (Figs. 1c/2c/3c) and
    vs time, loss vs gradient norm, then those that need certain methods: the moving average of the importance
    sampling schemes' test metric (Fig. 2b; when an oracle or approx method ran), the within-epoch loss std
    relative to uniform for every method (when uniform and another method ran), and for uniform, pcg and approx
    only (Fig. 3b; when pcg or approx ran beside an oracle, else it would repeat the one before). Saved as
    ``fmt`` under ``run_dir/figures`` with their captions (shown in the report).

    A learning-rate search (``cfg.lrs`` set) ran uniform at several rates, which every figure above would mix
    into one method's curves; it gets one figure instead,
    :func:`~iwlab.plots.importance_extra.lr_search_figure` (the selection metric against the rate, and the test
    metric per epoch per rate).

    Args:
        run_dir: the run folder (its ``results.db`` and the cells' ``losses`` artifacts).
        df: its metrics (:func:`iwlab.store.load`), with the ``method``, ``strategy`` and ``k`` member columns.
        cfg: the experiment's Config (an
            :class:`~iwlab.experiments.importance_sampling_common.ImportanceSamplingConfig`).
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Returns:
        The figure files, in the order above: five always, up to three more; for an lr search, ``lr_search``
        alone.

    Raises:
        ValueError: ``fmt`` is not a known format, or an lr search whose ``df`` has no ``lr`` column.

    Example::

        figures(run_dir, iwlab.store.load(run_dir), cfg, fmt="svg")   # run_dir: a finished run
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    if getattr(cfg, "lrs", ()):
        return [lr_search_figure(df, cfg, fig_dir / "lr_search", fmt)]
    metric = cfg.METRIC
    out = [
        train_loss_curves(df, cfg, fig_dir / "train_loss", fmt),
        sorted_losses(run_dir, df, cfg, fig_dir / "sorted_losses", fmt),
        metric_curves(df, cfg, metric, fig_dir / metric, fmt),
        metric_vs_time(df, cfg, metric, fig_dir / f"{metric}_vs_time", fmt),
        loss_vs_gradnorm(run_dir, df, cfg, fig_dir / "loss_vs_gradnorm", fmt),
    ]
    specs = method_specs(df, cfg.methods)

    def ran(name: str, strategies: tuple[str, ...]) -> list[str]:
        """The methods of these strategies that have ``name`` rows."""
        have = set(df.method[df.name == name]) if not df.empty else set()
        return [m for m, sp in specs.items() if sp.strategy in strategies and m in have]

    if ran(metric, ("oracle", "approx")):
        out.append(metric_moving_average(df, cfg, metric, fig_dir / f"{metric}_moving_average", fmt))
    uniform, oracle = ran("train_loss_std", ("uniform",)), ran("train_loss_std", ("oracle",))
    cheap = ran("train_loss_std", ("pcg", "approx"))
    if uniform and (oracle or cheap):
        out.append(loss_std_ratio(df, cfg, fig_dir / "loss_std_ratio", fmt, paper_ref=f"the band of {panel(cfg, 'a')}"))
    if uniform and cheap and oracle:
        path = fig_dir / "loss_std_ratio_pcg_approx"
        out.append(loss_std_ratio(df, cfg, path, fmt, methods=uniform + cheap, paper_ref="Fig. 3b"))
    return out


def _mean_std(df: pd.DataFrame, metric: str, method: str, x: str = "epoch") -> pd.DataFrame:
    d = df[(df.name == metric) & (df.method == method)]
    if x != "epoch":
        t = df[(df.name == x) & (df.method == method)][["seed", "epoch", "value"]].rename(columns={"value": x})
        d = d.merge(t, on=["seed", "epoch"])
    return d.groupby(x).value.agg(["mean", "std"]).reset_index().fillna(0.0)


def _artifacts(run_dir: Path, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, relative path) of every stored ``losses`` artifact, ordered by seed."""
    store = Store(run_dir / "results.db")
    try:
        arts = store.artifacts("losses")
    finally:
        store.close()
    runs = df.drop_duplicates("run_id").set_index("run_id")
    out = [(runs.method[a["run_id"]], runs.seed[a["run_id"]], a["path"]) for a in arts if a["run_id"] in runs.index]
    return [(m, p) for m, _, p in sorted(out)]
