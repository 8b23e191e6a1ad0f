"""The Markdown findings of the two-class CIFAR-10 experiments, computed from the stored metrics.

Per variant (plain, L2, dropout, Adam, batch norm): the spread across weights of the fraction predicted
as class 1 at the first and the last recorded epoch, with a verdict computed from the numbers
(:data:`iwlab.experiments.findings.LEVEL_RULE`) and compared with Byrd & Lipton's claim (2019, Secs. 4-5:
the weights' effect fades without regularization, with dropout and with Adam, and persists with L2 or
batch norm); accuracies; and the agreement between models (their Sec. 4.1: 82% across weightings vs 78%
across seeds on the test set).

Example:
    >>> df = pd.DataFrame({"variant": ["plain"] * 2, "weight": [0.25, 4.0], "epoch": [5, 5],
    ...                    "name": ["frac_dog_test"] * 2, "value": [0.2, 0.7]})
    >>> spreads(df, "frac_dog_test")[["variant", "spread_last", "n_weights"]].to_dict("records")
    [{'variant': 'plain', 'spread_last': 0.49999999999999994, 'n_weights': 2}]
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from iwlab.experiments.cifar_common import SETS, VARIANT_ORDER
from iwlab.experiments.findings import LEVEL_RULE, TREND_RULE, finding_line, level_verdict

# Byrd & Lipton's claim per variant (Secs. 4-5): does the weights' effect fade or persist?
CLAIMS = {"plain": "faded", "dropout": "faded", "adam": "faded", "l2": "persists", "batchnorm": "persists"}


def _by_variant(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Groups by variant in the order plain, l2, dropout, adam, batchnorm."""
    return [(v, df[df.variant == v]) for v in VARIANT_ORDER if v in set(df.variant)]


def spreads(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant: max - min across weights of the seed-mean ``metric`` at the first and last recorded epochs.

    ``n_weights`` is the variant's number of weights, ``n_weights_first`` / ``n_weights_last`` how many have a
    value at that epoch (fewer when a member diverged: the spread then covers fewer weights).

    Args:
        df: the store frame (:func:`iwlab.results.load`), with ``variant`` and ``weight`` labels.
        metric: e.g. ``"frac_dog_test"``.

    Returns:
        One row per variant (empty when ``metric`` was not recorded).
    """
    d = df[df.name == metric]
    if d.empty:
        return pd.DataFrame()
    mean = d.groupby(["variant", "weight", "epoch"]).value.mean().reset_index()
    rows = []
    for variant, g in _by_variant(mean):
        first, last = g.epoch.min(), g.epoch.max()
        f, la = g[g.epoch == first].set_index("weight")["value"], g[g.epoch == last].set_index("weight")["value"]
        rows.append(
            {
                "variant": variant,
                "first_epoch": int(first),
                "last_epoch": int(last),
                "spread_first": float(f.max() - f.min()),
                "spread_last": float(la.max() - la.min()),
                "wmin_last": float(la.loc[la.index.min()]),
                "w1_last": float(la.loc[1.0]) if 1.0 in la.index else float("nan"),
                "wmax_last": float(la.loc[la.index.max()]),
                "n_weights": int(g.weight.nunique()),
                "n_weights_first": int(f.size),
                "n_weights_last": int(la.size),
            }
        )
    return pd.DataFrame(rows)


def agreement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and set: mean agreement across weightings and across seeds, from the stored metrics.

    Returns:
        Columns ``variant, set, across_weightings, across_seeds, n_weightings, n_seeds``.

    Example:
        >>> agreement_table(pd.DataFrame(columns=["variant", "name", "weight", "seed", "value"])).empty
        True
    """
    rows = []
    for variant, g in _by_variant(df[df.name.str.startswith("agree_")]):
        for name in SETS:
            w = g[g.name == f"agree_weights_{name}"]
            s = g[g.name == f"agree_seeds_{name}"]
            if w.empty or s.empty:
                continue
            rows.append(
                {
                    "variant": variant,
                    "set": name,
                    "across_weightings": float(w.groupby("weight").value.mean().mean()),
                    "across_seeds": float(s.value.mean()),
                    "n_weightings": int(w.weight.nunique()),
                    "n_seeds": int(s.seed.nunique()),
                }
            )
    return pd.DataFrame(rows)


def _train_acc_range(df: pd.DataFrame, variant: str) -> tuple[float, float]:
    """(lowest, highest) training accuracy over a variant's models at its last epoch; NaN if not recorded."""
    a = df[(df.variant == variant) & (df.name == "train_acc")]
    if a.empty:
        return float("nan"), float("nan")
    last = a[a.epoch == a.epoch.max()].value
    return float(last.min()), float(last.max())


def _spread_verdicts(df: pd.DataFrame, prefix: str) -> list[dict]:
    """Rows of :func:`spreads` for every set, with the verdict, Byrd & Lipton's claim and whether they match."""
    out = []
    for name in SETS:
        for r in spreads(df, f"{prefix}_{name}").to_dict("records"):
            lowest, best = _train_acc_range(df, r["variant"])
            verdict, claim, matches = level_verdict(
                CLAIMS.get(r["variant"]), r["spread_first"], r["spread_last"], lowest, best
            )
            if claim == "persists" and r["variant"] == "l2":
                claim = "persists (L2 keeps the effect)"
            if min(r["n_weights_first"], r["n_weights_last"]) < r["n_weights"]:  # a diverged member is missing
                matches = f"n/a ({r['n_weights_first']} / {r['n_weights_last']} of {r['n_weights']} weights recorded)"
            out.append({**r, "set": name, "verdict": verdict, "claim": claim, "matches": matches})
    return out


def header_lines(df: pd.DataFrame, cfg: Any, arch: str, label_noise: float = 0.0) -> list[str]:
    """The setting in one paragraph, and the accuracy table at the last epoch (min / mean / max over models)."""
    pos = cfg.classes[1]
    lines = [
        f"Classes: {cfg.classes[0]} (0) vs {pos} (1); {cfg.n_train_per_class or 'all'} training images per class "
        f"at {cfg.size}x{cfg.size}{f', {label_noise:.0%} labels flipped per class' if label_noise else ''}. "
        f"Model: {arch}, width {cfg.width:g}, dense {tuple(cfg.dense)}, init {cfg.init}. "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, seeds {cfg.seeds}.",
        "",
    ]
    last = df[df.epoch == df.epoch.max()]
    acc = last[last.name.isin(["train_acc", "test_acc"])].groupby(["variant", "name"]).value.agg(["min", "mean", "max"])
    if not acc.empty:
        lines += [
            f"### Accuracy at epoch {int(df.epoch.max())} (min / mean / max over models)",
            "",
            "| variant | train accuracy | test accuracy |",
            "|---|---|---|",
        ]
        for variant in [v for v in VARIANT_ORDER if v in set(last.variant)]:
            cells_ = []
            for n in ("train_acc", "test_acc"):
                r = acc.loc[(variant, n)] if (variant, n) in acc.index else None
                cells_.append("-" if r is None else f"{r['min']:.3f} / {r['mean']:.3f} / {r['max']:.3f}")
            lines.append(f"| {variant} | {cells_[0]} | {cells_[1]} |")
        lines.append("")
    return lines


def variant_summary(df: pd.DataFrame, cfg: Any, arch: str, label_noise: float = 0.0) -> str:
    """Markdown for the weight-grid experiments: spreads with verdicts, accuracies, agreement, divergence.

    Args:
        df: the store frame.
        cfg: the experiment's config (``classes``, sizes, network settings).
        arch: ``"cnn"`` or ``"resnet"``, for the setting line.
        label_noise: the fraction of flipped labels, for the setting line.
    """
    if df.empty:
        return "(no results)"
    pos = cfg.classes[1]
    lines = header_lines(df, cfg, arch, label_noise)
    last = df[df.epoch == df.epoch.max()]
    rows = _spread_verdicts(df, f"frac_{pos}")
    lines += [
        f"### Spread across weights of the fraction predicted as {pos}",
        "",
        f"Weight w = {pos} weight relative to {cfg.classes[0]} (the down-weighted class gets min(w, 1/w), the "
        f"other 1). Spread = max - min over weights of the seed-mean fraction. {LEVEL_RULE} {TREND_RULE}",
        "",
        "Byrd & Lipton's claim per variant: the effect of the weights fades once the models fit their training set "
        "without regularization, with dropout and with Adam; with L2 or batch norm it persists.",
        "",
        finding_line(
            [(f"{r['variant']} {r['set']}", r["verdict"], r["claim"], r["matches"]) for r in rows], "all sets"
        ),
        "",
        "| variant | set | spread at first epoch | spread at last epoch | w=min / w=1 / w=max at last epoch "
        "| verdict | Byrd & Lipton | matches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['set']} | {r['spread_first']:.3f} (epoch {r['first_epoch']}) "
            f"| {r['spread_last']:.3f} (epoch {r['last_epoch']}) "
            f"| {r['wmin_last']:.3f} / {'-' if math.isnan(r['w1_last']) else format(r['w1_last'], '.3f')} "
            f"/ {r['wmax_last']:.3f} "
            f"| {r['verdict']} | {r['claim']} | {r['matches']} |"
        )
    lines.append("")
    agree = agreement_table(df)
    if not agree.empty:
        lines += [
            "### Agreement between models at the last epoch",
            "",
            "Across weightings: per example, the fraction of the weightings (each a majority vote over seeds) "
            "that give the modal label. Across seeds: per example and weighting, the fraction of seeds that give "
            "the weighting's majority label. The paper (9 seeds, 17 weightings): 82% vs 78% on the test set, "
            "74% vs 71% on the other 8 classes, near 100% on noise.",
            "",
            "| variant | set | across weightings | across seeds | weightings x seeds |",
            "|---|---|---|---|---|",
        ]
        for r in agree.itertuples():
            lines.append(
                f"| {r.variant} | {r.set} | {r.across_weightings:.3f} | {r.across_seeds:.3f} "
                f"| {r.n_weightings} x {r.n_seeds} |"
            )
        lines.append("")
    if "train_acc_flipped" in set(df.name):
        fl = last[last.name == "train_acc_flipped"].value
        lines += [f"Flipped training labels fitted at the last epoch: {fl.mean():.3f} (mean over models).", ""]
    lines += diverged_lines(df)
    return "\n".join(lines)


def diverged_lines(df: pd.DataFrame) -> list[str]:
    """A sentence naming the cells with diverged models and how many (none: no lines).

    Example:
        >>> diverged_lines(pd.DataFrame({"run_id": ["plain"], "member": [2], "diverged_epoch": [7.0]}))
        ['Diverged models (NaN/inf parameters; nothing is recorded for them after divergence, and cells with one have no agreement rows): plain: 1.', '']
    """  # noqa: E501
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if div.empty:
        return []
    per_cell = div[["run_id", "member"]].drop_duplicates().groupby("run_id").size()
    shown = ", ".join(f"{cell}: {n}" for cell, n in per_cell.items())
    return [
        f"Diverged models (NaN/inf parameters; nothing is recorded for them after divergence, and cells with one "
        f"have no agreement rows): {shown}.",
        "",
    ]
