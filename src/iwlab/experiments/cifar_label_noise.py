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
class LabelNoiseConfig(TwoClassConfig):
    """cifar_label_noise: cats vs dogs, ``label_noise`` of each class's training labels flipped; defaults: quick."""

    label_noise: float = 0.05  # fraction of each class's training labels flipped
    weights: tuple[float, ...] = pow2(-4, 4, 2)  # dog weight relative to cat (a weight ratio)
    seeds: int = 2

    BOUNDS: ClassVar[dict[str, Bound]] = {"label_noise": Bound(0, 0.5, hi_open=True), "weights": WEIGHT}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: ``label_noise`` outside [0, 0.5) or a bad weight grid.
        """
        super().validate()
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {self.label_noise}")
        check_weight_grid("weights", self.weights)


PROFILES: dict[str, dict] = {
    "quick": {},
    "paper": {**CNN_PAPER, "weights": pow2(-8, 8)},
    "ci": {**CI_TWO_CLASS, "weights": (0.25, 4.0)},
}
PACK_KEYS = ("weights",)


def cells(cfg: LabelNoiseConfig) -> list[tuple[str, dict]]:
    """One cell, ``plain``.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
    """
    check_data(cfg)
    return [("plain", {"variant": "plain"})]


def run_cell(cfg: LabelNoiseConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train the ensemble on the noisy labels; record its metrics, last-epoch predictions and agreement."""
    members = make_members(cfg, [(w, {}) for w in cfg.weights], variant="plain", arch="cnn", lr=lambda w: cfg.lr)
    return train_two_class(cfg, two_class_data(cfg, label_noise=cfg.label_noise), members, cnn_fn(cfg), ctx)


def summary(df: pd.DataFrame, cfg: LabelNoiseConfig) -> str:
    """Markdown: spreads of the dog fraction across weights with verdicts, accuracies, agreement, noise fitted."""
    return variant_summary(df, cfg, "cnn", cfg.label_noise)


EXPERIMENT = Experiment(
    name="cifar_label_noise",
    description="CIFAR-10 cats vs dogs with 5% label noise per class: class weights vs epochs (Fig A.7)",
    config=LabelNoiseConfig,
    profiles=PROFILES,
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
