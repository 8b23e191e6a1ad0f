"""cifar_imbalanced: CIFAR-10 cats vs dogs with one class sub-sampled, with and without the compensating weight
(Byrd & Lipton 2019, Fig. A.6).

One cell per (sub-sampled class, factor f): the class keeps 1/f of its training images
(:func:`iwlab.data.resample.kept_count` rounding) and two models per seed train on the same data, one
unweighted and one with the other class's loss multiplied by 1/f (importance weights that undo the
sub-sampling in expectation). Byrd & Lipton: sub-sampling shifts the predictions towards the majority
class, and late in training the weights do not undo the shift. Metrics as in
:mod:`iwlab.experiments.cifar_common`; members carry ``subsampled``, ``factor`` and ``weighted`` labels.

Example:
    >>> [c for c, _ in cells(ImbalancedConfig(fixture=True, subsampled=("cat",), factors=(2.0, 8.0)))]
    ['cat_x2', 'cat_x8']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from iwlab.config import Bound
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import (
    CI_TWO_CLASS,
    CNN_PAPER,
    SETS,
    TwoClassConfig,
    check_data,
    cnn_fn,
    make_members,
    two_class_data,
)
from iwlab.experiments.cifar_summary import diverged_lines, header_lines
from iwlab.experiments.cifar_train import train_two_class
from iwlab.experiments.findings import TREND_RULE, finding_line, trend, trend_text
from iwlab.train import Member


@dataclass
class ImbalancedConfig(TwoClassConfig):
    """cifar_imbalanced: one class sub-sampled by ``factor``, unweighted vs the other down-weighted by 1/factor.

    Defaults: the quick profile.
    """

    subsampled: tuple[str, ...] = ("cat", "dog")  # which class is sub-sampled (one cell per class x factor)
    factors: tuple[float, ...] = (4.0,)  # keep 1/factor of the sub-sampled class
    n_train_per_class: int = 200
    seeds: int = 2

    BOUNDS: ClassVar[dict[str, Bound]] = {"factors": Bound(1, 1e6)}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: ``subsampled`` names a class outside ``classes``, a factor below 1 or not finite, or
                ``agreement_permutations`` changed (these cells are no weight x seed grid: no agreement).
        """
        super().validate()
        if self.agreement_permutations != TwoClassConfig.agreement_permutations:
            raise ValueError("agreement_permutations: cifar_imbalanced records no agreement (no weight x seed grid)")
        if not self.subsampled or any(c not in self.classes for c in self.subsampled):
            raise ValueError(f"subsampled must name classes of {self.classes}, got {self.subsampled}")
        if not self.factors or any(not (f >= 1 and math.isfinite(f)) for f in self.factors):
            raise ValueError(f"factors must be finite and >= 1, got {self.factors}")


PROFILES: dict[str, dict] = {
    "quick": {},
    # the paper does not list its sub-sampling factors; these are an assumption
    "paper": {**CNN_PAPER, "factors": (2.0, 4.0, 8.0, 16.0)},
    "ci": {**CI_TWO_CLASS, "factors": (2.0,), "subsampled": ("cat",)},
}
PACK_KEYS = ("factors", "subsampled")


def cells(cfg: ImbalancedConfig) -> list[tuple[str, dict]]:
    """One cell per sub-sampled class x factor.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
    """
    check_data(cfg)
    return [
        (f"{c}_x{f:g}", {"variant": "plain", "subsampled": c, "factor": f}) for c in cfg.subsampled for f in cfg.factors
    ]


def members(cfg: ImbalancedConfig, subsampled: str, factor: float) -> list[Member]:
    """Per seed: the unweighted model and the one that down-weights the other class by ``1/factor``.

    The weight is class 1's relative to class 0: ``factor`` when class 1 was sub-sampled (class 0 is
    down-weighted), ``1/factor`` otherwise. With ``factor = 1`` there is only the unweighted model.

    Example:
        >>> [m.class_weight for m in members(ImbalancedConfig(seeds=1), "dog", 4.0)]
        [(1.0, 1.0), (0.25, 1.0)]
    """
    w_comp = factor if subsampled == cfg.classes[1] else 1.0 / factor  # class-1 weight relative to class 0
    grid = [(w, {"subsampled": subsampled, "factor": factor, "weighted": w != 1.0}) for w in (1.0, w_comp)]
    if factor == 1.0:
        grid = grid[:1]
    return make_members(cfg, grid, variant="plain", arch="cnn", lr=lambda w: cfg.lr)


def run_cell(cfg: ImbalancedConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one (class, factor) cell's models on the sub-sampled data; record metrics and predictions."""
    sub, f = params["subsampled"], params["factor"]
    task = two_class_data(cfg, subsample={sub: 1.0 / f})
    return train_two_class(cfg, task, members(cfg, sub, f), cnn_fn(cfg), ctx, with_agreement=False)


def summary(df: pd.DataFrame, cfg: ImbalancedConfig) -> str:
    """Markdown: accuracies, and the fraction predicted as class 1 with and without the compensating weight,
    with verdicts computed from the numbers: the weights' effect |weighted - unweighted| first vs last
    epoch, and on the (balanced) test set whether sub-sampling alone shifted the prediction towards the
    majority class."""
    if df.empty:
        return "(no results)"
    pos = cfg.classes[1]
    prefix = f"frac_{pos}"
    rows, table = [], []
    for name in SETS:
        d = df[df.name == f"{prefix}_{name}"]
        if d.empty:
            continue
        first, last = d.epoch.min(), d.epoch.max()
        m = d.groupby(["subsampled", "factor", "weighted", "epoch"]).value.mean()
        for (sub, f), _ in d.groupby(["subsampled", "factor"]):
            vals = [m.get((sub, f, wt, e)) for e in (first, last) for wt in (False, True)]
            shown = " | ".join("-" if v is None else f"{v:.3f}" for v in vals)
            if any(v is None for v in vals):
                verdict, matches = "n/a (missing)", "n/a (missing)"
            else:
                eff_first, eff_last = abs(vals[1] - vals[0]), abs(vals[3] - vals[2])
                verdict = trend_text(eff_first, eff_last)
                matches = "yes" if trend(eff_first, eff_last) in ("shrinks", "none") else "no"
            majority = "-"
            if name == "test" and vals[2] is not None:
                # the test set is balanced: the majority class is the one that was not sub-sampled
                towards = vals[2] < 0.5 if sub == pos else vals[2] > 0.5
                majority = f"{'yes' if towards else 'no'} ({vals[2]:.3f} predicted {pos})"
            table.append(f"| {sub} | {f:g} | {name} | {shown} | {majority} | {verdict} | {matches} |")
            rows.append((f"{sub} kept 1/{f:g} {name}", verdict, "the weights' effect fades", matches))
    lines = [
        *header_lines(df, cfg, "cnn"),
        f"### Fraction predicted as {pos}: sub-sampling alone vs sub-sampling plus the compensating weight",
        "",
        "Sub-sampling one class by factor f; the weighted models multiply the other class's loss by 1/f. "
        "Byrd & Lipton's claim (Fig. A.6): sub-sampling shifts the predictions towards the majority class, and the "
        "weights do not undo it late in training, so their effect |weighted - unweighted| fades ('shrinks' or "
        f"'none'). {TREND_RULE}",
        "",
        finding_line(rows, "the weights' effect"),
        "",
        "| sub-sampled | factor | set | unweighted, first | weighted, first | unweighted, last | weighted, last "
        "| towards the majority (unweighted, last) | weights' effect | matches |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *table,
        "",
    ]
    return "\n".join(lines + diverged_lines(df))


EXPERIMENT = Experiment(
    name="cifar_imbalanced",
    description="CIFAR-10 cats vs dogs, one class sub-sampled: weighting vs sub-sampling alone (Fig A.6)",
    config=ImbalancedConfig,
    profiles=PROFILES,
    gpu_profiles=("paper",),  # the paper's CNN at full size
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
