"""Katharopoulos & Fleuret (2017) on CIFAR-10: loss-based importance sampling, VGG with BN (Table 1, Fig. 2).

The paper's §4.2: 50,000 iterations of batch 128 with Adam, the learning rate x0.1 after 35,000,
adaptive smoothing and augmentation (random flips and shifts). What a cell trains and records is in
:mod:`iwlab.experiments.importance_sampling_common`; the summary in
:mod:`iwlab.experiments.importance_sampling_summary`; the figures in :mod:`iwlab.plots.importance`.

Example::

    iwlab run importance_sampling_cifar10 --profile quick   (IWLAB_DATA holds cifar10/)
    iwlab run importance_sampling_cifar10 --profile paper --device cuda --workers 6
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from iwlab.config import Bound, count
from iwlab.data import cifar10
from iwlab.data.transforms import random_flip_shift
from iwlab.experiments import importance_sampling_common as common
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.importance_sampling_common import METHODS_ALL, PAPER_LR_GRID, ImportanceSamplingConfig, ISData
from iwlab.experiments.importance_sampling_lr import train_split
from iwlab.experiments.importance_sampling_summary import summary
from iwlab.models.vgg import CifarVGG

__all__ = ["EXPERIMENT", "PROFILES", "Config", "load_data", "make_model", "run_cell"]


@dataclass
class Config(ImportanceSamplingConfig):
    """Settings of ``importance_sampling_cifar10``; the defaults are its ``quick`` profile.

    The keys every importance-sampling experiment uses are documented on
    :class:`~iwlab.experiments.importance_sampling_common.ImportanceSamplingConfig`.

    Example:
        >>> Config().image_size, Config.METRIC
        (16, 'test_error')
        >>> Config(image_size=12).validate()
        Traceback (most recent call last):
        ...
        ValueError: image_size must divide 32, got 12
    """

    DATASET: ClassVar[Literal["cifar10"]] = "cifar10"
    METRIC: ClassVar[Literal["test_error"]] = "test_error"

    methods: tuple[str, ...] = METHODS_ALL
    iterations: int = 120
    steps_per_epoch: int = 30
    n_train: int = 5000
    n_test: int = 1000
    n_loss_sample: int = 1000
    n_grad_sample: int = 32
    adaptive_smoothing: bool = True
    table_epochs: tuple[int, ...] = (1, 2, 4)
    augment: bool = True  # random flips and shifts of training batches (paper §4.2)
    # images average-pooled to this size: 16 here, 4x fewer pixels than the paper's 32, since the VGG's
    # ~1 s CPU step at 32x32 would take 20+ min; 8 in the ci profile
    image_size: int = 16

    BOUNDS: ClassVar[dict[str, Bound]] = {"image_size": count(32, lo=4)}

    def validate(self) -> None:
        """The shared checks, and an ``image_size`` that divides 32 (images are average-pooled).

        Raises:
            ValueError: as :meth:`ImportanceSamplingConfig.validate`, or ``image_size`` not dividing 32.
        """
        super().validate()
        if 32 % self.image_size:
            raise ValueError(f"image_size must divide 32, got {self.image_size}")


PROFILES: dict[str, dict[str, Any]] = {
    "quick": {},
    # paper §4: the uniform baseline's lr from a grid search over 0.001..0.01 (importance_sampling_lr)
    "lr_search": {"methods": ("uniform",), "lrs": PAPER_LR_GRID},
    # paper §4.2: 50,000 iterations of batch 128, lr x0.1 after 35,000, adaptive smoothing, augmentation
    "paper": {
        "seeds": 3,  # Table 1's caption: 3 runs for CIFAR-10 and Penn Treebank
        "iterations": 50000,
        "steps_per_epoch": 300,
        "batch_size": 128,
        "lr_drop_at": 35000,
        "n_train": 0,
        "n_test": 0,
        "n_loss_sample": 0,
        "n_grad_sample": 512,
        "image_size": 32,
        "table_epochs": (50, 100, 150),
    },
    "ci": {
        **common.CI,
        "methods": ("uniform", "oracle_k1", "approx_k0.5"),
        "adaptive_smoothing": False,
        "image_size": 8,
        "lr_drop_at": 8,
    },
}


def load_data(cfg: Config) -> ISData:
    """CIFAR-10 as standardized float32 images (N, 3, S, S), S = ``image_size``, and int64 labels.

    Raises:
        FileNotFoundError: no CIFAR-10 files under ``IWLAB_DATA`` (and ``fixture`` is off).

    Example:
        >>> load_data(Config(fixture=True, image_size=8)).x_train.shape
        torch.Size([100, 3, 8, 8])
    """
    arr = cifar10.make_fixture(10, 5, seed=cfg.data_seed) if cfg.fixture else cifar10.load_cifar10()
    xtr, ytr = cifar10.to_tensor(arr.x_train, cfg.image_size), torch.as_tensor(arr.y_train).long()
    xte, yte = cifar10.to_tensor(arr.x_test, cfg.image_size), torch.as_tensor(arr.y_test).long()
    xtr, ytr, xva, yva = train_split(cfg, xtr, ytr)
    xte, yte = common.subset(xte, yte, cfg.n_test, cfg.data_seed + 1)
    return ISData(xtr, ytr, xte, yte, 10, {}, xva, yva)


def make_model(data: ISData, generator: torch.Generator) -> nn.Module:
    """The paper's VGG with batch norm for CIFAR-10 (§4.2), for the data's image size.

    Example:
        >>> data = load_data(Config(fixture=True, image_size=8))
        >>> make_model(data, torch.Generator().manual_seed(0)).eval()(data.x_test[:2]).shape
        torch.Size([2, 10])
    """
    return CifarVGG(num_classes=data.num_classes, generator=generator, image_size=data.x_train.shape[-1])


def _augmentation(seed: int) -> Callable[[Tensor], Tensor]:
    """Random flips and shifts drawn from the cell's own generator (seeded ``seed + 17``)."""
    aug_g = torch.Generator(device="cpu").manual_seed(seed + 17)
    return lambda x: random_flip_shift(x, aug_g)


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one cell on CIFAR-10 (:func:`~iwlab.experiments.importance_sampling_common.run_cell`)."""
    return common.run_cell(cfg, params, ctx, load_data(cfg), make_model, _augmentation if cfg.augment else None)


EXPERIMENT = Experiment(
    name="importance_sampling_cifar10",
    description="Katharopoulos & Fleuret: importance sampling on CIFAR-10, VGG with BN (Table 1, Fig. 2)",
    config=Config,
    profiles=PROFILES,
    cells=common.cells,
    run_cell=run_cell,
    summary=summary,
    aliases=("is_cifar10",),
)
