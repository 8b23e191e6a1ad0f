"""The Markdown findings of the two-class CIFAR-10 experiments, computed from the stored metrics.

Per variant (plain, L2, dropout, Adam, batch norm): the spread across weights of the fraction predicted
as class 1 at the first and the last recorded epoch, with a verdict computed from the numbers
(:data:`iwlab.experiments.findings.LEVEL_RULE`) and compared with Byrd & Lipton's claim (2019, Secs. 4-5:
the weights' effect fades without regularization, with dropout and with Adam, and persists with L2 or
batch norm); accuracies (at each cell's own last epoch, with the epoch a time budget stopped it at); and the
agreement between models (their Sec. 4.1: 82% across weightings vs 78% across seeds on the test set) with
the gap's permutation null (:func:`iwlab.functional.agreement.agreement_null`), which says whether the gap
is beyond what the statistic gives with no weight effect.

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


# cell-level agreement metrics (cifar_train.agreement_metrics) -> agreement_table columns
NULL_COLUMNS = {
    "agree_gap": "gap",
    "agree_null_gap": "null_gap",
    "agree_null_lo": "null_lo",
    "agree_null_hi": "null_hi",
    "agree_p_above": "p_above",
    "agree_p_below": "p_below",
}


def agreement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and set: mean agreement across weightings and across seeds, and the gap's permutation null.

    Returns:
        Columns ``variant, set, across_weightings, across_seeds, n_weightings, n_seeds`` and the cell-level
        ``gap, null_gap, null_lo, null_hi, p_above, p_below`` (NaN where not recorded, e.g. with
        ``agreement_permutations=0``).

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
            cell = {}
            for metric, col in NULL_COLUMNS.items():
                v = g[g.name == f"{metric}_{name}"].value
                cell[col] = float(v.iloc[0]) if len(v) else float("nan")  # one row per cell (member 0)
            rows.append(
                {
                    "variant": variant,
                    "set": name,
                    "across_weightings": float(w.groupby("weight").value.mean().mean()),
                    "across_seeds": float(s.value.mean()),
                    "n_weightings": int(w.weight.nunique()),
                    "n_seeds": int(s.seed.nunique()),
                    **cell,
                }
            )
    return pd.DataFrame(rows)


#: one-sided test level of each direction: together the two sides make the 95% of the null interval
ALPHA_ONE_SIDED = 0.025


def null_verdict(r: Any) -> str:
    """One sentence: is the observed agreement gap beyond what the statistic gives with no weight effect?

    The decision reads the one-sided permutation p-values at :data:`ALPHA_ONE_SIDED` (``p_below`` for a weight
    effect, ``p_above`` for the other direction); the interval is shown for scale. With one seed there are no
    seeds to compare and nothing to permute, so no verdict.

    Args:
        r: a row of :func:`agreement_table` (``gap``, ``null_lo``, ``null_hi``, ``null_gap``, ``p_above``,
            ``p_below``, ``n_seeds``).

    Example:
        >>> null_verdict(pd.Series({"gap": 0.028, "null_gap": 0.02, "null_lo": 0.01, "null_hi": 0.03,
        ...                         "p_above": 0.1, "p_below": 0.9, "n_seeds": 3}))
        'the gap +0.028 is not beyond what the statistic gives with no weight effect (null mean +0.020, 95% interval [+0.010, +0.030]; p below 0.9, p above 0.1)'
    """  # noqa: E501
    if r.get("n_seeds", 2) < 2:
        return "not calibrated: agreement across seeds needs at least 2 seeds (this run has 1)"
    if r.get("n_weightings", 2) < 2:
        return "not calibrated: a permutation across weightings needs at least 2 weightings (this run has 1)"
    if math.isnan(r["null_lo"]):
        return f"the gap {r['gap']:+.3f} is not calibrated (agreement_permutations=0)"
    where = f"null mean {r['null_gap']:+.3f}, 95% interval [{r['null_lo']:+.3f}, {r['null_hi']:+.3f}]"
    if r["p_below"] <= ALPHA_ONE_SIDED:
        return (
            f"the gap {r['gap']:+.3f} is below what the statistic gives with no weight effect ({where}; "
            f"p below = {r['p_below']:.3g}): models that share a weight agree with each other more than with the "
            "others, a weight effect on which examples are predicted"
        )
    if r["p_above"] <= ALPHA_ONE_SIDED:
        return (
            f"the gap {r['gap']:+.3f} is above what the statistic gives with no weight effect ({where}; "
            f"p above = {r['p_above']:.3g}): models that share a weight agree less than random regroupings of them"
        )
    return (
        f"the gap {r['gap']:+.3f} is not beyond what the statistic gives with no weight effect ({where}; "
        f"p below {r['p_below']:.3g}, p above {r['p_above']:.3g})"
    )


def agreement_lines(df: pd.DataFrame) -> list[str]:
    """The agreement section of the report: the table with the calibrated gap and one verdict per row."""
    agree = agreement_table(df)
    if agree.empty:
        return []
    lines = [
        "### Agreement between models at the last epoch",
        "",
        "Across weightings: per example, the fraction of the weightings (each a majority vote over seeds) "
        "that give the modal label. Across seeds: per example and weighting, the fraction of seeds that give "
        "the weighting's majority label. The paper (9 seeds, 17 weightings): 82% vs 78% on the test set, "
        "74% vs 71% on the other 8 classes, near 100% on noise.",
        "",
        "The gap (across weightings - across seeds) is positive even when the weights do nothing: votes over "
        "seeds are less noisy than single models. The null reassigns the models to weightings at random within "
        "each seed (a model keeps its seed, i.e. its initialization) and recomputes the gap; the null 95% "
        "interval is the central 95% of those gaps: the range the statistic gives with no weight effect. "
        "p below / p above: one-sided permutation p-values, (1 + #{null gap <= gap}) / (1 + n) and the same "
        "with >=. **Read p below**: a weight effect on which examples are predicted makes models that share a "
        "weight agree more, so the gap falls *below* the null; the verdicts call a gap beyond the null when "
        "p below (or p above, the other direction) is at most 0.025. With one seed there is nothing to compare "
        "across seeds and no verdict.",
        "",
        "| variant | set | across weightings | across seeds | gap | null gap (mean) | null 95% interval "
        "| p below | p above | weightings x seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in agree.to_dict("records"):
        interval = "-" if math.isnan(r["null_lo"]) else f"[{r['null_lo']:+.3f}, {r['null_hi']:+.3f}]"

        def num(v: float, fmt: str) -> str:
            return "-" if math.isnan(v) else format(v, fmt)

        lines.append(
            f"| {r['variant']} | {r['set']} | {r['across_weightings']:.3f} | {r['across_seeds']:.3f} "
            f"| {num(r['gap'], '+.3f')} | {num(r['null_gap'], '+.3f')} | {interval} | {num(r['p_below'], '.3g')} "
            f"| {num(r['p_above'], '.3g')} | {r['n_weightings']} x {r['n_seeds']} |"
        )
    lines.append("")
    lines += [f"- {r['variant']}, {r['set']}: {null_verdict(r)}." for r in agree.to_dict("records")]
    lines.append("")
    return lines


def last_epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each cell at its own last recorded epoch (cells stopped by a time budget end earlier).

    Example:
        >>> d = pd.DataFrame({"run_id": ["a", "a", "b"], "epoch": [1, 2, 1], "value": [0.1, 0.2, 0.3]})
        >>> last_epoch_rows(d).value.tolist()
        [0.2, 0.3]
    """
    key = "run_id" if "run_id" in df else "variant"
    return df[df.epoch == df.groupby(key).epoch.transform("max")]


def budget_lines(df: pd.DataFrame, cfg: Any) -> list[str]:
    """A sentence per cell on the time budget: the epoch it stopped at and its seconds (none: no lines)."""
    b = df[df.name == "trained_epochs"]
    if b.empty:
        return []
    secs = df[df.name == "train_seconds"].set_index("run_id").value
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    b = b.assign(_o=b.variant.map(order) if "variant" in b else 0).sort_values(["_o", "run_id"])
    parts = []
    for cell, e in b.set_index("run_id").value.items():
        took = f"{secs[cell]:.1f} s" if cell in secs else "? s"
        parts.append(
            f"{cell} trained all {int(e)} epochs ({took})"
            if int(e) >= cfg.epochs
            else f"{cell} stopped at epoch {int(e)} of {cfg.epochs} ({took}, budget reached)"
        )
    return [
        f"Time budget {cfg.time_budget_s:g} s per cell (training stops at the end of the first evaluated epoch "
        f"past it; the last epoch below is each cell's own): {'; '.join(parts)}.",
        "",
    ]


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
    lines += budget_lines(df, cfg)
    last = last_epoch_rows(df)
    acc = last[last.name.isin(["train_acc", "test_acc"])].groupby(["variant", "name"]).value.agg(["min", "mean", "max"])
    epochs = sorted({int(e) for e in last.epoch})
    if not acc.empty:
        lines += [
            f"### Accuracy at epoch {', '.join(map(str, epochs))} (the last; min / mean / max over models)",
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
    last = last_epoch_rows(df)
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
    lines += agreement_lines(df)
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
