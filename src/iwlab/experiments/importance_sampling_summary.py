"""The Markdown summary of the importance-sampling experiments: Table 1 and the paper's beside it, epochs and
time to reach a target, Appendix A.2.

Pure functions of the store's metric frame and the experiment's config (Katharopoulos & Fleuret 2017,
Table 1, §4.1-4.2 and Appendix A.2), shared by ``importance_sampling_mnist``, ``_cifar10`` and ``_ptb``.
The paper's numbers and the comparisons with them are in :mod:`iwlab.experiments.importance_sampling_paper`.

Example:
    >>> from iwlab.experiments.importance_sampling_mnist import Config
    >>> df = pd.DataFrame({"method": "uniform", "epoch": 1, "name": "test_error", "value": [0.02, 0.04]})
    >>> table1(df, Config(methods=("uniform",), table_epochs=(1,))).loc[1, "Uniform"]
    '3.00% ± 1.41'
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iwlab.experiments.findings import markdown_table
from iwlab.experiments.importance_sampling_common import ImportanceSamplingConfig
from iwlab.experiments.importance_sampling_lr import lr_search_lines
from iwlab.experiments.importance_sampling_paper import (
    PAPER_EPOCH,
    PAPER_SEEDS,
    epoch_mismatch,
    epochs_to_reach,
    table1_vs_paper,
)
from iwlab.sampling import SamplerSpec

__all__ = ["summary", "table1", "time_to_accuracy"]


def _metric_format(cfg: ImportanceSamplingConfig) -> tuple[str, str]:
    return (cfg.METRIC, "{:.1f} ± {:.2f}") if cfg.METRIC == "perplexity" else (cfg.METRIC, "{:.2f}% ± {:.2f}")


def table1(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> pd.DataFrame:
    """Table 1 format: rows are epochs, columns methods, cells ``mean ± std`` over seeds.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`): ``method``, ``epoch``, ``name``, ``value``.
        cfg: the experiment's config (its methods, ``table_epochs`` and ``METRIC``).

    Returns:
        Strings ``mean ± std`` (test error in %, or perplexity) indexed by epoch, one column per method
        (headed by its :attr:`~iwlab.sampling.SamplerSpec.label`); ``—`` where a method has no value.

    Raises:
        ValueError: a method that is not a sampler spec spelling.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> df = pd.DataFrame({"method": "uniform", "epoch": 1, "name": "test_error", "value": [0.02, 0.04]})
        >>> table1(df, Config(methods=("uniform",), table_epochs=(1,))).loc[1, "Uniform"]
        '3.00% ± 1.41'
    """
    metric, fmt = _metric_format(cfg)
    d = df[df.name == metric]
    scale = 1.0 if metric == "perplexity" else 100.0
    epochs = sorted(set(d.epoch))
    wanted = [e for e in cfg.table_epochs if e in epochs] or epochs[-1:]
    out = {}
    for m in cfg.methods:
        col = {}
        for e in wanted:
            v = d[(d.method == m) & (d.epoch == e)].value * scale
            col[e] = fmt.format(v.mean(), v.std() if len(v) > 1 else 0.0) if len(v) else "—"
        out[SamplerSpec.parse(m).label] = col
    t = pd.DataFrame(out)
    t.index.name = "epoch"
    return t


def time_to_accuracy(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> pd.DataFrame:
    """Per method: wall-clock seconds (scoring included) to reach uniform's final mean test metric.

    A run's time is ``time_total`` at its first epoch whose metric is at or below the target; runs that
    never reach it count as missing. ``ratio`` is the method's mean time over uniform's.

    Args:
        df: the run's long metric frame with the metric, ``time_total`` and ``time_scoring``.
        cfg: the experiment's config.

    Returns:
        One row per method: ``method``, ``reached`` ("runs/seeds"), ``seconds``, ``epoch_time_total``
        (seconds per epoch), ``scoring_share`` (fraction of time spent scoring) and ``ratio``;
        ``attrs["target"]`` holds the target (a fraction, or perplexity). Empty without a uniform run or
        without the timings.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> values = (("test_error", 0.1), ("time_total", 2.0), ("time_scoring", 1.0))
        >>> rows = [("uniform", 0, 1, name, v) for name, v in values]
        >>> df = pd.DataFrame(rows, columns=["method", "seed", "epoch", "name", "value"])
        >>> time_to_accuracy(df, Config(methods=("uniform",))).seconds.tolist()
        [2.0]
    """
    metric, _ = _metric_format(cfg)
    d = df[df.name.isin([metric, "time_total", "time_scoring"])]
    w = d.pivot_table(index=["method", "seed", "epoch"], columns="name", values="value").reset_index()
    if "uniform" not in set(w.method) or not {metric, "time_total", "time_scoring"} <= set(w.columns):
        return pd.DataFrame()
    last = w.epoch.max()
    target = float(w[(w.method == "uniform") & (w.epoch == last)][metric].mean())
    rows = []
    for m in cfg.methods:
        times, reached = [], 0
        runs = w[w.method == m]
        for _, r in runs.groupby("seed"):
            hit = r[r[metric] <= target + 1e-12].sort_values("epoch")
            if len(hit):
                times.append(float(hit.iloc[0].time_total))
                reached += 1
        total = runs[runs.epoch == last]
        rows.append(
            {
                "method": m,
                "reached": f"{reached}/{runs.seed.nunique()}",
                "seconds": float(np.mean(times)) if times else float("nan"),
                "epoch_time_total": float(total.time_total.mean()) / max(1, last),
                "scoring_share": float((total.time_scoring / total.time_total).mean()),
            }
        )
    out = pd.DataFrame(rows)
    base = out.loc[out.method == "uniform", "seconds"].iloc[0]
    out["ratio"] = out.seconds / base
    out.attrs["target"] = target
    return out


def _oracle_verdict(df: pd.DataFrame, metric: str) -> list[str]:
    """Oracle k=0.5 vs uniform at epoch 5 (the paper's MNIST comparison), when both were run."""
    d = df[df.name == metric]
    e = 5 if 5 in set(d.epoch) else int(d.epoch.max())
    u = d[(d.method == "uniform") & (d.epoch == e)].value * 100
    o = d[(d.method == "oracle_k0.5") & (d.epoch == e)].value * 100
    if o.empty or u.empty:
        # a method with no value at that epoch (failed or diverged): no verdict rather than one from NaN
        missing = " and ".join(n for n, v in (("Oracle k=0.5", o), ("Uniform", u)) if v.empty)
        return [f"Oracle k=0.5 vs uniform at epoch {e}: no verdict, {missing} has no test error there.", ""]
    # a verdict needs the difference to stand out of the seed noise: more than 2 standard errors of the
    # difference of the two means; one seed gives no estimate of that noise, so no verdict
    diff = u.mean() - o.mean()
    if min(len(o), len(u)) > 1:
        se = math.sqrt(o.var() / len(o) + u.var() / len(u))
        verdict = "beats" if diff > 2 * se else "is worse than" if diff < -2 * se else "shows no clear difference to"
        spread = f"; std over seeds {o.std():.2f} and {u.std():.2f} points, standard error of the difference {se:.2f}"
    else:
        verdict, spread = "vs", "; 1 seed, so no verdict: the seed noise is unknown"
    return [
        f"Oracle k=0.5 {verdict} uniform at epoch {e} (mean test error over seeds): {o.mean():.2f}% vs "
        f"{u.mean():.2f}% (difference {diff:+.2f} points{spread}; a verdict needs |difference| > 2 standard "
        "errors; paper at epoch 5: 0.56% vs 0.79%).",
        "",
    ]


def _vs_paper_lines(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> list[str]:
    """Table 1 beside the paper's, or the reason there is nothing to set beside it."""
    t = table1_vs_paper(df, cfg)
    if t.empty:
        return [f"Beside the paper's Table 1: nothing to compare, {t.attrs['reason']}.", ""]
    unit = "" if cfg.METRIC == "perplexity" else "%"

    def cell(mean: float, std: float, n: int) -> str:
        if math.isnan(mean):
            return f"— (n={n})"
        return f"{mean:.2f}{unit}" + ("" if math.isnan(std) else f" ± {std:.2f}") + f" (n={n})"

    show = pd.DataFrame(
        {
            "epoch": t.epoch,
            "method": [SamplerSpec.parse(m).label for m in t.method],
            "ours": [cell(*r) for r in zip(t.ours_mean, t.ours_std, t.ours_n, strict=True)],
            "paper": [cell(*r) for r in zip(t.paper_mean, t.paper_std, t.paper_n, strict=True)],
            "(ours - paper) / paper std": [f"{x:+.2f}" for x in t.delta_in_paper_std],
            "within 2 std": ["yes" if w else "no" for w in t.within_2_std],
        }
    )
    approx = t[[SamplerSpec.parse(m).strategy == "approx" for m in t.method]]
    return [
        f"Beside the paper's Table 1: ± is the sample std over seeds, ours over {cfg.seeds} seed(s), the paper's over "
        f"{PAPER_SEEDS[cfg.DATASET]} runs; the difference is in units of the paper's std. Within 2 of the paper's "
        f"std: {int(t.within_2_std.sum())}/{len(t)} cells (approx: {int(approx.within_2_std.sum())}/{len(approx)}).",
        "",
        markdown_table(show, index=False),
        "",
    ]


def _reach_lines(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> list[str]:
    """The epochs-to-reach table with what its epochs are, or nothing without a target."""
    t = epochs_to_reach(df, cfg)
    if t.empty:
        return []
    ppl = cfg.METRIC == "perplexity"
    mismatch = epoch_mismatch(cfg)
    show = pd.DataFrame(
        {
            "target": [f"{x:.1f}" if ppl else f"{100 * x:.2f}%" for x in t.target],
            "source": t.source,
            "method": [SamplerSpec.parse(m).label for m in t.method],
            "epoch": ["not reached" if math.isnan(e) else str(int(e)) for e in t.epoch],
            "seeds reached": t.seeds_reached,
            "vs uniform": [_vs_uniform(x) for x in t.epochs_before_uniform],
            "paper": ["—" if p is None else str(p) for p in t.paper],
        }
    )
    steps, batch = PAPER_EPOCH[cfg.DATASET]
    if mismatch:
        note = f"{mismatch[0].upper()}{mismatch[1:]}: the paper's epochs do not compare with ours, its targets do."
    else:
        note = f"An epoch here is {steps} minibatches of {batch}, as the paper's, so its epochs compare with ours."
    return [
        "Epochs to reach a target (the first epoch whose mean over seeds is at or below it; seeds reached: how many "
        f"got there on their own at some epoch). {note}",
        "",
        markdown_table(show, index=False),
        "",
    ]


def _vs_uniform(x: float) -> str:
    """Uniform's epoch minus this method's, in words: "3 epochs earlier", "2 later", "same epoch", or "—"."""
    if math.isnan(x):
        return "—"
    n = int(round(x))
    if n == 0:
        return "same epoch"
    return f"{abs(n)} epoch{'s' if abs(n) != 1 else ''} {'earlier' if n > 0 else 'later'}"


def _tta_view(tta: pd.DataFrame) -> pd.DataFrame:
    """:func:`time_to_accuracy` for the report: method labels, units in the headers, shares in %."""
    return pd.DataFrame(
        {
            "method": [SamplerSpec.parse(m).label for m in tta.method],
            "seeds reached": tta.reached,
            "seconds to reach (mean)": [f"{v:.1f}" if v == v else "—" for v in tta.seconds],
            "ratio to uniform": [f"{v:.2f}" if v == v else "—" for v in tta.ratio],
            "seconds per epoch": [f"{v:.2f}" for v in tta.epoch_time_total],
            "scoring share": [f"{100 * v:.0f}%" for v in tta.scoring_share],
        }
    )


def summary(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> str:
    """Markdown: Table 1 and the paper's beside it, epochs and time to reach a target, loss/gradient-norm
    correlation, oracle k=0.5 vs uniform; for a learning-rate search (``lrs`` set), only the search's section
    (:func:`~iwlab.experiments.importance_sampling_lr.lr_search_lines`), since its methods ran at other lrs.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`).
        cfg: the experiment's config.

    Returns:
        The report's Markdown section.

    Raises:
        ValueError: a method that is not a sampler spec spelling.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> values = (("test_error", 0.02), ("time_total", 2.0), ("time_scoring", 1.0))
        >>> rows = [("uniform", 0, 1, name, v) for name, v in values]
        >>> df = pd.DataFrame(rows, columns=["method", "seed", "epoch", "name", "value"])
        >>> summary(df, Config(methods=("uniform",), seeds=1)).splitlines()[0]
        '### mnist: test error, mean ± std over 1 seed(s) (Table 1 format)'
    """
    if getattr(cfg, "lrs", ()):
        return "\n".join(lr_search_lines(df, cfg))
    metric, _ = _metric_format(cfg)
    what = "validation perplexity" if metric == "perplexity" else "test error"
    lines = [f"### {cfg.DATASET}: {what}, mean ± std over {cfg.seeds} seed(s) (Table 1 format)", ""]
    lines += [markdown_table(table1(df, cfg)), ""]
    lines += _vs_paper_lines(df, cfg)
    lines += _reach_lines(df, cfg)
    tta = time_to_accuracy(df, cfg)
    if not tta.empty:
        tgt = tta.attrs["target"] * (1 if metric == "perplexity" else 100)
        unit = "" if metric == "perplexity" else "%"
        lines += [f"Time to reach uniform's final {what} ({tgt:.2f}{unit}), scoring included:", ""]
        lines += [markdown_table(_tta_view(tta), index=False), ""]
    corr = df[df.name == "loss_gradnorm_spearman"]
    if not corr.empty:
        c = corr.groupby("method").value.agg(["mean", "std"])
        lines += ["Spearman correlation of per-example loss and gradient norm after training (Appendix A.2):", ""]
        lines += [markdown_table(c), ""]
    if metric == "test_error" and {"uniform", "oracle_k0.5"} <= set(df.method.dropna()):
        lines += _oracle_verdict(df, metric)
    return "\n".join(lines)
