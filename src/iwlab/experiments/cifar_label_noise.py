"""cifar_label_noise: CIFAR-10 cats vs dogs with 5% of each class's training labels flipped (Byrd & Lipton
2019, Fig. A.7).

One cell, ``plain``: the paper's CNN trained with SGD on every weight ratio x seed. Besides the metrics of
:mod:`iwlab.experiments.cifar_common` it records ``train_acc_flipped``, the fraction of the flipped labels
the models fit (memorization of the noise).

Example:
    >>> [c for c, _ in cells(LabelNoiseConfig(fixture=True))]
    ['plain']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from iwlab.config import Bound
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
class LabelNoiseConfig(WeightGridConfig):
    """cifar_label_noise: cats vs dogs, ``label_noise`` of each class's training labels flipped; defaults: quick."""

    label_noise: float = 0.05  # fraction of each class's training labels flipped (weights: dog relative to cat)

    BOUNDS: ClassVar[dict[str, Bound]] = {"label_noise": Bound(0, 0.5, hi_open=True)}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: ``label_noise`` outside [0, 0.5) or a bad weight grid.
        """
        super().validate()
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {self.label_noise}")


PROFILES: dict[str, dict] = WEIGHT_GRID_PROFILES
PACK_KEYS = ("weights",)


def cells(cfg: LabelNoiseConfig) -> list[tuple[str, dict]]:
    """One cell, ``plain`` (:func:`~iwlab.experiments.cifar_common.plain_cell`)."""
    return plain_cell(cfg)


def run_cell(cfg: LabelNoiseConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train the ensemble on the noisy labels; record its metrics, last-epoch predictions and agreement."""
    members = plain_members(cfg)
    return train_two_class(cfg, two_class_data(cfg, label_noise=cfg.label_noise), members, cnn_fn(cfg), ctx)


def summary(df: pd.DataFrame, cfg: LabelNoiseConfig) -> str:
    """Markdown: spreads of the dog fraction across weights with verdicts, accuracies, agreement, noise fitted."""
    return variant_summary(df, cfg, "cnn", cfg.label_noise)


EXPERIMENT = Experiment(
    name="cifar_label_noise",
    description="CIFAR-10 cats vs dogs with 5% label noise per class: class weights vs epochs (Fig A.7)",
    config=LabelNoiseConfig,
    profiles=PROFILES,
    gpu_profiles=("paper",),  # the paper's CNN at full size
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
