"""cifar_binary's last epoch against what Byrd & Lipton (2019) report for the cats-vs-dogs CNN (Fig. 4, Sec. 4).

Per variant, at its own last epoch (a time budget may stop variants at different epochs): the fraction
predicted as dog on the test, other-class and noise images next to the paper's values (:data:`PAPER_FIG4`),
the test accuracy against the paper's 80-85%, and two claims checked from the numbers: noise images are
nearly always called cats (:data:`NOISE_CAT`), and with dropout the dog fraction no longer depends on the
weight (spread across weights below :data:`iwlab.experiments.findings.FADED_SPREAD`, as for the verdicts
of :mod:`iwlab.experiments.cifar_summary`). The paper's numbers are for 1000 epochs; a short run that does
not match them says at which epoch the claim still fails, not that the claim is wrong.

Example:
    >>> df = pd.DataFrame({"variant": ["plain"] * 2, "weight": [0.25, 4.0], "seed": [0, 0], "epoch": [6, 6],
    ...                    "name": ["frac_dog_noise"] * 2, "value": [0.02, 0.04]})
    >>> noise_claim(df, "plain", "dog")
    'holds at epoch 6: mean dog fraction on noise 0.030 (max over models 0.040)'
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from iwlab.experiments.cifar_common import SETS, VARIANT_ORDER
from iwlab.experiments.cifar_summary import last_epoch_rows, spreads
from iwlab.experiments.findings import FADED_SPREAD, FITTED_ACC

# "nearly-always classified as cats" (Sec. 4.1) read as: mean dog fraction on noise images below this (ours)
NOISE_CAT = 0.1

# What the paper states for the CNN after 1000 epochs. Fig. 4 itself is a plot, and the paper text this
# project keeps (shared/papers/byrd-lipton-2019-effect-of-importance-weighting.md) has its caption but not
# its data: no value is read off the plot here ("value": None means "plot only, not read").
PAPER_FIG4: dict[str, dict[str, Any]] = {
    "test_acc": {
        "value": (0.80, 0.85),
        "source": "Sec. 4: all unregularized classifiers reach (unweighted) test accuracy between 80% and 85%",
    },
    "frac_test": {
        "value": (0.30, 0.70),
        "source": "implied by 80-85% accuracy on the balanced cat/dog test set (|fraction - 0.5| <= 1 - "
        "accuracy); Fig. 4 (a, d) itself is a plot, not read",
    },
    "frac_other": {"value": None, "source": "Fig. 4 (b, d): a plot only, not read"},
    "frac_noise": {
        "value": (0.0, NOISE_CAT),
        "source": f"Sec. 4.1: noise images 'are nearly-always classified as cats' (read as below {NOISE_CAT:g}; "
        "Fig. 4 c)",
    },
    "dropout": {
        "value": None,
        "source": "Fig. 4 (f), Secs. 5-6: with dropout the dog fraction does not depend on the weight after "
        "training, as without regularization (with L2 it does, Fig. 4 e)",
    },
}


def _range_text(v: tuple[float, float] | None) -> str:
    return "plot only (not read)" if v is None else f"{v[0]:.2f}-{v[1]:.2f}"


def _not_fitted(df: pd.DataFrame, variant: str, epoch: int) -> str | None:
    """``"not testable yet at epoch E: ..."`` while a variant's models have not fit their training data (lowest
    training accuracy below :data:`~iwlab.experiments.findings.FITTED_ACC`, as the spread verdicts), else None:
    the paper's claims are about trained models."""
    acc = last_epoch_rows(df[(df.variant == variant) & (df.name == "train_acc")]).value
    if acc.empty or acc.min() >= FITTED_ACC:
        return None
    return (
        f"not testable yet at epoch {epoch}: the models have not fit their training data (lowest training accuracy "
        f"{acc.min():.3f} < {FITTED_ACC:g}; the paper's claim is about trained models, 1000 epochs)"
    )


def noise_claim(df: pd.DataFrame, variant: str, pos: str) -> str:
    """Whether a variant's models call noise images the negative class (cat) at its last epoch, in words.

    Args:
        df: the store frame.
        variant: e.g. ``"plain"``.
        pos: the positive class, e.g. ``"dog"``.

    Returns:
        ``"holds at epoch E: ..."``, ``"fails at epoch E: ..."``, ``"not testable yet at epoch E: ..."`` (the
        models have not fit their training data) or ``"n/a (...)"``.
    """
    d = last_epoch_rows(df[(df.variant == variant) & (df.name == f"frac_{pos}_noise")])
    if d.empty:
        return "n/a (no noise images evaluated)"
    epoch, mean, top = int(d.epoch.max()), float(d.value.mean()), float(d.value.max())
    seen = f"mean {pos} fraction on noise {mean:.3f} (max over models {top:.3f})"
    not_yet = _not_fitted(df, variant, epoch)  # neither holds nor fails before the models are trained
    if not_yet:
        return f"{not_yet}; {seen}"
    return f"{'holds' if mean < NOISE_CAT else 'fails'} at epoch {epoch}: {seen}"


def dropout_claim(df: pd.DataFrame, pos: str) -> str:
    """Whether the dropout models' fraction predicted ``pos`` no longer depends on the weight, in words.

    Judged on every set: the spread across weights of the seed-mean fraction at the last epoch must be
    below :data:`~iwlab.experiments.findings.FADED_SPREAD`.
    """
    rows = []
    for name in SETS:
        t = spreads(df[df.variant == "dropout"], f"frac_{pos}_{name}")
        if not t.empty:
            rows.append((name, float(t.spread_last.iloc[0]), int(t.last_epoch.iloc[0])))
    if not rows:
        return "n/a (no dropout variant)"
    epoch = max(e for _, _, e in rows)
    shown = ", ".join(f"{name} {s:.3f}" for name, s, _ in rows)
    n_weights = df[(df.variant == "dropout") & df.name.str.startswith(f"frac_{pos}_")].weight.nunique()
    if n_weights < 2:  # a spread across one weight is 0 by construction
        return f"n/a at epoch {epoch}: the dropout models have {n_weights} weighting (a spread needs at least 2)"
    not_yet = _not_fitted(df, "dropout", epoch)
    if not_yet:
        return f"{not_yet}; spread across weights {shown}"
    acc = df[(df.variant == "dropout") & (df.name == "train_acc")]
    acc = last_epoch_rows(acc).value
    fitted = f"; lowest training accuracy {acc.min():.3f}" if len(acc) else ""
    if all(s < FADED_SPREAD for _, s, _ in rows):
        return f"holds at epoch {epoch}: spread across weights {shown} (all below {FADED_SPREAD:g})"
    return (
        f"fails at epoch {epoch}: spread across weights {shown} (not all below {FADED_SPREAD:g}{fitted}; "
        "the paper's claim is for 1000 epochs)"
    )


def paper_lines(df: pd.DataFrame, cfg: Any) -> list[str]:
    """The report section: dog fractions and test accuracy at each variant's last epoch against the paper.

    Args:
        df: the store frame of a cifar_binary run.
        cfg: its config (``classes``).

    Returns:
        Markdown lines (none when nothing was recorded).
    """
    pos = cfg.classes[1]
    last = last_epoch_rows(df)
    variants = [v for v in VARIANT_ORDER if v in set(last.variant)]
    if not variants:
        return []
    lines = [
        "### Against Byrd & Lipton's Fig. 4 (cats vs dogs, CNN, 1000 epochs)",
        "",
        f"Fraction predicted as {pos} at each variant's last epoch: mean over models, and the seed-mean at the "
        f"smallest / largest weight. The paper's values and where they come from:",
        "",
        *[
            f"- {k}: {v['source']}." if v["value"] is None else f"- {k}: {_range_text(v['value'])} ({v['source']})."
            for k, v in PAPER_FIG4.items()
        ],
        "",
        "| variant | epoch | set | mean | w=min / w=max | paper |",
        "|---|---|---|---|---|---|",
    ]
    for variant in variants:
        for name in SETS:
            d = last[(last.variant == variant) & (last.name == f"frac_{pos}_{name}")]
            if d.empty:
                continue
            by_w = d.groupby("weight").value.mean()
            lines.append(
                f"| {variant} | {int(d.epoch.max())} | {name} | {d.value.mean():.3f} "
                f"| {by_w.iloc[0]:.3f} / {by_w.iloc[-1]:.3f} | {_range_text(PAPER_FIG4[f'frac_{name}']['value'])} |"
            )
    lo, hi = PAPER_FIG4["test_acc"]["value"]
    lines += ["", f"Test accuracy (paper: {lo:.0%}-{hi:.0%} for the unregularized models):", ""]
    for variant in variants:
        a = last[(last.variant == variant) & (last.name == "test_acc")].value
        if a.empty:
            continue
        where = "within" if lo <= a.mean() <= hi else ("below" if a.mean() < lo else "above")
        # the paper states the range for the unregularized models only
        said = f"mean {where} the paper's range" if variant == "plain" else "no paper value for this variant"
        lines.append(f"- {variant}: {a.min():.3f} / {a.mean():.3f} / {a.max():.3f} (min / mean / max), {said}.")
    lines += [
        "",
        "Noise-image claim (Sec. 4.1, noise 'nearly-always classified as cats'): "
        + "; ".join(f"{v}: {noise_claim(df, v, pos)}" for v in variants)
        + ".",
        "",
        f"Dropout claim (Fig. 4 f: with dropout the {pos} fraction does not depend on the weight): "
        f"{dropout_claim(df, pos)}.",
        "",
    ]
    return lines
