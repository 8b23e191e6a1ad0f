"""Katharopoulos & Fleuret's numbers and ours beside them: the paper's Table 1, its epoch, and the epochs at which
its text says a method reached a test error.

The source is Katharopoulos & Fleuret 2017, "Biased Importance Sampling for Deep Neural Network Training":
:data:`PAPER_TABLE1` and :data:`PAPER_SEEDS` are copied from its Table 1 and that table's caption,
:data:`PAPER_EPOCH` is its epoch as the experiments' ``paper`` profiles read §4 (MNIST: "every 300
mini-batches" of 128, §4.1; PTB: 100,000 iterations over 50 epochs, §4.3), and :data:`PAPER_REACH` holds
what the text of §4.1-4.2 says about when a method reached an error, only as the text states it.
:func:`table1_vs_paper` and :func:`epochs_to_reach` set a run's results beside them;
:mod:`iwlab.experiments.importance_sampling_summary` writes both into the report.

Example:
    >>> PAPER_TABLE1["mnist"][5]["oracle_k0.5"], PAPER_SEEDS["mnist"]
    ((0.56, 0.04), 10)
    >>> PAPER_REACH["cifar10"][0.10]["uniform"]
    116
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iwlab.experiments.importance_sampling_common import METHODS_ALL, ImportanceSamplingConfig
from iwlab.sampling import SamplerSpec

__all__ = [
    "PAPER_EPOCH",
    "PAPER_REACH",
    "PAPER_SEEDS",
    "PAPER_TABLE1",
    "epoch_mismatch",
    "epochs_to_reach",
    "table1_vs_paper",
]


def _row(*cells: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return dict(zip(METHODS_ALL, cells, strict=True))


# The paper's Table 1: (mean, std) over PAPER_SEEDS runs at an epoch, per method; test error in % (MNIST,
# CIFAR-10) or validation perplexity (PTB). Columns in METHODS_ALL' order, as in the paper.
PAPER_TABLE1: dict[str, dict[int, dict[str, tuple[float, float]]]] = {
    "mnist": {
        5: _row((0.79, 0.11), (0.73, 0.11), (0.56, 0.04), (0.83, 0.06), (0.65, 0.05)),
        10: _row((0.64, 0.10), (0.56, 0.07), (0.52, 0.05), (0.60, 0.06), (0.61, 0.04)),
        20: _row((0.56, 0.07), (0.53, 0.08), (0.47, 0.04), (0.53, 0.06), (0.54, 0.06)),
    },
    "cifar10": {
        50: _row((12.33, 0.39), (10.68, 0.65), (9.58, 0.16), (11.54, 0.55), (10.78, 0.09)),
        100: _row((10.19, 0.24), (9.74, 0.44), (9.20, 0.55), (9.71, 0.14), (9.90, 0.47)),
        150: _row((7.97, 0.10), (7.77, 0.14), (7.44, 0.14), (7.61, 0.07), (7.64, 0.27)),
    },
    "ptb": {
        10: _row((184.5, 1.56), (178.3, 2.47), (187.2, 1.61), (179.4, 6.20), (180.0, 4.78)),
        30: _row((138.6, 0.60), (137.8, 1.53), (139.0, 0.72), (136.2, 2.98), (134.3, 2.19)),
        50: _row((130.3, 0.63), (129.9, 1.27), (130.5, 0.21), (128.2, 2.02), (127.4, 1.45)),
    },
}
PAPER_SEEDS = {"mnist": 10, "cifar10": 3, "ptb": 3}  # runs behind each Table 1 cell
# the paper's epoch: (minibatches, batch size); its epoch numbers compare with ours only when ours is the same
PAPER_EPOCH = {"mnist": (300, 128), "cifar10": (300, 128), "ptb": (2000, 128)}

# When the paper's methods first reached a test error (a fraction), only as its text states it: an int is an
# epoch, a str the text's comparison (no epoch given). A key is a method spelling, a strategy (any k), or
# "kK" (any importance-sampling strategy with that k; the text names only k there).
PAPER_REACH: dict[str, dict[float, dict[str, int | str]]] = {
    "mnist": {  # §4.1; which method the text means is read off Table 1 where the text names only k
        # "training with k=0.5 leads to less than 1% error after a single epoch": §4.1 discusses k for the
        # oracle (Fig. 1)
        0.01: {"oracle_k0.5": 1},
        # "approx ... achieving 0.65% error 5 epochs earlier": approx k=0.5 is at 0.65% at epoch 5, uniform at
        # 0.64% at epoch 10 (approx k=1 is at 0.83% at epoch 5 and reaches 0.65% with uniform, at epoch 10)
        0.0065: {"approx_k0.5": "5 epochs before uniform"},
        # "an error of 0.6% is reached 15 epochs earlier": oracle k=0.5 is at 0.56% at epoch 5, uniform first
        # below 0.6% at epoch 20 (approx k=0.5 reaches it at epoch 20 too)
        0.006: {"oracle_k0.5": "15 epochs before uniform"},
    },
    "cifar10": {  # §4.2
        0.10: {"uniform": 116, "approx": 78, "oracle": 48},  # "less than 10% error ... at epoch 116 instead of 78 ..."
        # "approximation with k=0.5 reaches the performance of uniform sampling at 100 epochs almost 50 epochs
        # faster": that performance is uniform's Table 1 error at epoch 100, 10.19%
        0.1019: {"uniform": "the target: its error at epoch 100", "approx_k0.5": "almost 50 epochs before uniform"},
    },
}


def epoch_mismatch(cfg: ImportanceSamplingConfig) -> str:
    """Why this run's epoch numbers do not compare with the paper's, or ``""`` when they do.

    Args:
        cfg: the experiment's config (its ``DATASET``, ``steps_per_epoch`` and ``batch_size``).

    Returns:
        ``""`` when the run's epoch is the paper's (:data:`PAPER_EPOCH`: the same minibatches of the same
        size), else a clause saying how the two differ.

    Raises:
        KeyError: ``cfg.DATASET`` is none of the paper's (mnist, cifar10, ptb).

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> epoch_mismatch(Config(iterations=6000, steps_per_epoch=300, batch_size=128))
        ''
        >>> epoch_mismatch(Config(steps_per_epoch=40, batch_size=64))[:50]
        "this run's epoch is 40 minibatches of 64, the pape"
    """
    steps, batch = PAPER_EPOCH[cfg.DATASET]
    if (cfg.steps_per_epoch, cfg.batch_size) == (steps, batch):
        return ""
    return (
        f"this run's epoch is {cfg.steps_per_epoch} minibatches of {cfg.batch_size}, the paper's {steps} of {batch}, "
        "so the same epoch number is a different amount of training"
    )


def _paper_cell(cells: dict, spec: SamplerSpec) -> object:
    """The value of the first key in ``cells`` that names ``spec`` (a spelling, a strategy or ``kK``), else None."""
    for key, v in cells.items():
        if key in ("oracle", "approx", "pcg"):
            hit = spec.strategy == key
        elif key.startswith("k"):
            hit = spec.strategy != "uniform" and spec.k == float(key[1:])
        else:
            hit = SamplerSpec.parse(key) == spec
        if hit:
            return v
    return None


def table1_vs_paper(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> pd.DataFrame:
    """Our Table 1 cells beside the paper's, with the difference in units of the paper's std over seeds.

    A row is an (epoch, method) that the paper reports and this run has; rows only when this run's epoch is
    the paper's (the same minibatches and batch size, :data:`PAPER_EPOCH`), since otherwise the same epoch
    number is a different amount of training. Methods the paper did not run (oracle k=0.75, pcg) have no row.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`).
        cfg: the experiment's config (its ``DATASET``, ``METRIC``, methods and epoch size).

    Returns:
        Columns ``epoch``, ``method``, ``ours_mean``, ``ours_std`` (sample std over seeds, NaN with one seed),
        ``ours_n`` (seeds), ``paper_mean``, ``paper_std``, ``paper_n``, ``delta_in_paper_std`` (ours minus the
        paper's mean, over the paper's std) and ``within_2_std`` (``|delta| <= 2``; False where ours is
        missing); errors in %, PTB in perplexity. When empty, ``attrs["reason"]`` says why.

    Raises:
        ValueError: a method that is not a sampler spec spelling.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> df = pd.DataFrame({"method": "uniform", "epoch": 5, "name": "test_error", "value": [0.0090, 0.0090]})
        >>> cfg = Config(methods=("uniform",), iterations=1500, steps_per_epoch=300, batch_size=128)
        >>> round(float(table1_vs_paper(df, cfg).delta_in_paper_std[0]), 6)   # (0.90 - 0.79) / 0.11
        1.0
    """
    cols = ["epoch", "method", "ours_mean", "ours_std", "ours_n", "paper_mean", "paper_std", "paper_n"]
    cols += ["delta_in_paper_std", "within_2_std"]
    metric = cfg.METRIC
    scale = 1.0 if metric == "perplexity" else 100.0
    paper = PAPER_TABLE1[cfg.DATASET]
    d = df[df.name == metric]
    ours = sorted(int(e) for e in set(d.epoch))
    reason = epoch_mismatch(cfg)
    rows = []
    for e in [] if reason else [e for e in sorted(paper) if e in ours]:
        for m in cfg.methods:
            cell = _paper_cell(paper[e], SamplerSpec.parse(m))
            if cell is None:
                continue
            v = d[(d.method == m) & (d.epoch == e)].value.to_numpy(dtype=np.float64) * scale  # (seeds,)
            pm, ps = cell
            mean = float(v.mean()) if len(v) else math.nan
            delta = (mean - pm) / ps
            std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            rows.append([e, m, mean, std, len(v), pm, ps, PAPER_SEEDS[cfg.DATASET], delta, bool(abs(delta) <= 2)])
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        listed = "/".join(str(e) for e in sorted(paper))
        end = f"this run ends at epoch {ours[-1]}" if ours else f"this run has no {metric}"
        if ours and ours[-1] >= min(paper):
            end = f"this run has none of them (its epochs: {ours[0]}..{ours[-1]})"
        out.attrs["reason"] = reason or f"the paper reports epochs {listed}; {end}"
    return out


def epochs_to_reach(
    df: pd.DataFrame, cfg: ImportanceSamplingConfig, targets: list[float] | None = None
) -> pd.DataFrame:
    """Per target and method: the first epoch at which the mean over seeds of the test metric is at or below
    the target, and how many seeds reached it on their own; the paper's epoch beside it where it states one.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`).
        cfg: the experiment's config.
        targets: test errors (fractions) or perplexities; None: uniform's final mean over seeds (when
            uniform ran), then the targets of :data:`PAPER_REACH` for this dataset.

    Returns:
        One row per (target, method run): ``target`` (the metric's units: a fraction or perplexity),
        ``source`` ("uniform final", "paper" or "given"), ``method``, ``epoch`` (NaN: not reached),
        ``seeds_reached`` ("r/n": seeds whose own metric reached the target at some epoch),
        ``epochs_before_uniform`` (uniform's epoch minus this one; NaN if either did not reach it) and
        ``paper`` (:data:`PAPER_REACH`'s epoch or statement, or None).

    Raises:
        ValueError: a method that is not a sampler spec spelling.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> rows = [(m, 0, e, "test_error", v) for m, vs in (("uniform", (0.3, 0.2)), ("oracle_k1", (0.2, 0.1)))
        ...         for e, v in enumerate(vs, start=1)]
        >>> df = pd.DataFrame(rows, columns=["method", "seed", "epoch", "name", "value"])
        >>> t = epochs_to_reach(df, Config(methods=("uniform", "oracle_k1")), targets=[0.2])
        >>> t.epoch.tolist(), t.epochs_before_uniform.tolist()
        ([2.0, 1.0], [0.0, 1.0])
    """
    cols = ["target", "source", "method", "epoch", "seeds_reached", "epochs_before_uniform", "paper"]
    metric = cfg.METRIC
    d = df[df.name == metric]
    if targets is not None:
        wanted = [(float(t), "given") for t in targets]
    else:
        u = d[d.method == "uniform"]
        wanted = [(float(u[u.epoch == u.epoch.max()].value.mean()), "uniform final")] if len(u) else []
        wanted += [(t, "paper") for t in PAPER_REACH.get(cfg.DATASET, {})]
    rows = []
    for target, source in wanted:
        hit = {}
        for m in cfg.methods:
            runs = d[d.method == m]
            if runs.empty:
                continue
            mean = runs.groupby("epoch").value.mean().sort_index()  # (E,) over seeds
            first = mean.index[mean <= target + 1e-12]
            best = runs.groupby("seed").value.min()  # (seeds,) each seed's lowest value over its epochs
            hit[m] = (float(first[0]) if len(first) else math.nan, f"{int((best <= target + 1e-12).sum())}/{len(best)}")
        base = hit.get("uniform", (math.nan,))[0]
        paper = PAPER_REACH.get(cfg.DATASET, {}).get(target, {}) if source == "paper" else {}
        for m, (epoch, reached) in hit.items():
            rows.append([target, source, m, epoch, reached, base - epoch, _paper_cell(paper, SamplerSpec.parse(m))])
    out = pd.DataFrame([r[:-1] for r in rows], columns=cols[:-1])
    out["paper"] = pd.Series([r[-1] for r in rows], dtype=object)  # epochs, statements and None, as stated
    return out
