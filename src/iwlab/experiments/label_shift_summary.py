"""The Markdown findings of the ``label_shift`` experiment, computed from the stored metrics.

Two tables and a one-line finding: the mean squared error of each weight estimator against the true w
per target sample size (last epoch), and the target accuracy of each correction at the first, best and last
recorded epoch with the training accuracy at the last (interpolation). The frames here are also what the
figures (:mod:`iwlab.plots.label_shift`) draw.

Example:
    >>> df = pd.DataFrame({"family": ["f"] * 2, "seed": [0, 1], "shift": ["s"] * 2, "epoch": [5, 5],
    ...                    "name": ["mse_bbse_hard_n100"] * 2, "value": [0.1, 0.3]})
    >>> estimator_frame(df)[["family", "estimator", "n", "mean", "count"]].to_dict("records")
    [{'family': 'f', 'estimator': 'bbse_hard', 'n': 100, 'mean': 0.2, 'count': 2}]
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from iwlab.experiments.findings import trend_text

ALL = "all shifts"
INTERPOLATED = 0.999  # training accuracy from which a model counts as interpolating its training set
# correction -> (target accuracy metric, training accuracy metric of the model it corrects)
CORRECTION_METRICS = {
    "none": ("acc_none", "train_acc_source"),
    "posthoc_est": ("acc_posthoc_est", "train_acc_source"),
    "posthoc_true": ("acc_posthoc_true", "train_acc_source"),
    "iw_est": ("acc_iw_est", "train_acc_iw_est"),
    "iw_true": ("acc_iw_true", "train_acc_iw_true"),
}
CORRECTION_TEXT = {
    "none": "no correction",
    "posthoc_est": "post-hoc, estimated w",
    "posthoc_true": "post-hoc, true w",
    "iw_est": "IW-ERM, estimated w",
    "iw_true": "IW-ERM, true w",
}
_MSE = r"^mse_(?P<estimator>.+)_n(?P<n>\d+)$"


def estimator_frame(df: pd.DataFrame, epoch: int | None = None) -> pd.DataFrame:
    """Estimator MSE per (family, estimator, n) at ``epoch`` (default: the last recorded): mean, std and count
    over seeds x shifts of the family; ``estimator == "empirical"`` is the sampling-noise reference.

    Returns:
        Columns ``family, estimator, n, mean, std, count`` (``family`` includes :data:`ALL`).
    """
    cols = ["family", "estimator", "n", "mean", "std", "count"]
    d = df[df.name.str.match(_MSE)] if not df.empty else df
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d[d.epoch == (d.epoch.max() if epoch is None else epoch)]
    parts = d.name.str.extract(_MSE)
    d = d.assign(estimator=parts.estimator, n=parts.n.astype(int))
    groups = [d] if d.family.nunique() == 1 else [d, d.assign(family=ALL)]
    agg = pd.concat(groups).groupby(["family", "estimator", "n"], sort=False).value.agg(["mean", "std", "count"])
    return agg.reset_index()[cols]


def correction_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Target and training accuracy per (family, correction, epoch): mean and std over seeds x shifts.

    Returns:
        Columns ``family, correction, epoch, acc, acc_std, train_acc, train_wacc, gain, count`` (``family``
        includes :data:`ALL`; ``train_wacc``: the IW-ERM models' class-weighted training accuracy, NaN for the
        others; ``gain``: the mean of acc minus the no-correction accuracy of the same seed and shift).
    """
    cols = ["family", "correction", "epoch", "acc", "acc_std", "train_acc", "train_wacc", "gain", "count"]
    keys = ["family", "shift", "seed", "epoch"]
    if df.empty or "family" not in df:
        return pd.DataFrame(columns=cols)
    base = df[df.name == "acc_none"][keys + ["value"]].rename(columns={"value": "base"})
    parts = []
    for corr, (acc, train) in CORRECTION_METRICS.items():
        a = df[df.name == acc][keys + ["value"]].rename(columns={"value": "acc"})
        if a.empty:
            continue
        t = df[df.name == train][keys + ["value"]].rename(columns={"value": "train_acc"})
        a = a.merge(t, on=keys, how="left").merge(base, on=keys, how="left")
        wname = train.replace("train_acc_iw", "train_wacc_iw") if corr.startswith("iw") else None
        tw = df[df.name == wname][keys + ["value"]].rename(columns={"value": "train_wacc"})
        a = a.merge(tw, on=keys, how="left")
        parts.append(a.assign(correction=corr, gain=a.acc - a.base))
    if not parts:
        return pd.DataFrame(columns=cols)
    d = pd.concat(parts)
    d = pd.concat([d, d.assign(family=ALL)]) if d.family.nunique() > 1 else d
    g = d.groupby(["family", "correction", "epoch"], sort=False)
    out = g.agg(
        acc=("acc", "mean"),
        acc_std=("acc", "std"),
        train_acc=("train_acc", "mean"),
        train_wacc=("train_wacc", "mean"),
        gain=("gain", "mean"),
    )
    return out.assign(count=g.size()).reset_index()[cols]


def diverged_lines(df: pd.DataFrame) -> list[str]:
    """A sentence counting the (seed, shift) members with a diverged model (none: no lines).

    Example:
        >>> diverged_lines(pd.DataFrame({"member": [2, 2], "diverged_epoch": [7.0, 7.0]}))
        ['Members with a diverged model (NaN/inf parameters; nothing is recorded for it after divergence): 1.', '']
    """
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if div.empty:
        return []
    n = len(div[["run_id", "member"]].drop_duplicates()) if "run_id" in div else div.member.nunique()
    return [
        f"Members with a diverged model (NaN/inf parameters; nothing is recorded for it after divergence): {n}.",
        "",
    ]


def _pm(m: float, s: float) -> str:
    return "-" if math.isnan(m) else f"{m:.3g} ± {0.0 if math.isnan(s) else s:.2g}"


def estimator_table(df: pd.DataFrame) -> list[str]:
    """The MSE table: one row per (family, estimator), one column per target size."""
    e = estimator_frame(df)
    if e.empty:
        return ["(no estimator errors recorded)"]
    ns = sorted(e.n.unique())
    lines = ["| shift | estimator | " + " | ".join(f"n = {n}" for n in ns) + " |", "|---|---|" + "---|" * len(ns)]
    for (fam, est), g in e.groupby(["family", "estimator"], sort=False):
        vals = g.set_index("n")
        cells = [_pm(vals["mean"].get(n, math.nan), vals["std"].get(n, math.nan)) for n in ns]
        lines.append(f"| {fam} | {est} | " + " | ".join(cells) + " |")
    return lines


def correction_table(c: pd.DataFrame) -> list[str]:
    """Target accuracy per (family, correction): first, best (epoch) and last epoch, gain and train acc at last."""
    lines = [
        "| shift | correction | target acc, first epoch | best (epoch) | last epoch | gain over none, last "
        "| train acc, last | w-weighted train acc, last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fams = list(dict.fromkeys(c.family))
    for fam in fams:
        for corr in CORRECTION_METRICS:
            g = c[(c.family == fam) & (c.correction == corr)].set_index("epoch")
            if g.empty:
                continue
            lines.append(_correction_row(fam, corr, g))
    return lines


def _correction_row(fam: str, corr: str, g: pd.DataFrame) -> str:
    """One row of :func:`correction_table` from one (family, correction)'s frame indexed by epoch."""
    first, last, best = g.index.min(), g.index.max(), g.acc.idxmax()
    return (
        f"| {fam} | {CORRECTION_TEXT[corr]} | {_pm(g.acc[first], g.acc_std[first])} | {g.acc[best]:.3f} ({best}) "
        f"| {_pm(g.acc[last], g.acc_std[last])} | {g.gain[last]:+.3f} | {g.train_acc[last]:.3f} "
        f"| {'-' if math.isnan(g.train_wacc[last]) else format(g.train_wacc[last], '.3f')} |"
    )


def finding(c: pd.DataFrame) -> str:
    """The one-line finding over all shifts: which correction with estimated weights wins at the last epoch,
    by how much, whether the models interpolate, and how IW-ERM's gain over no correction changed from its
    best epoch to the last.

    Example:
        >>> c = pd.DataFrame({"family": "f", "epoch": [1, 9] * 3, "correction": ["none"] * 2 + ["posthoc_est"] * 2
        ...                   + ["iw_est"] * 2, "acc": [.5, .8, .6, .9, .7, .8], "train_acc": [.5, 1.] * 3,
        ...                   "gain": [0, 0, .1, .1, .2, 0.]})
        >>> print(finding(c))  # doctest: +ELLIPSIS
        **Finding** (f, last epoch 9, computed from the table below): post-hoc correction wins by 10.0 points ...
    """
    fam = ALL if (c.family == ALL).any() else c.family.iloc[0]
    c = c[c.family == fam]
    last = int(c.epoch.max())
    at = c[c.epoch == last].set_index("correction")
    if not {"posthoc_est", "iw_est"} <= set(at.index):
        return "**Finding**: n/a (post-hoc or IW-ERM accuracy with estimated weights missing at the last epoch)."
    ph, iw = at.acc["posthoc_est"], at.acc["iw_est"]
    winner = "post-hoc correction" if ph > iw else "IW-ERM" if iw > ph else "neither (a tie)"
    src, iw_train = (
        float(at.train_acc["none"]),
        float(at["train_wacc"].get("iw_est", math.nan)) if "train_wacc" in at else math.nan,
    )
    fitted = "interpolates" if src >= INTERPOLATED else "does not interpolate yet"
    iw_gain = c[c.correction == "iw_est"].set_index("epoch").gain
    best = int(iw_gain.idxmax())
    fades = trend_text(max(float(iw_gain[best]), 0.0), max(float(iw_gain[last]), 0.0))
    return (
        f"**Finding** ({fam}, last epoch {last}, computed from the table below): {winner} wins by "
        f"{abs(ph - iw) * 100:.1f} points of target accuracy with estimated weights (post-hoc {ph:.3f}, IW-ERM "
        f"{iw:.3f}, no correction {at.acc['none']:.3f}); the source model {fitted} (train acc {src:.3f}; IW-ERM "
        f"models' w-weighted train acc {iw_train:.3f}); "
        f"IW-ERM's gain over no correction from its best epoch ({best}) to the last: {fades}; post-hoc's gain at "
        f"the last epoch: {at.gain['posthoc_est']:+.3f}."
    )


def summary(df: pd.DataFrame, cfg: Any) -> str:
    """Markdown: estimator MSE vs target size, the correction table and the finding computed from them."""
    if df.empty:
        return "(no results)"
    model = f"MLP {tuple(cfg.hidden)}" if cfg.dataset == "mnist" else f"CNN width {cfg.width:g}, dense {cfg.hidden}"
    c = correction_frame(df)
    lines = [
        f"{cfg.dataset}{' (generated fixture)' if cfg.fixture else ''}, {model}, {cfg.n_train_per_class} training "
        f"and {cfg.n_holdout_per_class} held-out source images per class, SGD lr {cfg.lr:g}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, {cfg.seeds} seeds; correction estimator {cfg.correction}. "
        "± is one standard deviation over seeds x shifts of a row.",
        "",
        finding(c) if not c.empty else "**Finding**: n/a (no accuracies recorded).",
        "",
        "### Weight estimation error (last epoch)",
        "",
        "MSE = mean over the K classes of (w_hat - w)^2 against the true w = q/p (a squared error summed over the "
        "classes is K times it); 'empirical' is the drawn target sample's own label-frequency ratio against the "
        "true w, the sampling noise no estimator removes.",
        "",
        *estimator_table(df),
        "",
        "### Target accuracy per correction",
        "",
        "Post-hoc: the correction estimator's posteriors reweighted by w and renormalized (estimated at each epoch "
        "from that epoch's model); IW-ERM: models retrained with class weights w (estimated from the finished "
        "source model). Gain: accuracy minus the no-correction accuracy of the same seed and shift.",
        "",
        *(correction_table(c) if not c.empty else ["(no accuracies recorded)"]),
        "",
    ]
    failed = df[df.name.str.startswith("failed_") & (df.epoch == df.epoch.max()) & (df.value > 0)]
    if not failed.empty:
        lines += [f"Estimator refusals at the last epoch (no value recorded): {int(failed.value.sum())}.", ""]
    return "\n".join(lines + diverged_lines(df))
