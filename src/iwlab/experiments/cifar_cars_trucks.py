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

import pandas as pd

from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import (
    WEIGHT_GRID_PROFILES,
    WeightGridConfig,
    cnn_fn,
    plain_cell,
    plain_members,
    two_class_data,
)
from iwlab.experiments.cifar_summary import variant_summary
from iwlab.experiments.cifar_train import train_two_class


@dataclass
class CarsTrucksConfig(WeightGridConfig):
    """cifar_cars_trucks: automobile (0) vs truck (1), the paper's CNN; defaults: the quick profile."""

    classes: tuple[str, ...] = ("automobile", "truck")  # weights: the truck weight relative to automobile


PROFILES: dict[str, dict] = WEIGHT_GRID_PROFILES
PACK_KEYS = ("weights",)


def cells(cfg: CarsTrucksConfig) -> list[tuple[str, dict]]:
    """One cell, ``plain`` (:func:`~iwlab.experiments.cifar_common.plain_cell`)."""
    return plain_cell(cfg)


def run_cell(cfg: CarsTrucksConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train the ensemble; record its metrics, last-epoch predictions and agreement."""
    members = plain_members(cfg)
    return train_two_class(cfg, two_class_data(cfg), members, cnn_fn(cfg), ctx)


def summary(df: pd.DataFrame, cfg: CarsTrucksConfig) -> str:
    """Markdown: spreads of the truck fraction across weights with verdicts, accuracies, agreement."""
    return variant_summary(df, cfg, "cnn")


EXPERIMENT = Experiment(
    name="cifar_cars_trucks",
    description="CIFAR-10 automobile vs truck, CNN: class weights vs epochs (Fig A.8)",
    config=CarsTrucksConfig,
    profiles=PROFILES,
    gpu_profiles=("paper",),  # the paper's CNN at full size
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
