"""Findings computed from the numbers: the summaries' tables, one-line verdicts and their stated rules.

Pure functions of stored metrics (no plotting, no files): experiment summaries and the report use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd


def ratio_text(w: float) -> str:
    """A weight ratio as people write it: ``0.25`` -> ``"1/4"``, ``4.0`` -> ``"4"``, ``0.3`` -> ``"0.3"``.

    Example:
        >>> ratio_text(0.0625), ratio_text(4.0), ratio_text(0.3)
        ('1/16', '4', '0.3')
    """
    if w >= 1:
        return f"{w:g}"
    inv = 1 / w
    return f"1/{inv:.0f}" if abs(inv - round(inv)) < 1e-9 else f"{w:g}"


def markdown_table(df: pd.DataFrame, *, index: bool = True, floatfmt: str = ".3g") -> str:
    """A DataFrame as a GitHub Markdown table (no ``tabulate`` dependency).

    Example:
        >>> import pandas as pd
        >>> print(markdown_table(pd.DataFrame({"a": [1.23456]}), index=False))
        | a |
        |---|
        | 1.23 |
    """

    def cell(v: object) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, row in df.iterrows():
        vals = ([cell(key)] if index else []) + [cell(v) for v in row.tolist()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


# ---- verdicts computed from the numbers (the summaries' one-line findings) ------------------------------

TREND_RATIO = 1.5
TREND_FLOOR = 0.02
TREND_RULE = (
    f"Verdict rule (first vs last recorded epoch): 'shrinks' if the last value is below the first / {TREND_RATIO:g}, "
    f"'grows' if above {TREND_RATIO:g} x the first, else 'stays'; a change smaller than {TREND_FLOOR:g} counts as "
    f"'stays', and values below {TREND_FLOOR:g} at both epochs read 'none' (no effect to speak of)."
)


def trend(first: float, last: float, *, ratio: float = TREND_RATIO, floor: float = TREND_FLOOR) -> str:
    """How a non-negative effect size (e.g. the spread of a fraction across weights) changed from the first to
    the last recorded epoch: ``"none"``, ``"stays"``, ``"shrinks"`` or ``"grows"`` (rule: :data:`TREND_RULE`).

    Args:
        first: the size at the first epoch, >= 0 (same units as ``last``, e.g. a fraction in [0, 1]).
        last: the size at the last epoch, >= 0.
        ratio: factor (> 1) beyond which a change is a shrink or growth.
        floor: absolute change (>= 0) below which nothing changed, and size below which there is no effect.

    Raises:
        ValueError: ``first`` or ``last`` is negative or not finite, ``ratio <= 1`` or ``floor < 0``.

    Example:
        >>> trend(0.41, 0.03), trend(0.40, 0.38), trend(0.10, 0.35), trend(0.01, 0.0)
        ('shrinks', 'stays', 'grows', 'none')
    """
    for name, v in (("first", first), ("last", last)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: an effect size must be finite and >= 0, got {v}")
    if not ratio > 1 or not floor >= 0:
        raise ValueError(f"ratio must be > 1 and floor >= 0, got ratio={ratio}, floor={floor}")
    if first < floor and last < floor:
        return "none"
    if abs(last - first) < floor:
        return "stays"
    if last * ratio < first:
        return "shrinks"
    if last > first * ratio:
        return "grows"
    return "stays"


def trend_text(first: float, last: float) -> str:
    """``trend`` with its numbers, e.g. ``"shrinks (0.410 -> 0.030)"``; ``"n/a (missing)"`` when either is NaN.

    Raises:
        ValueError: as :func:`trend` for negative or infinite values.

    Example:
        >>> trend_text(0.41, 0.03)
        'shrinks (0.410 -> 0.030)'
    """
    if math.isnan(first) or math.isnan(last):
        return "n/a (missing)"
    return f"{trend(first, last)} ({first:.3f} -> {last:.3f})"


def claim_match(first: float, last: float, expected: tuple[str, ...] | None) -> str:
    """Whether the :func:`trend` of an effect from ``first`` to ``last`` is one of the paper's ``expected`` words:
    ``"yes"``, ``"no"``, or ``"n/a"`` with the reason (no claim; a value missing; no effect at the first epoch
    where the claim is that it fades).

    Raises:
        ValueError: as :func:`trend` for negative or infinite values.

    Example:
        >>> claim_match(0.4, 0.05, ("shrinks",)), claim_match(0.4, 0.38, ("shrinks",)), claim_match(0.4, 0.4, None)
        ('yes', 'no', 'n/a')
    """
    if math.isnan(first) or math.isnan(last):
        return "n/a (missing)"
    if expected is None:
        return "n/a"
    word = trend(first, last)
    if word == "none" and "shrinks" in expected:
        return "n/a (no effect at the first epoch)"
    return "yes" if word in expected else "no"


# Byrd & Lipton's claims are about the level the effect of the weights settles at, not about its change from
# the first epoch (there every low-weight model still predicts one class, so the spread across weights is
# near its maximum for any model). Shared by the synthetic, CIFAR and MRPC summaries.
FADED_SPREAD = 0.1
FITTED_ACC = 0.95
LEVEL_RULE = (
    f"Verdict rule: the effect of the weights has 'faded' if the spread across weights at the last epoch is below "
    f"{FADED_SPREAD:g}, else it 'persists' (the change from the first epoch is shown for reference). A claim "
    f"applies once the models have trained: 'faded' needs every model of the row at training accuracy >= "
    f"{FITTED_ACC:g} (the training data separated), 'persists' the best one; before that there is no claim."
)


def effect_level(last: float) -> str:
    """``"faded"`` if the last-epoch spread is below :data:`FADED_SPREAD`, else ``"persists"``; ``"n/a"`` if NaN.

    Example:
        >>> effect_level(0.02), effect_level(0.3), effect_level(float("nan"))
        ('faded', 'persists', 'n/a')
    """
    if math.isnan(last):
        return "n/a"
    return "faded" if last < FADED_SPREAD else "persists"


def level_verdict(
    claim: str | None, first: float, last: float, lowest_acc: float, best_acc: float
) -> tuple[str, str, str]:
    """``(verdict, claim text, matches)`` of one row under :data:`LEVEL_RULE`.

    Args:
        claim: the paper's claim for the row, ``"faded"`` or ``"persists"``, or None (no claim).
        first: the spread at the first recorded epoch (shown for reference).
        last: the spread at the last recorded epoch (judged).
        lowest_acc: lowest training accuracy over the row's models at the last epoch (NaN: not recorded).
        best_acc: highest training accuracy over the row's models at the last epoch.

    Example:
        >>> level_verdict("faded", 0.5, 0.02, 1.0, 1.0)
        ('faded; shrinks (0.500 -> 0.020)', 'faded', 'yes')
        >>> level_verdict("persists", 0.5, 0.5, 0.5, 0.5)[2]
        'n/a'
    """
    verdict = f"{effect_level(last)}; {trend_text(first, last)}"
    if claim is None:
        return verdict, "no claim", "n/a"
    if math.isnan(lowest_acc) or math.isnan(best_acc):
        return verdict, "no claim (training accuracy not recorded)", "n/a"
    if best_acc < FITTED_ACC:
        return verdict, f"no claim (models not trained yet: best train acc {best_acc:.3f})", "n/a"
    if claim == "faded" and lowest_acc < FITTED_ACC:
        return verdict, f"no claim (training data not separated: lowest train acc {lowest_acc:.3f})", "n/a"
    level = effect_level(last)
    if level == "n/a":
        return verdict, claim, "n/a (missing)"
    return verdict, claim, "yes" if level == claim else "no"


def finding_line(rows: Sequence[tuple[str, str, str, str]], what: str, source: str = "Byrd & Lipton") -> str:
    """The summary's one-line finding, computed from per-row verdicts: how many rows with a claim match
    ``source``, and which rows contradict it.

    Args:
        rows: ``(row label, verdict, claim, matches)`` per table row, ``matches`` from :func:`claim_match`.
        what: what the rows measure, e.g. ``"test points"``.
        source: whose claim.

    Example:
        >>> finding_line([("a", "shrinks (0.4 -> 0.1)", "shrinks", "yes")], "test set")
        '**Finding** (test set, computed from the table below): matches Byrd & Lipton in 1 of 1 rows.'
    """
    text = f"**Finding** ({what}, computed from the table below): "
    if not rows:
        return text + "no rows."
    claimed = [r for r in rows if r[3] in ("yes", "no")]
    bad = [r for r in rows if r[3] == "no"]
    if claimed:
        text += f"matches {source} in {sum(r[3] == 'yes' for r in claimed)} of {len(claimed)} rows"
    else:
        text += f"{source} make no claim that applies to any row here"
    if bad:
        text += "; contradicts them in " + "; ".join(f"{lab}: {v}, expected {c}" for lab, v, c, _ in bad)
    rest = len(rows) - len(claimed)
    if rest:
        text += f"; no verdict for {rest} row{'s' if rest > 1 else ''} (see the last column)"
    return text + "."
