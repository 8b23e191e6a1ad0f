"""The paper's learning-rate protocol (Katharopoulos & Fleuret 2017, §4): a grid search for the uniform baseline.

The paper chose the step size "on the test set, for the uniform sampling baseline with a grid-search in
[0.001, 0.01] with step 0.001, hence giving the baseline an unfair advantage over our methods"; every
method then used that rate. A run with ``lrs`` set (the ``lr_search`` profiles, or ``--set lrs=...``)
trains one cell per (method, lr, seed); :func:`best_lr` picks the lr with the lowest mean over seeds of the
selection metric at the final epoch, and :func:`lr_search_lines` writes it up for the report.

``select_on="test"`` selects on the metric Table 1 reports (as the paper did); ``"validation"`` holds
``n_val`` training examples out of training (:func:`train_split`) and selects on their error (or
perplexity), so the test set stays untouched.

Example::

    iwlab run importance_sampling_mnist --profile lr_search
    iwlab run importance_sampling_mnist --profile lr_search --set select_on=validation
    iwlab run importance_sampling_mnist --profile quick --set lr=0.002      (the lr the search chose)
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from iwlab.experiments.findings import markdown_table
from iwlab.experiments.importance_sampling_common import PAPER_LR_GRID, ImportanceSamplingConfig, lr_text, subset

__all__ = ["best_lr", "hold_out", "lr_search_lines", "lr_table", "selection_metric", "train_split"]


def hold_out(n_total: int, n_val: int, seed: int, contiguous: bool = False) -> tuple[Tensor, Tensor]:
    """Indices ``(rest, val)`` of a split of ``n_total`` examples: ``n_val`` held out, the rest in order.

    ``val`` is a random draw from ``seed``, or with ``contiguous`` the last ``n_val`` examples. PTB needs
    the latter: its examples are consecutive words whose inputs are the words before them, so a randomly
    held-out target word would be an input of the training examples that follow it, while no training
    example's context reaches into a tail block.

    Args:
        n_total: N, the examples to split.
        n_val: how many to hold out.
        seed: seeds the random draw (unused with ``contiguous``).
        contiguous: hold out the last ``n_val`` examples instead of a random draw.

    Returns:
        ``(rest, val)``: (N - n_val,) int64 indices in ascending order and (n_val,) int64 indices; together
        a permutation of ``0..N-1``.

    Raises:
        ValueError: ``n_val`` not in ``[1, n_total - 1]`` (nothing to hold out, or nothing left to train on).

    Example:
        >>> rest, val = hold_out(5, 2, seed=0, contiguous=True)
        >>> rest.tolist(), val.tolist()
        ([0, 1, 2], [3, 4])
    """
    if not 1 <= n_val < n_total:
        raise ValueError(f"n_val must be in [1, {n_total - 1}] for {n_total} training examples, got {n_val}")
    if contiguous:
        idx = torch.arange(n_total)
        return idx[: n_total - n_val], idx[n_total - n_val :]
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val]


def train_split(
    cfg: ImportanceSamplingConfig, x: Tensor, y: Tensor, contiguous: bool = False
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """The training examples used and, with ``select_on="validation"``, the held-out validation split.

    With ``"validation"``, ``cfg.n_val`` examples are held out first (:func:`hold_out`, seeded
    ``data_seed + 2``) and ``n_train`` are then drawn from the rest (:func:`subset`), so the two never
    share an example; with ``"test"`` nothing is held out, as before.

    Args:
        cfg: the experiment's config (``select_on``, ``n_val``, ``n_train``, ``data_seed``).
        x: (N, ...) all training inputs.
        y: (N,) their labels.
        contiguous: hold out the tail instead of a random draw (:func:`hold_out`; PTB).

    Returns:
        ``(x_train, y_train, x_val, y_val)``; the last two None without a validation split.

    Raises:
        ValueError: ``n_val`` leaves no training example (:func:`hold_out`).

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> cfg = Config(select_on="validation", n_val=3, n_train=4)
        >>> xtr, _, xva, _ = train_split(cfg, torch.arange(10), torch.arange(10))
        >>> len(xtr), len(xva), set(xtr.tolist()) & set(xva.tolist())
        (4, 3, set())
    """
    xva = yva = None
    if cfg.select_on == "validation":
        rest, val = hold_out(x.shape[0], cfg.n_val, cfg.data_seed + 2, contiguous)
        xva, yva = x[val], y[val]
        x, y = x[rest], y[rest]
    xtr, ytr = subset(x, y, cfg.n_train, cfg.data_seed)
    return xtr, ytr, xva, yva


def selection_metric(cfg: ImportanceSamplingConfig) -> str:
    """The metric the lr search selects on: ``cfg.METRIC``, or its held-out twin with ``select_on="validation"``.

    Example:
        >>> from iwlab.experiments.importance_sampling_ptb import Config
        >>> selection_metric(Config()), selection_metric(Config(select_on="validation"))
        ('perplexity', 'val_perplexity')
    """
    if cfg.select_on == "test":
        return cfg.METRIC
    return "val_perplexity" if cfg.METRIC == "perplexity" else "val_error"


def _final_epoch(cfg: ImportanceSamplingConfig) -> int:
    return -(-cfg.iterations // cfg.steps_per_epoch)  # the trainer's last epoch (a partial one counts)


def lr_table(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> pd.DataFrame:
    """Uniform's selection metric at the final epoch per learning rate: mean and std over seeds.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`), with the members' ``lr`` column.
        cfg: the run's config (its ``lrs``, ``seeds``, ``select_on``, iterations and epoch length).

    Returns:
        Indexed by ``lr`` (each of ``cfg.lrs``, ascending): ``{metric}_mean``, ``{metric}_std`` (NaN with one
        seed) and ``seeds`` (seeds with a finite value at the final epoch), for the selection metric and,
        when that is not ``cfg.METRIC``, for ``cfg.METRIC`` too; ``attrs``: ``metric`` and ``epoch``.

    Raises:
        ValueError: no ``lr`` column (the run had no ``lrs``).

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> cfg = Config(methods=("uniform",), lrs=(0.001, 0.002), iterations=40, steps_per_epoch=40, seeds=1)
        >>> rows = [("uniform", lr, 1, "test_error", v) for lr, v in ((0.001, 0.05), (0.002, 0.03))]
        >>> df = pd.DataFrame(rows, columns=["method", "lr", "epoch", "name", "value"])
        >>> lr_table(df, cfg)["test_error_mean"].tolist()
        [0.05, 0.03]
    """
    if "lr" not in df.columns:
        raise ValueError("the run's members have no lr: it was not an lr search (lrs is empty)")
    sel, epoch = selection_metric(cfg), _final_epoch(cfg)
    d = df[(df.method == "uniform") & (df.epoch == epoch)]
    rows = {}
    for lr in sorted(cfg.lrs):
        row: dict[str, float] = {}
        for name in dict.fromkeys((sel, cfg.METRIC)):  # the selection metric first, once
            v = d[(d.lr == lr) & (d.name == name)].value
            v = v[v.map(math.isfinite)]  # a diverged run (inf, NaN) is a missing seed, not a value
            row[f"{name}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{name}_std"] = float(v.std()) if len(v) > 1 else math.nan
            if name == sel:
                row["seeds"] = len(v)
        rows[lr] = row
    t = pd.DataFrame.from_dict(rows, orient="index")
    t.index.name = "lr"
    t["seeds"] = t["seeds"].astype(int)
    t.attrs.update(metric=sel, epoch=epoch)
    return t


def best_lr(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> tuple[float, pd.DataFrame]:
    """The uniform baseline's learning rate: lowest mean over seeds of the selection metric at the final epoch.

    Only an lr whose every seed (``cfg.seeds``) has a finite value there can be chosen, so a rate that
    diverged in one seed is not picked on its lucky ones; ties go to the smaller lr.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`), with the members' ``lr`` column.
        cfg: the run's config.

    Returns:
        ``(lr, table)``: the chosen lr and :func:`lr_table`.

    Raises:
        ValueError: no ``lr`` column, or no lr with every seed at the final epoch.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> cfg = Config(methods=("uniform",), lrs=(0.001, 0.002), iterations=40, steps_per_epoch=40, seeds=1)
        >>> rows = [("uniform", lr, 1, "test_error", v) for lr, v in ((0.001, 0.05), (0.002, 0.03))]
        >>> best_lr(pd.DataFrame(rows, columns=["method", "lr", "epoch", "name", "value"]), cfg)[0]
        0.002
    """
    t = lr_table(df, cfg)
    ok = t[t.seeds == cfg.seeds][f"{t.attrs['metric']}_mean"]
    if ok.empty:
        raise ValueError(
            f"no lr has all {cfg.seeds} seed(s) with a finite {t.attrs['metric']} at epoch {t.attrs['epoch']}"
        )
    return float(ok.idxmin()), t  # idxmin: the first (smallest) lr among equal means


def _fmt(cfg: ImportanceSamplingConfig, mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    if cfg.METRIC == "perplexity":
        m, s = f"{mean:.1f}", f"{std:.2f}"
    else:
        m, s = f"{100 * mean:.2f}%", f"{100 * std:.2f}"
    return f"{m} ± {'—' if math.isnan(std) else s}"


def _words(cfg: ImportanceSamplingConfig, metric: str) -> str:
    """A metric in words: ``held-out error``, ``test error``, ``validation perplexity`` (PTB's Table 1 metric)."""
    if metric.startswith("val_"):
        return f"held-out {'perplexity' if cfg.METRIC == 'perplexity' else 'error'}"
    return "validation perplexity" if metric == "perplexity" else "test error"


def lr_search_lines(df: pd.DataFrame, cfg: ImportanceSamplingConfig) -> list[str]:
    """Markdown lines of an lr search: the table, the chosen lr, where it was chosen, and the next command.

    Args:
        df: the run's long metric frame (:func:`iwlab.store.load`).
        cfg: the run's config (``lrs`` set).

    Returns:
        Lines: a heading, the per-lr table (mean ± std over seeds at the final epoch), the chosen lr and the
        set it was chosen on, the note that choosing on the test set (as the paper did) favours the
        baseline, and ``--set lr=X`` for every method at the run's settings; when no lr can be
        chosen, a line saying why instead of the last three.

    Example:
        >>> from iwlab.experiments.importance_sampling_mnist import Config
        >>> cfg = Config(methods=("uniform",), lrs=(0.001, 0.002), iterations=40, steps_per_epoch=40, seeds=1)
        >>> rows = [("uniform", lr, 1, "test_error", v) for lr, v in ((0.001, 0.05), (0.002, 0.03))]
        >>> lines = lr_search_lines(pd.DataFrame(rows, columns=["method", "lr", "epoch", "name", "value"]), cfg)
        >>> lines[-1].split(". ")[0]
        'Every method then uses it, at these settings: `--set lr=0.002`'
    """
    if "lr" not in df.columns:
        return ["No learning-rate search in this run (its members have no lr).", ""]
    t = lr_table(df, cfg)
    sel, epoch = t.attrs["metric"], t.attrs["epoch"]
    show = pd.DataFrame(index=[lr_text(lr) for lr in t.index])
    show.index.name = "lr"
    for name in dict.fromkeys((sel, cfg.METRIC)):
        show[_words(cfg, name)] = [_fmt(cfg, m, s) for m, s in zip(t[f"{name}_mean"], t[f"{name}_std"], strict=True)]
    show["seeds"] = [f"{n}/{cfg.seeds}" for n in t.seeds]
    lines = [
        f"### {cfg.DATASET}: learning-rate search for the uniform baseline (paper §4)",
        "",
        f"Uniform at the final epoch ({epoch}), mean ± std over seeds, per learning rate:",
        "",
        markdown_table(show),
        "",
    ]
    try:
        lr, _ = best_lr(df, cfg)
    except ValueError as e:
        return [*lines, f"No learning rate chosen: {e}.", ""]
    where, reported = _words(cfg, sel), _words(cfg, cfg.METRIC)
    command = f"--set lr={lr_text(lr)}"
    lines.append(f"Chosen lr: **{lr_text(lr)}**, the lowest mean {where} at epoch {epoch} over {cfg.seeds} seed(s).")
    ties = [lr_text(x) for x in t.index[(t.seeds == cfg.seeds) & (t[f"{sel}_mean"] == t.loc[lr, f"{sel}_mean"])]]
    if len(ties) > 1:
        lines.append(f"Rates {', '.join(ties)} tie on it; the smallest is taken.")
    elif len(cfg.lrs) > 2 and lr in (min(cfg.lrs), max(cfg.lrs)):
        lines.append("It lies at the edge of the grid, so a better rate may lie outside it.")
    if tuple(sorted(cfg.lrs)) == PAPER_LR_GRID:
        lines.append("The grid is the paper's: 0.001 to 0.01 in steps of 0.001.")
    if cfg.select_on == "test":
        note = (
            f'It was chosen on the {where} that Table 1 reports, as the paper did ("optimized on the test '
            'set"). That favours the uniform baseline: its lr is tuned on the very numbers it is then compared '
            'on, while the other methods reuse it untuned (the paper: "giving the baseline an unfair '
            'advantage"). `--set select_on=validation` chooses on held-out training examples instead.'
        )
    else:
        note = (
            f"It was chosen on the {where.removeprefix('held-out ')} of {cfg.n_val} training examples held out "
            f"of training (disjoint from those trained on), not on the {reported} that Table 1 reports; that "
            "column is shown for comparison only. Choosing on the reported numbers, as the paper did "
            '("optimized on the test set"), favours the uniform baseline, whose lr is then tuned on the numbers '
            "it is compared on."
        )
    scale = (
        f"It was chosen at this run's settings ({cfg.iterations} iterations of batch {cfg.batch_size}); a rate "
        "for another profile comes from a search at that profile's settings (`--profile paper --set "
        "methods=uniform --set lrs=...`)."
    )
    return [*lines, "", note, "", f"Every method then uses it, at these settings: `{command}`. {scale}"]
