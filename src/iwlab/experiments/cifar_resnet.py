"""cifar_resnet: CIFAR-10 cats vs dogs with a ResNet, without and with batch norm (Byrd & Lipton 2019, Fig. A.5).

Two variants, one cell each: ``plain`` (no batch norm) and ``batchnorm``; each an ensemble of every
weight ratio x seed, trained with SGD. Byrd & Lipton: without batch norm the weights' effect fades as with
the plain CNN; with batch norm it persists. Shared settings and metrics: :mod:`iwlab.experiments.cifar_common`.

Example:
    >>> [c for c, _ in cells(ResNetConfig(fixture=True))]
    ['plain', 'batchnorm']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pandas as pd

from iwlab.config import WEIGHT, Bound
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.cifar_common import (
    CI_TWO_CLASS,
    CNN_PAPER,
    TwoClassConfig,
    check_data,
    check_weight_grid,
    make_members,
    pow2,
    resnet_fn,
    two_class_data,
)
from iwlab.experiments.cifar_summary import variant_summary
from iwlab.experiments.cifar_train import train_two_class
from iwlab.models.init import Init
from iwlab.train import Member

Variant = Literal["plain", "batchnorm"]


@dataclass
class ResNetConfig(TwoClassConfig):
    """cifar_resnet: cats vs dogs, ResNet with and without batch norm; defaults: the quick profile.

    ``dense`` is one hidden dense layer (the ResNet's head), so it holds one value.
    """

    variants: tuple[Variant, ...] = ("plain", "batchnorm")
    weights: tuple[float, ...] = pow2(-4, 4, 2)  # dog weight relative to cat (a weight ratio)
    dense: tuple[int, ...] = (64,)
    size: int = 8
    init: Init = "glorot"  # with he, lr 0.1 diverges some ResNets without BN

    BOUNDS: ClassVar[dict[str, Bound]] = {"weights": WEIGHT}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: repeated variants, a bad weight grid, more than one dense layer, or ``conv_impl="grouped"``.
        """
        super().validate()
        if self.conv_impl == "grouped":  # refused here, before anything runs, not by every cell at training time
            raise ValueError("conv_impl: 'grouped' runs nn.Sequential chains; the ResNet is not one (use 'vmap')")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants repeat: {self.variants}")
        if len(self.dense) != 1:
            raise ValueError(f"dense: the ResNet has one hidden dense layer; give one size, got {self.dense}")
        check_weight_grid("weights", self.weights)


PROFILES: dict[str, dict] = {
    "quick": {},
    "paper": {**CNN_PAPER, "dense": (512,), "weights": pow2(-8, 8)},
    "ci": {**CI_TWO_CLASS, "width": 0.0625, "weights": (0.25, 4.0)},
}
PACK_KEYS = ("weights", "variants")


def cells(cfg: ResNetConfig) -> list[tuple[str, dict]]:
    """One cell per variant.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).
    """
    check_data(cfg)
    return [(v, {"variant": v}) for v in cfg.variants]


def members(cfg: ResNetConfig, variant: str) -> list[Member]:
    """Every weight ratio x seed, SGD at ``cfg.lr``.

    Example:
        >>> [m.labels["arch"] for m in members(ResNetConfig(seeds=1, weights=(0.5, 2.0)), "batchnorm")]
        ['resnet', 'resnet']
    """
    return make_members(cfg, [(w, {}) for w in cfg.weights], variant=variant, arch="resnet", lr=lambda w: cfg.lr)


def run_cell(cfg: ResNetConfig, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one variant's ensemble; record its metrics, last-epoch predictions and agreement."""
    variant = params["variant"]
    model_fn = resnet_fn(cfg, batch_norm=variant == "batchnorm")
    return train_two_class(cfg, two_class_data(cfg), members(cfg, variant), model_fn, ctx)


def summary(df: pd.DataFrame, cfg: ResNetConfig) -> str:
    """Markdown: spreads of the dog fraction across weights with verdicts, accuracies, agreement."""
    return variant_summary(df, cfg, "resnet")


EXPERIMENT = Experiment(
    name="cifar_resnet",
    description="CIFAR-10 cats vs dogs, ResNet with and without batch norm: class weights vs epochs (Fig A.5)",
    config=ResNetConfig,
    profiles=PROFILES,
    gpu_profiles=("paper",),  # the paper's CNN at full size
    cells=cells,
    run_cell=run_cell,
    summary=summary,
    pack_keys=PACK_KEYS,
)
