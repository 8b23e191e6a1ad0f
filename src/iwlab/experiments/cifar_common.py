"""What the six CIFAR-10 experiments of Byrd & Lipton (2019, Sec. 3-4) share: data settings, the two-class
models and members, and the training of a two-class cell.

The experiments, one module each: :mod:`~iwlab.experiments.cifar_binary` (cats vs dogs, CNN; Figs. 4,
A.3, A.4, A.9), :mod:`~iwlab.experiments.cifar_resnet` (Fig. A.5), :mod:`~iwlab.experiments.cifar_label_noise`
(Fig. A.7), :mod:`~iwlab.experiments.cifar_cars_trucks` (Fig. A.8), :mod:`~iwlab.experiments.cifar_imbalanced`
(Fig. A.6) and :mod:`~iwlab.experiments.cifar_multiclass` (Fig. 5).

Weights (two-class experiments). ``weight`` w is the weight of class 1 (e.g. dog) relative to class 0
(cat): a weight ratio. As in the paper ("inverse powers of 2 up to 2^-8 for each class") the down-weighted
class gets the factor and the other keeps 1 (:func:`iwlab.functional.weighting.class_weights_from_ratio`):
w = 1/256 multiplies the dogs' loss by 1/256 and w = 256 the cats'. The loss is IW-ERM,
``(1/B) sum_i w_i l_i`` (``normalization="batch_size"``).

One cell is one ensemble (all weights x seeds of a variant); every member sees the same data. Recorded at
log-spaced epochs (``iwlab.train.log_epochs``, or every ``eval_every`` epochs) for each model:
``frac_<c1>_test``, ``frac_<c1>_other``, ``frac_<c1>_noise`` (fraction predicted as class 1 on the two
classes' test images, on the test images of the other 8 classes and on uniform-noise images),
``test_acc``, ``train_loss`` (the weighted objective), ``train_acc`` (and ``train_acc_flipped`` with
label noise). At the last epoch each cell stores every member's predictions
(``artifacts/<cell>_predictions.npz``) and, from the same arrays, the per-member agreement metrics
``agree_weights_<set>`` and ``agree_seeds_<set>`` (:func:`iwlab.functional.metrics.agreement_per_member`)
and the cell-level ones (recorded on member 0): ``agree_gap_<set>`` (across weightings - across seeds),
its permutation null ``agree_null_gap_<set>`` (mean), ``agree_null_lo_<set>`` / ``agree_null_hi_<set>``
(central 95% interval) and the one-sided p-values ``agree_p_above_<set>`` / ``agree_p_below_<set>``
(:func:`iwlab.functional.agreement.agreement_null`, ``agreement_permutations`` permuted grids; a weight
effect on which examples are predicted shows as a gap *below* the null). With ``time_budget_s > 0`` a cell
stops at the end of the first evaluated epoch past the budget and records ``trained_epochs`` and
``train_seconds`` (member 0); "the last epoch" is then that epoch
(:func:`~iwlab.experiments.cifar_train.train_two_class`).

Initialization. The paper does not say; its networks were presumably Keras models, whose default is
Glorot-uniform weights and zero biases (``init="glorot"``, used by the paper profiles). The CNN quick
profiles use He-uniform (``init="he"``), with which the narrow CNN starts learning about twice as early;
``init="torch"`` keeps PyTorch's default scales, with which the 1/8-width CNN on 16x16 images stays at
chance level for more than 60 epochs (:func:`iwlab.models.init.reinit_`).

Profiles. ``paper``: the paper's settings (5000 images per class at 32x32, full-width networks, 1000
epochs, 9 seeds, weights 2^-8 ... 2^8; a GPU job). ``quick`` (the defaults): a CPU reduction that keeps the
finding, 100 images per class at 16x16, 1/8 of the channels, 300 epochs and weights 2^-4 ... 2^4: a member
with weight 2^-8 needs roughly 16 times as many updates as one with 2^-4 before it fits the down-weighted
class ("models with more extreme weighting converge more slowly"). ``ci``: the generated fixture, a few
epochs, seconds. cifar_binary also has ``slice``: the paper's data, network and grid for as many epochs as
fit in 8 minutes on one GPU.

Data: ``load_cifar10(data_root or $IWLAB_DATA)``; ``fixture=true`` uses a tiny generated fake CIFAR-10
(:func:`iwlab.data.cifar10.make_fixture`), so CI runs every experiment end to end without the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from iwlab.config import RATE, SEED, WEIGHT, Bound, count
from iwlab.data.cifar10 import BATCH_DIR, CLASSES, TARBALL, CifarArrays, load_cifar10, make_fixture
from iwlab.data.cifar10_tasks import BinaryTask, binary_task
from iwlab.data.download import data_dir
from iwlab.functional.weighting import class_weights_from_ratio
from iwlab.models import ByrdLiptonCNN, ResNet
from iwlab.models.init import Init, reinit_
from iwlab.train import Member
from iwlab.train.schedule import log_epochs

SETS = ("test", "other", "noise")  # evaluation sets: the two classes' test images, the other 8, noise
# seed of the agreement null's permutations: the report and iwlab.plots.cifar.agreement_from_artifacts draw
# the same ones from the same predictions, so their numbers are equal
AGREEMENT_SEED = 0
# every variant label, in report order; each experiment's Config allows its own subset
VARIANT_ORDER = ("plain", "l2", "dropout", "adam", "batchnorm")
Normalization = Literal["batch_size", "weight_sum"]
Arch = Literal["cnn", "resnet"]  # Byrd & Lipton's CNN, or the ResNet (Fig. A.5)
Optimizer = Literal["sgd", "adam"]

# profile pieces (values as in the paper, Sec. 3, or sized for CI)
DATA_PAPER = {"n_train_per_class": 0, "n_test_per_class": 0, "size": 32, "seeds": 9, "epochs": 1000}
CNN_PAPER = {**DATA_PAPER, "n_other": 0, "n_noise": 1000, "width": 1.0, "dense": (512, 128), "init": "glorot"}
# CI-sized: the generated fixture (20 training and 10 test images per class), a few epochs, seconds on a CPU
CI = {"fixture": True, "n_train_per_class": 20, "n_test_per_class": 10, "seeds": 1, "epochs": 3}
CI_TWO_CLASS = {**CI, "n_other": 40, "n_noise": 20, "size": 8, "width": 0.125, "dense": (16,)}


def pow2(lo: int, hi: int, step: int = 1) -> tuple[float, ...]:
    """``2**k`` for k = lo, lo + step, ..., hi (the paper's weight grids).

    Example:
        >>> pow2(-4, 4, 2)
        (0.0625, 0.25, 1.0, 4.0, 16.0)
    """
    return tuple(2.0**k for k in range(lo, hi + 1, step))


@dataclass
class DataConfig:
    """Settings every CIFAR-10 experiment uses: the data, seeds, epochs and the evaluation schedule."""

    data_root: str = ""  # folder holding cifar10/ ("" -> $IWLAB_DATA, else ~/.cache/iwlab)
    fixture: bool = False  # a tiny generated fake CIFAR-10 instead of the real one (CI, tests)
    n_train_per_class: int = 100  # 0: all (5000); with fixture=true, 0 means 20
    n_test_per_class: int = 500  # 0: all (1000); with fixture=true, 0 means 10
    size: int = 16  # images are average-pooled to size x size (32: the originals)
    data_seed: int = 0
    seeds: int = 2
    seed: int = 0
    epochs: int = 300
    batch_size: int = 16
    eval_every: int = 0  # 0: log-spaced epochs 1, 2, 3, 5, 10, ...; k: every k epochs (and the last)

    # ranges checked before anything runs (iwlab.config.check_config); sizes that allocate are bounded
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "n_train_per_class": count(5000, lo=0),
        "n_test_per_class": count(1000, lo=0),
        "size": count(32, lo=4),
        "data_seed": SEED,
        "seeds": count(1000),
        "seed": SEED,
        "epochs": count(10_000_000),
        "batch_size": count(1_000_000),
        "eval_every": count(10_000_000, lo=0),
    }

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: ``size`` does not divide 32.
        """
        if self.size < 4 or 32 % self.size:
            raise ValueError(f"size must divide 32 and be >= 4, got {self.size}")
        if self.seeds < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("seeds, epochs and batch_size must be >= 1")
        if min(self.n_train_per_class, self.n_test_per_class, self.eval_every) < 0:
            raise ValueError("n_train_per_class, n_test_per_class and eval_every must be >= 0")

    def eval_epochs(self) -> list[int]:
        """The epochs at which metrics are recorded.

        Example:
            >>> DataConfig(epochs=30).eval_epochs()
            [1, 2, 3, 5, 10, 20, 30]
        """
        if self.eval_every:
            return sorted({*range(self.eval_every, self.epochs + 1, self.eval_every), self.epochs})
        return log_epochs(self.epochs)


@dataclass
class TwoClassConfig(DataConfig):
    """What every two-class experiment uses: the class pair, evaluation sets, network, lr and packing."""

    classes: tuple[str, ...] = ("cat", "dog")  # class 0, class 1
    n_other: int = 1000  # test images of the other 8 classes (0: all 8000)
    n_noise: int = 250  # uniform-noise images
    width: float = 0.125  # channel multiplier (1.0: the paper's 64/128 filters)
    dense: tuple[int, ...] = (128, 32)  # hidden dense units (the paper's CNN: (512, 128))
    init: Init = "he"  # the paper profile uses glorot (Keras' default)
    lr: float = 0.1
    normalization: Normalization = "batch_size"
    ALLOW_REPEATS: ClassVar[tuple[str, ...]] = ("dense",)  # layer widths may repeat: (64, 64)
    pack_size: int = 0  # models trained together; 0: all of a cell at once, halved on out-of-memory
    agreement_permutations: int = 1000  # permuted grids of the agreement null (0: the gap only, no null)
    time_budget_s: float = 0.0  # > 0: a cell stops at the end of the first evaluated epoch past this wall time
    # the many-CNN step's options (iwlab.train.precision; issue 17): "fp32" is today's step bit for bit
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    channels_last: bool = False
    conv_impl: Literal["vmap", "grouped"] = "vmap"
    compile: bool = False

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "n_other": count(8000, lo=0),
        "n_noise": count(100_000, lo=0),
        "width": Bound(0, 16, lo_open=True),
        "dense": count(65_536),
        "lr": RATE,
        "pack_size": count(1_000_000, lo=0),
        "agreement_permutations": count(100_000, lo=0),
        "time_budget_s": Bound(0, 1e7),
    }

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: ``classes`` not two different CIFAR-10 class names, or a bad data, agreement or budget setting.
        """
        super().validate()
        if len(self.classes) != 2 or len(set(self.classes)) != 2 or any(c not in CLASSES for c in self.classes):
            raise ValueError(
                f"classes must be two different CIFAR-10 classes ({', '.join(CLASSES)}), got {self.classes}"
            )
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be finite and >= 0, got {self.lr}")
        if self.width <= 0 or not self.dense or min(self.dense) < 1:
            raise ValueError(f"width must be > 0 and dense non-empty and positive, got {self.width}, {self.dense}")
        if min(self.n_other, self.n_noise, self.pack_size, self.agreement_permutations) < 0:
            raise ValueError("n_other, n_noise, pack_size and agreement_permutations must be >= 0")
        if not (self.time_budget_s >= 0 and math.isfinite(self.time_budget_s)):
            raise ValueError(f"time_budget_s must be finite and >= 0, got {self.time_budget_s}")


def check_weight_grid(key: str, ws: Sequence[float]) -> None:
    """Weight ratios must be positive, finite and distinct (one member per weight and seed).

    Raises:
        ValueError: an empty, non-positive, non-finite or repeated weight list.

    Example:
        >>> check_weight_grid("weights", (0.25, 0.25))
        Traceback (most recent call last):
        ...
        ValueError: weights repeat: (0.25, 0.25)
    """
    if not ws or any(not (w > 0 and math.isfinite(w)) for w in ws):
        raise ValueError(f"{key} must be positive and finite, got {ws}")
    if len(set(ws)) != len(ws):
        raise ValueError(f"{key} repeat: {ws}")


def check_data(cfg: DataConfig) -> None:
    """Fail before any training when the dataset is missing (``fixture=true`` needs no files).

    Raises:
        FileNotFoundError: none of ``cifar10.npz``, the batches folder or the tarball under ``data_root``.

    Example:
        >>> check_data(DataConfig(fixture=True))
    """
    if cfg.fixture:
        return
    folder = data_dir(cfg.data_root or None) / "cifar10"
    if not any((folder / name).exists() for name in ("cifar10.npz", BATCH_DIR, TARBALL)):
        raise FileNotFoundError(
            f"CIFAR-10 not found in {folder} (looked for cifar10.npz, {BATCH_DIR}/, {TARBALL}); set IWLAB_DATA "
            "or --set data_root=DIR to a folder holding cifar10/, or --set fixture=true for a generated stand-in"
        )


def load_arrays(cfg: DataConfig) -> CifarArrays:
    """CIFAR-10 arrays for a config: the generated fixture, or ``load_cifar10(data_root or $IWLAB_DATA)``.

    Example:
        >>> load_arrays(DataConfig(fixture=True, n_train_per_class=3)).x_train.shape
        (30, 32, 32, 3)
    """
    if cfg.fixture:
        return make_fixture(cfg.n_train_per_class or 20, cfg.n_test_per_class or 10, seed=cfg.data_seed)
    return load_cifar10(cfg.data_root or None)


def two_class_data(
    cfg: TwoClassConfig, *, label_noise: float = 0.0, subsample: dict[str, float] | None = None
) -> BinaryTask:
    """The :class:`~iwlab.data.cifar10_tasks.BinaryTask` of a cell.

    Example:
        >>> t = two_class_data(TwoClassConfig(fixture=True, n_train_per_class=4, n_test_per_class=2, n_noise=3))
        >>> t.x_train.shape, t.x_noise.shape[0]
        (torch.Size([8, 3, 16, 16]), 3)
    """
    return binary_task(
        load_arrays(cfg),
        (cfg.classes[0], cfg.classes[1]),
        n_train_per_class=cfg.n_train_per_class or None,
        n_test_per_class=cfg.n_test_per_class or None,
        n_other=cfg.n_other or None,
        subsample=subsample,
        label_noise=label_noise,
        n_noise=cfg.n_noise,
        size=cfg.size,
        seed=cfg.data_seed,
    )


def cnn_fn(cfg: TwoClassConfig, dropout: float = 0.0) -> Callable[[torch.Generator], torch.nn.Module]:
    """``model_fn(generator)`` of Byrd & Lipton's CNN with one output logit, initialized by ``cfg.init``.

    Example:
        >>> net = cnn_fn(TwoClassConfig(), dropout=0.5)(torch.Generator().manual_seed(0))
        >>> net(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 1])
    """

    def model_fn(g: torch.Generator) -> torch.nn.Module:
        net = ByrdLiptonCNN(3, 1, cfg.width, tuple(cfg.dense), dropout, cfg.size, generator=g)
        return reinit_(net, cfg.init, g)

    return model_fn


def resnet_fn(cfg: TwoClassConfig, batch_norm: bool) -> Callable[[torch.Generator], torch.nn.Module]:
    """``model_fn(generator)`` of the ResNet (dense layer ``cfg.dense[0]``), one output logit.

    Example:
        >>> net = resnet_fn(TwoClassConfig(size=8, dense=(8,)), batch_norm=True)(torch.Generator().manual_seed(0))
        >>> net(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 1])
    """

    def model_fn(g: torch.Generator) -> torch.nn.Module:
        net = ResNet(3, 1, cfg.width, batch_norm=batch_norm, dense=cfg.dense[0], generator=g)
        return reinit_(net, cfg.init, g)

    return model_fn


def make_members(
    cfg: DataConfig,
    grid: Sequence[tuple[float, dict[str, Any]]],
    *,
    variant: str,
    arch: Arch,
    lr: Callable[[float], float],
    weight_decay: float = 0.0,
    dropout: float = 0.0,
    optimizer: Optimizer = "sgd",
) -> list[Member]:
    """One member per seed x (weight ratio, extra labels) of ``grid``, seed-major.

    ``lr(w)`` is the learning rate of a member with weight ``w``; ``weight_decay`` is the coupled decay
    passed to the optimizer (``Member.weight_decay``). Labels: variant, arch, weight, seed, lr,
    weight_decay, dropout, optimizer and the grid's extra labels.

    Example:
        >>> ms = make_members(DataConfig(seeds=2), [(0.25, {}), (4.0, {})], variant="plain", arch="cnn",
        ...                   lr=lambda w: 0.1)
        >>> [(m.seed, m.class_weight) for m in ms]
        [(0, (1.0, 0.25)), (0, (0.25, 1.0)), (1, (1.0, 0.25)), (1, (0.25, 1.0))]
    """
    out = []
    for s in range(cfg.seeds):
        for w, extra in grid:
            labels = {
                "variant": variant,
                "arch": arch,
                "weight": w,
                "seed": cfg.seed + s,
                "lr": lr(w),
                "weight_decay": weight_decay,
                "dropout": dropout,
                "optimizer": optimizer,
                **extra,
            }
            out.append(
                Member(
                    seed=cfg.seed + s,
                    class_weight=class_weights_from_ratio(w),
                    lr=labels["lr"],
                    weight_decay=weight_decay,
                    labels=labels,
                )
            )
    return out


@dataclass
class WeightGridConfig(TwoClassConfig):
    """One plain CNN trained with SGD on every weight ratio x seed (cifar_label_noise, cifar_cars_trucks)."""

    weights: tuple[float, ...] = pow2(-4, 4, 2)  # class-1 weight relative to class 0 (a weight ratio)
    seeds: int = 2

    BOUNDS: ClassVar[dict[str, Bound]] = {"weights": WEIGHT}

    def validate(self) -> None:
        """Check values beyond their types and ranges.

        Raises:
            ValueError: a bad weight grid (see also :meth:`TwoClassConfig.validate`).
        """
        super().validate()
        check_weight_grid("weights", self.weights)


WEIGHT_GRID_PROFILES: dict[str, dict] = {
    "quick": {},
    "paper": {**CNN_PAPER, "weights": pow2(-8, 8)},
    "ci": {**CI_TWO_CLASS, "weights": (0.25, 4.0)},
}


def plain_cell(cfg: DataConfig) -> list[tuple[str, dict]]:
    """One cell, ``plain``.

    Raises:
        FileNotFoundError: the dataset is missing (and ``fixture`` is false).

    Example:
        >>> plain_cell(WeightGridConfig(fixture=True))
        [('plain', {'variant': 'plain'})]
    """
    check_data(cfg)
    return [("plain", {"variant": "plain"})]


def plain_members(cfg: WeightGridConfig) -> list[Member]:
    """One unregularized member per weight ratio x seed, lr ``cfg.lr``."""
    return make_members(cfg, [(w, {}) for w in cfg.weights], variant="plain", arch="cnn", lr=lambda w: cfg.lr)
