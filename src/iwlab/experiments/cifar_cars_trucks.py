"""cifar_cars_trucks: CIFAR-10 automobile (class 0) vs truck (class 1) (Byrd & Lipton 2019, Fig. A.8).

One cell, ``plain``: the paper's CNN trained with SGD on every weight ratio x seed; the weight is the
truck weight relative to the automobile weight. Metrics as in :mod:`iwlab.experiments.cifar_common`
(``frac_truck_test`` etc.).

Example:
    >>> [c for c, _ in cells(CarsTrucksConfig(fixture=True))]
    ['plain']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from iwlab.config import WEIGHT, Bound
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import (
    CI_TWO_CLASS,
    CNN_PAPER,
    TwoClassConfig,
    check_data,
    check_weight_grid,
    cnn_fn,
    make_members,
    pow2,
    two_class_data,
)
from iwlab.experiments.cifar_summary import variant_summary
from iwlab.experiments.cifar_train import train_two_class


@dataclass
class CarsTrucksConfig(TwoClassConfig):
    """cifar_cars_trucks: automobile (0) vs truck (1), the paper's CNN; defaults: the quick profile."""

    classes: tuple[str, ...] = ("automobile", "truck")
    weights: tuple[float, ...] = pow2(-4, 4, 2)  # truck weight relative to automobile (a weight ratio)
    seeds: int = 2

    BOUNDS: ClassVar[dict[str, Bound]] = {"weights": WEIGHT}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: a bad weight grid (see also :meth:`TwoClassConfig.validate`).
        """
        super().validate()
        check_weight_grid("weights", self.weights)


PROFILES: dict[str, dict] = {
    "quick": {},
    "paper": {**CNN_PAPER, "weights": pow2(-8, 8)},
    "ci": {**CI_TWO_CLASS, "weights": (0.25, 4.0)},
}
PACK_KEYS = ("weights",)


def cells(cfg: CarsTrucksConfig) -> list[tuple[str, dict]]:
    """One cell, ``plain``.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
    """
    check_data(cfg)
    return [("plain", {"variant": "plain"})]


def run_cell(cfg: CarsTrucksConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train the ensemble; record its metrics, last-epoch predictions and agreement."""
    members = make_members(cfg, [(w, {}) for w in cfg.weights], variant="plain", arch="cnn", lr=lambda w: cfg.lr)
    return train_two_class(cfg, two_class_data(cfg), members, cnn_fn(cfg), ctx)


def summary(df: pd.DataFrame, cfg: CarsTrucksConfig) -> str:
    """Markdown: spreads of the truck fraction across weights with verdicts, accuracies, agreement."""
    return variant_summary(df, cfg, "cnn")


EXPERIMENT = Experiment(
    name="cifar_cars_trucks",
    description="CIFAR-10 automobile vs truck, CNN: class weights vs epochs (Fig A.8)",
    config=CarsTrucksConfig,
    profiles=PROFILES,
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
