"""Figures of the importance-sampling experiments (Katharopoulos & Fleuret Figs. 1-3), read from the store.

Lines are means over seeds; bands are one standard deviation over seeds, except in the training-loss
figure where, as in the paper, the band is the within-epoch standard deviation of the minibatch loss.

Example:
    >>> # metric_curves(iwlab.results.load(run_dir), cfg, "test_error", Path("test_error.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 110
_STYLE = {"uniform": ("k", "-"), "oracle": ("tab:blue", "-"), "approx": ("tab:red", "--"), "pcg": ("tab:green", ":")}
# darker for smaller k (more bias toward high-loss examples)
_SHADES = {
    "oracle": {1.0: "tab:blue", 0.75: "tab:cyan", 0.5: "navy"},
    "approx": {1.0: "tab:red", 0.75: "tab:orange", 0.5: "darkred"},
    "pcg": {1.0: "tab:green", 0.5: "darkgreen"},
}


def _style(method: str) -> dict[str, Any]:
    from iwlab.experiments.importance import method_label, parse_method

    strat, k = parse_method(method)
    color, ls = _STYLE[strat]
    color = _SHADES.get(strat, {}).get(k, color)
    return {"color": color, "ls": ls, "label": method_label(method), "lw": 1.5}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _mean_std(df: pd.DataFrame, metric: str, method: str, x: str = "epoch") -> pd.DataFrame:
    d = df[(df.name == metric) & (df.method == method)]
    if x != "epoch":
        t = df[(df.name == x) & (df.method == method)][["seed", "epoch", "value"]].rename(columns={"value": x})
        d = d.merge(t, on=["seed", "epoch"])
    return d.groupby(x).value.agg(["mean", "std"]).reset_index().fillna(0.0)


def train_loss_curves(df: pd.DataFrame, cfg: Any, path: Path) -> Path:
    """Per-epoch mean of the weighted minibatch loss, band = its within-epoch std (Figs. 1a, 2a, 3a)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m in cfg.methods:
        mu = _mean_std(df, "train_loss", m)
        sd = _mean_std(df, "train_loss_std", m)
        if mu.empty:
            continue
        it = mu.epoch * cfg.steps_per_epoch
        st = _style(m)
        ax.plot(it, mu["mean"], **st)
        ax.fill_between(it, mu["mean"] - sd["mean"], mu["mean"] + sd["mean"], color=st["color"], alpha=0.12)
    ax.set(xlabel="iteration", ylabel="training loss (weighted minibatch)", yscale="log")
    ax.legend(fontsize=8)
    ax.set_title(
        f"{cfg.dataset}: weighted minibatch loss (mean, std over each epoch)\n"
        "the objective each method minimizes; alpha ~ P^(k-1), so k<1 curves sit lower by that factor",
        fontsize=8,
    )
    return _save(fig, path)


def sorted_losses(run_dir: Path, df: pd.DataFrame, cfg: Any, path: Path) -> Path:
    """Per-example training losses after training, sorted ascending (Fig. 1b); mean over seeds."""
    arts = _artifacts(run_dir, df)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m in cfg.methods:
        curves = [np.load(run_dir / p)["sorted_losses"] for mm, p in arts if mm == m]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        c = np.mean([np.sort(c)[np.linspace(0, len(c) - 1, n).astype(int)] for c in curves], axis=0)
        ax.plot(np.arange(n), np.maximum(c, 1e-12), **_style(m))
    ax.set(xlabel="training examples, sorted by loss", ylabel="loss after training", yscale="log")
    ax.legend(fontsize=8)
    ax.set_title("Per-example training loss after training (Fig. 1b)", fontsize=9)
    return _save(fig, path)


def metric_curves(df: pd.DataFrame, cfg: Any, metric: str, path: Path) -> Path:
    """Test error (%) or perplexity per epoch, mean ± std over seeds (Figs. 1c, 2c, 3c)."""
    scale = 100.0 if metric == "test_error" else 1.0
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    lowest = float("inf")
    for m in cfg.methods:
        d = _mean_std(df, metric, m)
        if d.empty:
            continue
        lowest = min(lowest, float(d["mean"].min()) * scale)
        st = _style(m)
        ax.plot(d.epoch, d["mean"] * scale, marker="o", ms=3, **st)
        lo, hi = (d["mean"] - d["std"]) * scale, (d["mean"] + d["std"]) * scale
        ax.fill_between(d.epoch, lo.clip(lower=lowest * 0.5), hi, color=st["color"], alpha=0.1)
    ax.set(xlabel=f"epoch ({cfg.steps_per_epoch} minibatches)", ylabel="test error (%)" if scale > 1 else metric)
    ax.set_yscale("log")
    if lowest < float("inf") and lowest > 0:
        ax.set_ylim(bottom=lowest * 0.7)
    ax.legend(fontsize=8)
    return _save(fig, path)


def metric_vs_time(df: pd.DataFrame, cfg: Any, metric: str, path: Path) -> Path:
    """The test metric against cumulative wall-clock training time, scoring included (honest speed)."""
    scale = 100.0 if metric == "test_error" else 1.0
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for m in cfg.methods:
        d = df[df.method == m].pivot_table(index=["seed", "epoch"], columns="name", values="value").reset_index()
        if d.empty or metric not in d:
            continue
        g = d.groupby("epoch")[[metric, "time_total"]].mean()
        ax.plot(g.time_total, g[metric] * scale, marker="o", ms=3, **_style(m))
    ax.set(xlabel="wall-clock seconds (scoring + training)", ylabel="test error (%)" if scale > 1 else metric)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _save(fig, path)


def loss_vs_gradnorm(run_dir: Path, df: pd.DataFrame, cfg: Any, path: Path) -> Path:
    """Per-example loss against gradient norm after training, first seed of each method (Appendix A.2)."""
    arts = _artifacts(run_dir, df)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    done = set()
    for m, p in arts:
        if m in done or m not in cfg.methods:
            continue
        done.add(m)
        z = np.load(run_dir / p)
        st = _style(m)
        ax.scatter(
            np.maximum(z["grad_loss"], 1e-12),
            np.maximum(z["grad_norm"], 1e-12),
            s=6,
            color=st["color"],
            alpha=0.5,
            label=st["label"],
        )
    ax.set(xscale="log", yscale="log", xlabel="per-example loss", ylabel="per-example gradient norm")
    ax.legend(fontsize=8)
    ax.set_title("Loss vs gradient norm after training (Appendix A.2)", fontsize=9)
    return _save(fig, path)


def _artifacts(run_dir: Path, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, relative path) of every stored ``losses`` artifact, ordered by seed."""
    from iwlab.store import Store

    store = Store(run_dir / "results.db")
    try:
        arts = store.artifacts("losses")
    finally:
        store.close()
    runs = df.drop_duplicates("run_id").set_index("run_id")
    out = [(runs.method[a["run_id"]], runs.seed[a["run_id"]], a["path"]) for a in arts if a["run_id"] in runs.index]
    return [(m, p) for m, _, p in sorted(out)]
