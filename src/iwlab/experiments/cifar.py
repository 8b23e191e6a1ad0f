"""Byrd & Lipton (2019) section 3 on CIFAR-10: Figures 4, 5 and A.3-A.9, six experiments on one code path.

The registry names point at namespaces defined at the end of this module (``cifar:cifar_binary`` etc.),
each picking a ``Config`` class and ``PROFILES``; ``cells``, ``run_cell``, ``figures`` and ``summary``
are shared and dispatch on the config's ``KIND``:

* ``cifar_binary``: cats (label 0) vs dogs (label 1), the paper's CNN; variants ``plain``, ``l2``
  (L2 0.001 as weight decay), ``dropout`` (0.5 on the hidden dense units; lr 0.05 for the unweighted
  model, as in the paper) and ``adam`` (lr 1e-4). Figures 4 (a-f), A.3, A.4, A.9; the agreement analysis.
* ``cifar_resnet``: the same with the ResNet, variants ``plain`` (no BN) and ``batchnorm`` (Fig. A.5).
* ``cifar_label_noise``: cats vs dogs with 5% of each class's training labels flipped (Fig. A.7).
* ``cifar_cars_trucks``: automobile (0) vs truck (1) (Fig. A.8).
* ``cifar_imbalanced``: one class sub-sampled by a factor f, trained without weights and with the other
  class down-weighted by 1/f (Fig. A.6).
* ``cifar_multiclass``: all 10 classes, an MLP with 256 hidden units, lr 0.01; one class weighted by rho
  and the other nine by (1 - rho)/9, in the loss and in the test accuracy (Fig. 5).

Weights (binary experiments). ``weight`` w is the weight of class 1 (dog) relative to class 0 (cat). As
in the paper ("inverse powers of 2 up to 2^-8 for each class") the down-weighted class gets the factor
and the other keeps 1: ``class_weight = (min(1, 1/w), min(1, w))``. So w = 1/256 multiplies the dogs'
loss by 1/256 and w = 256 multiplies the cats' loss by 1/256; w = 1 is no weighting. The loss is
IW-ERM, ``(1/B) sum_i w_i l_i`` (``normalization="batch_size"``).

One cell is one ensemble (all weights x seeds of a variant); every member sees the same data. Recorded at
log-spaced epochs (``iwlab.train.log_epochs``, or every ``eval_every`` epochs) for each model:
``frac_<c1>_test``, ``frac_<c1>_other``, ``frac_<c1>_noise`` (fraction predicted as class 1, e.g.
``frac_dog_test``, on the two classes' test images, on the test images of the other 8 classes and on
uniform-noise images), ``test_acc``, ``train_loss`` (the weighted objective), ``train_acc`` (and
``train_acc_flipped`` with label noise). At the last epoch each cell stores every member's predictions
(``artifacts/<cell>_predictions.npz``) and, from the same arrays, the per-member agreement metrics
``agree_weights_<set>`` and ``agree_seeds_<set>`` that :func:`summary` turns into the agreement table
(:func:`agreement`; :func:`agreement_from_artifacts` recomputes it from the npz files).

Initialization (binary experiments). The paper does not say; its networks were presumably Keras models,
whose default is Glorot-uniform weights and zero biases (``init="glorot"``, used by the paper profiles).
The CNN quick profiles use He-uniform (``init="he"``), with which the narrow CNN starts learning about
twice as early; ``init="torch"`` keeps PyTorch's default scales, with which the 1/8-width CNN on 16x16
images stays at chance level for more than 60 epochs. The ResNet quick profile keeps Glorot (with He and
lr 0.1 some ResNets without BN diverge). The multiclass MLP keeps PyTorch's default scales.

Profiles. ``paper``: the paper's settings (5000 images per class at 32x32, full-width networks, 1000
epochs, 9 seeds, weights 2^-8 ... 2^8; a GPU job). ``quick`` (the defaults): a CPU reduction that keeps
the finding, 100 images per class at 16x16, 1/8 of the channels, 300 epochs and weights 2^-4 ... 2^4:
a member with weight 2^-8 needs roughly 16 times as many updates as one with 2^-4 before it fits the
down-weighted class, more than a CPU budget allows (the paper: "models with more extreme weighting converge
more slowly"). ``ci``: the generated fixture, a few epochs, seconds (what the tests run).

Data: ``load_cifar10(data_root or $IWLAB_DATA)``; ``fixture=true`` uses a tiny generated fake CIFAR-10
(``iwlab.data.cifar10.make_fixture``), so CI runs every experiment end to end without the dataset.

Example:
    >>> cfg = make_config("cifar_binary", "quick", ["epochs=20"])  # doctest: +SKIP
    >>> # IWLAB_DATA=/path/to/data iwlab run cifar_binary --profile quick
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from iwlab.config import NONNEG, PROBABILITY, RATE, SEED, WEIGHT, Bound, count
from iwlab.experiments.base import CellContext, CellResult
from iwlab.train.schedule import log_epochs

SETS = ("test", "other", "noise")
BINARY_VARIANTS = ("plain", "l2", "dropout", "adam", "batchnorm")
# variants trained with ``weights_regularized`` (the paper: inverse powers of 4 for regularized models)
REGULARIZED = ("l2", "dropout")


def pow2(lo: int, hi: int, step: int = 1) -> tuple[float, ...]:
    """``2**k`` for k = lo, lo + step, ..., hi.

    Example:
        >>> pow2(-4, 4, 2)
        (0.0625, 0.25, 1.0, 4.0, 16.0)
    """
    return tuple(2.0**k for k in range(lo, hi + 1, step))


# ----------------------------------------------------------------------------------------------
# Configs. Each experiment's ``Config`` has its quick profile as defaults; ``KIND`` picks the code path.


@dataclass
class _DataConfig:
    """Settings shared by every CIFAR experiment."""

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
    pack_size: int = 0  # models trained together; 0: all of a cell at once, halved on out-of-memory

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
        "pack_size": count(1_000_000, lo=0),
    }

    def _validate_common(self) -> None:
        if self.size < 4 or 32 % self.size:
            raise ValueError(f"size must divide 32 and be >= 4, got {self.size}")
        if self.seeds < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("seeds, epochs and batch_size must be >= 1")
        if min(self.n_train_per_class, self.n_test_per_class, self.eval_every, self.pack_size) < 0:
            raise ValueError("n_train_per_class, n_test_per_class, eval_every and pack_size must be >= 0")

    def eval_epochs(self) -> list[int]:
        """The epochs at which metrics are recorded.

        Example:
            >>> BinaryConfig(epochs=30).eval_epochs()
            [1, 2, 3, 5, 10, 20, 30]
        """
        if self.eval_every:
            return sorted({*range(self.eval_every, self.epochs + 1, self.eval_every), self.epochs})
        return log_epochs(self.epochs)


@dataclass
class BinaryConfig(_DataConfig):
    """Two-class CIFAR-10 experiments (cats/dogs, cars/trucks, label noise, ResNet); defaults: quick."""

    KIND: ClassVar[str] = "binary"
    EXPERIMENT: ClassVar[str] = "cifar_binary"

    classes: tuple[str, ...] = ("cat", "dog")
    seeds: int = 3
    n_other: int = 1000  # test images of the other 8 classes (0: all 8000)
    n_noise: int = 250  # uniform-noise images
    label_noise: float = 0.0  # fraction of each class's training labels flipped
    arch: Literal["cnn", "resnet"] = "cnn"
    width: float = 0.125  # channel multiplier (1.0: the paper's 64/128 filters)
    dense: tuple[int, ...] = (128, 32)  # hidden dense units (CNN: the paper's (512, 128); ResNet: first only)
    init: Literal["glorot", "he", "torch"] = "he"  # the paper profile uses glorot (Keras' default)
    variants: tuple[str, ...] = ("plain", "l2", "dropout", "adam")
    weights: tuple[float, ...] = pow2(-4, 4, 2)  # dog weight relative to cat (see the module docstring)
    weights_regularized: tuple[float, ...] = pow2(-4, 4, 2)  # the same, for the l2 and dropout variants
    lr: float = 0.1
    lr_dropout_unweighted: float = 0.05  # the paper's lr for the dropout model with no weighting
    lr_adam: float = 1e-4
    l2: float = 1e-3  # as torch weight_decay: gradient += l2 * theta
    dropout: float = 0.5
    normalization: Literal["batch_size", "weight_sum"] = "batch_size"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "n_other": count(8000, lo=0),
        "n_noise": count(100_000, lo=0),
        "label_noise": Bound(0, 0.5, hi_open=True),
        "width": Bound(0, 16, lo_open=True),
        "dense": count(65_536),
        "weights": WEIGHT,
        "weights_regularized": WEIGHT,
        "lr": RATE,
        "lr_dropout_unweighted": RATE,
        "lr_adam": RATE,
        "l2": NONNEG,
        "dropout": PROBABILITY,
    }

    def validate(self) -> None:
        """Check values beyond their types."""
        from iwlab.data.cifar10 import CLASSES

        self._validate_common()
        if len(self.classes) != 2 or len(set(self.classes)) != 2 or any(c not in CLASSES for c in self.classes):
            raise ValueError(
                f"classes must be two different CIFAR-10 classes ({', '.join(CLASSES)}), got {self.classes}"
            )
        for v in self.variants:
            if v not in BINARY_VARIANTS:
                raise ValueError(f"variants: unknown '{v}'; valid: {', '.join(BINARY_VARIANTS)}")
            if v == "batchnorm" and self.arch != "resnet":
                raise ValueError("variant 'batchnorm' needs arch=resnet (the plain CNN has no batch norm)")
            if v == "dropout" and self.arch != "cnn":
                raise ValueError("variant 'dropout' needs arch=cnn (the ResNet has no dropout layers)")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants repeat: {self.variants}")
        for key in ("weights", "weights_regularized"):
            ws = getattr(self, key)
            if not ws or any(not (w > 0 and math.isfinite(w)) for w in ws):
                raise ValueError(f"{key} must be positive and finite, got {ws}")
            if len(set(ws)) != len(ws):
                raise ValueError(f"{key} repeat: {ws}")
        for key in ("lr", "lr_dropout_unweighted", "lr_adam", "l2"):
            if not (getattr(self, key) >= 0 and math.isfinite(getattr(self, key))):
                raise ValueError(f"{key} must be finite and >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {self.label_noise}")
        if self.width <= 0 or not self.dense or min(self.dense) < 1:
            raise ValueError(f"width must be > 0 and dense non-empty and positive, got {self.width}, {self.dense}")
        if min(self.n_other, self.n_noise) < 0:
            raise ValueError("n_other and n_noise must be >= 0")


@dataclass
class ResNetConfig(BinaryConfig):
    """cifar_resnet: cats vs dogs with the ResNet, with and without batch norm; defaults: quick."""

    EXPERIMENT: ClassVar[str] = "cifar_resnet"

    arch: Literal["cnn", "resnet"] = "resnet"
    variants: tuple[str, ...] = ("plain", "batchnorm")
    dense: tuple[int, ...] = (64,)
    size: int = 8
    seeds: int = 2
    init: Literal["glorot", "he", "torch"] = "glorot"  # with he, lr 0.1 diverges some no-BN ResNets


@dataclass
class LabelNoiseConfig(BinaryConfig):
    """cifar_label_noise: cats vs dogs, 5% of each class's training labels flipped; defaults: quick."""

    EXPERIMENT: ClassVar[str] = "cifar_label_noise"

    label_noise: float = 0.05
    variants: tuple[str, ...] = ("plain",)
    seeds: int = 2


@dataclass
class CarsTrucksConfig(BinaryConfig):
    """cifar_cars_trucks: automobile (0) vs truck (1); defaults: quick."""

    EXPERIMENT: ClassVar[str] = "cifar_cars_trucks"

    classes: tuple[str, ...] = ("automobile", "truck")
    variants: tuple[str, ...] = ("plain",)
    seeds: int = 2


@dataclass
class ImbalancedConfig(BinaryConfig):
    """cifar_imbalanced: one class sub-sampled by ``factor``, unweighted vs the other down-weighted by 1/factor."""

    KIND: ClassVar[str] = "imbalanced"
    EXPERIMENT: ClassVar[str] = "cifar_imbalanced"

    subsampled: tuple[str, ...] = ("cat", "dog")  # which class is sub-sampled (one cell per class x factor)
    factors: tuple[float, ...] = (4.0,)  # keep 1/factor of the sub-sampled class
    variants: tuple[str, ...] = ("plain",)
    n_train_per_class: int = 200
    seeds: int = 2

    BOUNDS: ClassVar[dict[str, Bound]] = {"factors": Bound(1, 1e6)}

    def validate(self) -> None:
        """Check values beyond their types."""
        super().validate()
        if self.variants != ("plain",):
            raise ValueError("cifar_imbalanced trains the plain variant only (variants=plain)")
        if not self.subsampled or any(c not in self.classes for c in self.subsampled):
            raise ValueError(f"subsampled must name classes of {self.classes}, got {self.subsampled}")
        if not self.factors or any(not (f >= 1 and math.isfinite(f)) for f in self.factors):
            raise ValueError(f"factors must be finite and >= 1, got {self.factors}")


@dataclass
class MulticlassConfig(_DataConfig):
    """cifar_multiclass: 10 classes, MLP; class k weighted by rho, the others by (1 - rho)/9; defaults: quick."""

    KIND: ClassVar[str] = "multiclass"
    EXPERIMENT: ClassVar[str] = "cifar_multiclass"

    rhos: tuple[float, ...] = (0.1, 0.3, 0.6, 0.9)  # one cell each; rho = 0.1 is no weighting
    weighted_classes: tuple[int, ...] = tuple(range(10))  # the classes that take rho in turn
    hidden: int = 256
    lr: float = 0.01
    normalization: Literal["batch_size", "weight_sum"] = "weight_sum"  # as torch's cross_entropy(weight=...)
    n_train_per_class: int = 200
    n_test_per_class: int = 200
    size: int = 8
    seeds: int = 1
    epochs: int = 200

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "rhos": Bound(0, 1, lo_open=True, hi_open=True),
        "weighted_classes": count(9, lo=0),
        "hidden": count(65_536),
        "lr": RATE,
    }

    def validate(self) -> None:
        """Check values beyond their types."""
        self._validate_common()
        if not self.rhos or any(not 0.0 < r < 1.0 for r in self.rhos) or len(set(self.rhos)) != len(self.rhos):
            raise ValueError(f"rhos must be distinct values in (0, 1), got {self.rhos}")
        if not self.weighted_classes or any(not 0 <= k < 10 for k in self.weighted_classes):
            raise ValueError(f"weighted_classes must be class indices 0..9, got {self.weighted_classes}")
        if self.hidden < 1 or not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError("hidden must be >= 1 and lr finite and >= 0")


_DATA_PAPER = {"n_train_per_class": 0, "n_test_per_class": 0, "size": 32, "seeds": 9, "epochs": 1000}
_CNN_PAPER = {**_DATA_PAPER, "n_other": 0, "n_noise": 1000, "width": 1.0, "dense": (512, 128), "init": "glorot"}
# CI-sized: the generated fixture (20 training and 10 test images per class), a few epochs, seconds on a CPU
_CI = {"fixture": True, "n_train_per_class": 20, "n_test_per_class": 10, "seeds": 1, "epochs": 3}
_CI_BINARY = {**_CI, "n_other": 40, "n_noise": 20, "size": 8, "width": 0.125, "dense": (16,)}

PROFILES_BINARY: dict[str, dict] = {
    # ~5 minutes on 2 CPU cores (see experiments/README.md): 16x16 images, 1/8 width, 250 images per class
    "quick": {},
    # the paper: 5000 cats + 5000 dogs at 32x32, full CNN, 1000 epochs, 9 seeds, weights 2^-8..2^8
    # (plain, Adam) and 4^-4..4^4 (L2, dropout), all 8000 other-class test images and 1000 noise images
    "paper": {**_CNN_PAPER, "weights": pow2(-8, 8), "weights_regularized": pow2(-8, 8, 2)},
    "ci": {**_CI_BINARY, "weights": (0.25, 1.0, 4.0), "weights_regularized": (0.25, 1.0)},
}
PROFILES_RESNET: dict[str, dict] = {
    "quick": {},
    "paper": {**_CNN_PAPER, "dense": (512,), "weights": pow2(-8, 8)},
    "ci": {**_CI_BINARY, "width": 0.0625, "weights": (0.25, 4.0)},
}
PROFILES_LABEL_NOISE: dict[str, dict] = {
    "quick": {},
    "paper": {**_CNN_PAPER, "weights": pow2(-8, 8)},
    "ci": {**_CI_BINARY, "weights": (0.25, 4.0)},
}
PROFILES_CARS_TRUCKS: dict[str, dict] = {
    "quick": {},
    "paper": {**_CNN_PAPER, "weights": pow2(-8, 8)},
    "ci": {**_CI_BINARY, "weights": (0.25, 4.0)},
}
PROFILES_IMBALANCED: dict[str, dict] = {
    "quick": {},
    # the paper does not list its sub-sampling factors; these are an assumption
    "paper": {**_CNN_PAPER, "factors": (2.0, 4.0, 8.0, 16.0)},
    "ci": {**_CI_BINARY, "factors": (2.0,), "subsampled": ("cat",)},
}
PROFILES_MULTICLASS: dict[str, dict] = {
    "quick": {},
    # all 50,000 training images at 32x32 (MLP on 3072 inputs), rho = 0.1 ... 0.9; the epoch count is an assumption
    "paper": {**_DATA_PAPER, "rhos": tuple(round(0.1 * k, 1) for k in range(1, 10)), "seeds": 1},
    "ci": {**_CI, "size": 8, "hidden": 32, "rhos": (0.1, 0.5), "weighted_classes": (0, 3)},
}
# keys whose swept values merge into one config (members of one ensemble, or its cells); see iwlab.sweep
PACK_KEYS_BINARY = ("weights", "weights_regularized", "variants")
PACK_KEYS_IMBALANCED = ("factors", "subsampled")
PACK_KEYS_MULTICLASS = ("rhos", "weighted_classes")


# ----------------------------------------------------------------------------------------------
# Cells and members


def _is_multiclass(cfg: Any) -> bool:
    return getattr(cfg, "KIND", "") == "multiclass"


def cells(cfg: Any) -> list[tuple[str, dict]]:
    """Binary experiments: one cell per variant; imbalanced: per sub-sampled class x factor; multiclass: per rho.

    Example:
        >>> [c for c, _ in cells(BinaryConfig(fixture=True, variants=("plain", "adam")))]
        ['plain', 'adam']
        >>> [c for c, _ in cells(ImbalancedConfig(fixture=True, subsampled=("cat",), factors=(2.0, 8.0)))]
        ['cat_x2', 'cat_x8']
        >>> [c for c, _ in cells(MulticlassConfig(fixture=True, rhos=(0.1, 0.5)))]
        ['rho=0.1', 'rho=0.5']
    """
    check_data(cfg)
    kind = cfg.KIND
    if kind == "binary":
        return [(v, {"variant": v}) for v in cfg.variants]
    if kind == "imbalanced":
        return [
            (f"{c}_x{f:g}", {"variant": "plain", "subsampled": c, "factor": f})
            for c in cfg.subsampled
            for f in cfg.factors
        ]
    if kind == "multiclass":
        return [(f"rho={r:g}", {"rho": r}) for r in cfg.rhos]
    raise ValueError(f"unknown experiment kind '{kind}'")


def check_data(cfg: Any) -> None:
    """Fail before any training when the dataset is missing (``fixture=true`` needs no files).

    Example:
        >>> check_data(BinaryConfig(fixture=True))
    """
    from iwlab.data.cifar10 import BATCH_DIR, TARBALL
    from iwlab.data.download import data_dir

    if cfg.fixture:
        return
    folder = data_dir(cfg.data_root or None) / "cifar10"
    if not any((folder / name).exists() for name in ("cifar10.npz", BATCH_DIR, TARBALL)):
        raise FileNotFoundError(
            f"CIFAR-10 not found in {folder} (looked for cifar10.npz, {BATCH_DIR}/, {TARBALL}); set IWLAB_DATA "
            "or --set data_root=DIR to a folder holding cifar10/, or --set fixture=true for a generated stand-in"
        )


def class_weight_for(w: float) -> tuple[float, float]:
    """Class weights for a dog/cat weight ratio ``w``: the down-weighted class gets the factor, the other 1.

    Example:
        >>> class_weight_for(0.25), class_weight_for(4.0), class_weight_for(1.0)
        ((1.0, 0.25), (0.25, 1.0), (1.0, 1.0))
    """
    return (min(1.0, 1.0 / w), min(1.0, w))


def _binary_members(cfg: BinaryConfig, params: dict) -> list:
    from iwlab.train import Member

    variant = params["variant"]
    out = []
    if cfg.KIND == "imbalanced":
        # sub-sampled class c kept at 1/f; the weighted model down-weights the other class by 1/f
        f, sub = params["factor"], params["subsampled"]
        w_comp = f if sub == cfg.classes[1] else 1.0 / f  # class-1 weight relative to class 0
        grid = [(w, {"subsampled": sub, "factor": f, "weighted": w != 1.0}) for w in (1.0, w_comp)]
        if f == 1.0:
            grid = grid[:1]
    else:
        ws = cfg.weights_regularized if variant in REGULARIZED else cfg.weights
        grid = [(w, {}) for w in ws]
    for s in range(cfg.seeds):
        for w, extra in grid:
            if variant == "adam":
                lr = cfg.lr_adam
            elif variant == "dropout" and w == 1.0:
                lr = cfg.lr_dropout_unweighted
            else:
                lr = cfg.lr
            labels = {
                "variant": variant,
                "arch": cfg.arch,
                "weight": w,
                "seed": cfg.seed + s,
                "lr": lr,
                "l2": cfg.l2 if variant == "l2" else 0.0,
                "dropout": cfg.dropout if variant == "dropout" else 0.0,
                "optimizer": "adam" if variant == "adam" else "sgd",
                **extra,
            }
            out.append(
                Member(seed=cfg.seed + s, class_weight=class_weight_for(w), lr=lr, l2=labels["l2"], labels=labels)
            )
    return out


def multiclass_weights(rho: float, k: int, n_classes: int = 10) -> tuple[float, ...]:
    """Class ``k`` weighted by ``rho``, each other class by ``(1 - rho) / (n_classes - 1)``.

    Example:
        >>> [round(v, 3) for v in multiclass_weights(0.5, 2, 5)]
        [0.125, 0.125, 0.5, 0.125, 0.125]
    """
    rest = (1.0 - rho) / (n_classes - 1)
    return tuple(rho if c == k else rest for c in range(n_classes))


def _is_uniform(rho: float, n_classes: int = 10) -> bool:
    """rho = 1/n_classes weights every class alike: the unweighted model."""
    return abs(rho - 1.0 / n_classes) < 1e-9


def _multiclass_members(cfg: MulticlassConfig, rho: float) -> list:
    from iwlab.data.cifar10 import CLASSES
    from iwlab.train import Member

    out = []
    for s in range(cfg.seeds):
        for k in cfg.weighted_classes:
            # the seed depends on (seed, class) only: the same init and shuffles for every rho
            seed = cfg.seed + 10 * s + k
            labels = {"rho": rho, "weighted_class": k, "class_name": CLASSES[k], "seed": seed, "lr": cfg.lr}
            out.append(Member(seed=seed, class_weight=multiclass_weights(rho, k), lr=cfg.lr, labels=labels))
    return out


# ----------------------------------------------------------------------------------------------
# Data and models


def load_arrays(cfg: Any) -> Any:
    """CIFAR-10 arrays for a config: the generated fixture, or ``load_cifar10(data_root or $IWLAB_DATA)``.

    Example:
        >>> load_arrays(BinaryConfig(fixture=True, n_train_per_class=3)).x_train.shape
        (30, 32, 32, 3)
    """
    from iwlab.data.cifar10 import load_cifar10, make_fixture

    if cfg.fixture:
        return make_fixture(cfg.n_train_per_class or 20, cfg.n_test_per_class or 10, seed=cfg.data_seed)
    return load_cifar10(cfg.data_root or None)


def binary_data(cfg: BinaryConfig, params: dict | None = None) -> Any:
    """The :class:`~iwlab.data.cifar10.BinaryTask` of a cell (sub-sampled for the imbalanced cells).

    Example:
        >>> t = binary_data(BinaryConfig(fixture=True, n_train_per_class=4, n_test_per_class=2, n_noise=3))
        >>> t.x_train.shape, t.x_noise.shape[0]
        (torch.Size([8, 3, 16, 16]), 3)
    """
    from iwlab.data.cifar10 import binary_task

    params = params or {}
    sub = {params["subsampled"]: 1.0 / params["factor"]} if "subsampled" in params else None
    return binary_task(
        load_arrays(cfg),
        tuple(cfg.classes),
        n_train_per_class=cfg.n_train_per_class or None,
        n_test_per_class=cfg.n_test_per_class or None,
        n_other=cfg.n_other or None,
        subsample=sub,
        label_noise=cfg.label_noise,
        n_noise=cfg.n_noise,
        size=cfg.size,
        seed=cfg.data_seed,
    )


@torch.no_grad()
def reinit_(module: torch.nn.Module, init: str, generator: torch.Generator) -> torch.nn.Module:
    """Redraw conv and linear weights from ``generator``: ``glorot`` (Keras' default: uniform, zero
    biases), ``he`` (uniform with variance 2/fan_in, zero biases) or ``torch`` (leave as built).

    Example:
        >>> m = reinit_(torch.nn.Linear(4, 2), "glorot", torch.Generator().manual_seed(0))
        >>> float(m.bias.detach().abs().sum())
        0.0
    """
    if init == "torch":
        return module
    if init not in ("glorot", "he"):
        raise ValueError(f"init must be glorot, he or torch, got '{init}'")
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            receptive = m.weight[0, 0].numel()
            fan_in, fan_out = m.weight.shape[1] * receptive, m.weight.shape[0] * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if init == "glorot" else math.sqrt(6.0 / fan_in)
            m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * (2 * bound) - bound)
            if m.bias is not None:
                m.bias.zero_()
    return module


def model_fn_for(cfg: BinaryConfig, variant: str, n_out: int = 1) -> Any:
    """``model_fn(generator) -> nn.Module`` of a binary variant (the CNN or the ResNet).

    Example:
        >>> net = model_fn_for(BinaryConfig(), "dropout")(torch.Generator().manual_seed(0))
        >>> net(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 1])
    """
    from iwlab.models import ByrdLiptonCNN, ResNet

    def model_fn(g: torch.Generator) -> torch.nn.Module:
        if cfg.arch == "cnn":
            p = cfg.dropout if variant == "dropout" else 0.0
            net = ByrdLiptonCNN(3, n_out, cfg.width, tuple(cfg.dense), p, cfg.size, generator=g)
        else:
            net = ResNet(3, n_out, cfg.width, batch_norm=variant == "batchnorm", dense=cfg.dense[0], generator=g)
        return reinit_(net, cfg.init, g)

    return model_fn


def _chunk(n_members: int, per_image: int, device: str) -> int:
    """Images per forward chunk so that one activation tensor stays near 64 MiB (CPU) or 2 GiB (GPU)."""
    budget = 2**31 if str(device).startswith("cuda") else 2**26
    return max(16, budget // (4 * n_members * max(per_image, 1)))


# ----------------------------------------------------------------------------------------------
# Agreement between models (the paper's 82% vs 78% analysis) and the weighted accuracy


def _mode(labels: np.ndarray, axis: int) -> np.ndarray:
    """Most frequent label along ``axis``; ties go to the smallest label."""
    n_labels = int(labels.max()) + 1 if labels.size else 1
    counts = np.stack([(labels == k).sum(axis=axis) for k in range(n_labels)])
    return counts.argmax(0)


def agreement_per_member(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model, for predictions ``preds (W weightings, S seeds, N examples)`` of integer labels:

    * ``across_seeds (W, S)``: fraction of examples on which the model agrees with its weighting's
      majority vote over seeds;
    * ``across_weightings (W,)``: fraction of examples on which the weighting's majority vote agrees
      with the modal label over all weightings' majority votes.

    Majority votes break ties towards the smallest label. Averaging ``across_seeds`` over models gives the
    paper's "fraction of random initializations that agree" and averaging ``across_weightings`` over
    weightings its "fraction of differently-weighted models that agree" (:func:`agreement`).

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
        >>> seeds, weights = agreement_per_member(p)
        >>> seeds.round(3).tolist(), weights.tolist()
        ([[0.5, 1.0, 1.0], [1.0, 1.0, 0.5]], [0.5, 1.0])
    """
    preds = np.asarray(preds)
    if preds.ndim != 3:
        raise ValueError(f"preds must have shape (weightings, seeds, examples), got {preds.shape}")
    majority = _mode(preds, axis=1)  # (W, N)
    seeds = (preds == majority[:, None, :]).mean(2)  # (W, S)
    modal = _mode(majority, axis=0)  # (N,)
    weights = (majority == modal[None, :]).mean(1)  # (W,)
    return seeds, weights


def agreement(preds: np.ndarray) -> dict[str, float]:
    """The paper's agreement numbers for ``preds (W, S, N)``: across weightings vs across seeds.

    ``across_weightings``: per example, the fraction of the W weightings (each a majority vote over its S
    seeds) that give the modal label, averaged over examples. ``across_seeds``: per example and weighting,
    the fraction of the S seeds that give the weighting's majority label, averaged over both.

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])
        >>> {k: round(v, 3) for k, v in agreement(p).items()}
        {'across_weightings': 0.75, 'across_seeds': 0.833}
    """
    seeds, weights = agreement_per_member(preds)
    return {"across_weightings": float(weights.mean()), "across_seeds": float(seeds.mean())}


def _grid_of(values_w: list[float], values_s: list[int]) -> tuple[list[float], list[int], dict]:
    ws, ss = sorted(set(values_w)), sorted(set(values_s))
    where = {(w, s): (ws.index(w), ss.index(s)) for w, s in zip(values_w, values_s, strict=True)}
    return ws, ss, where


def _to_grid(preds: np.ndarray, weights: list[float], seeds: list[int]) -> np.ndarray:
    """Members' predictions ``(M, N)`` -> ``(W, S, N)`` by their weight and seed labels."""
    ws, ss, where = _grid_of(weights, seeds)
    if len(where) != len(ws) * len(ss) or len(weights) != len(where):
        raise ValueError("agreement needs exactly one model per (weight, seed)")
    grid = np.zeros((len(ws), len(ss), preds.shape[1]), dtype=preds.dtype)
    for i, (w, s) in enumerate(zip(weights, seeds, strict=True)):
        grid[where[(w, s)]] = preds[i]
    return grid


def agreement_from_artifacts(run_dir: str | Path) -> pd.DataFrame:
    """Recompute the agreement table from the stored ``*_predictions.npz`` (one row per cell and set).

    Example:
        >>> # agreement_from_artifacts("runs/cifar_binary-quick")
    """
    rows = []
    for path in sorted((Path(run_dir) / "artifacts").glob("*_predictions.npz")):
        with np.load(path) as z:
            if "diverged" in z and z["diverged"].any():
                continue  # as in the summary: agreement only where every model trained
            weights, seeds = z["weight"].tolist(), z["seed"].astype(int).tolist()
            for name in SETS:
                if f"pred_{name}" not in z or z[f"pred_{name}"].shape[1] == 0:
                    continue
                a = agreement(_to_grid(z[f"pred_{name}"], weights, seeds))
                rows.append({"cell": path.name.removesuffix("_predictions.npz"), "set": name, **a})
    return pd.DataFrame(rows)


def weighted_accuracy(pred: Tensor, target: Tensor, class_weight: Tensor) -> Tensor:
    """``sum_i v[y_i] 1[pred_i = y_i] / sum_i v[y_i]``: accuracy with each example weighted by its class.

    ``pred (..., N)``, ``target (N,)`` or ``(..., N)``, ``class_weight (C,)`` or ``(..., C)``; returns ``(...)``.

    Example:
        >>> weighted_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0.5, 0.25]))
        tensor(0.6000)
    """
    target = target.expand_as(pred)
    if class_weight.dim() == 1:
        v = class_weight[target]
    else:
        v = class_weight.unsqueeze(-2).expand(*pred.shape, class_weight.shape[-1]).gather(-1, target.unsqueeze(-1))
        v = v.squeeze(-1)
    v = v.to(torch.float32)
    return (v * (pred == target).float()).sum(-1) / v.sum(-1)


# ----------------------------------------------------------------------------------------------
# Training


def run_cell(cfg: Any, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one cell's ensemble and record its metrics (and, binary, the last epoch's predictions).

    Example:
        >>> # run_cell(cfg, "plain", {"variant": "plain"}, ctx)
    """
    if _is_multiclass(cfg):
        return _run_multiclass(cfg, params, ctx)
    return _run_binary(cfg, params, ctx)


def _run_binary(cfg: BinaryConfig, params: dict, ctx: CellContext) -> CellResult:
    from iwlab.functional.losses import weighted_binary_cross_entropy
    from iwlab.train import EnsembleTrainer
    from iwlab.train.ensemble import fit_in_packs, merge_histories

    variant = params["variant"]
    task = binary_data(cfg, params)
    members = _binary_members(cfg, params)
    M = len(members)
    index = {id(m): i for i, m in enumerate(members)}  # pack member -> global member
    final_preds: dict[int, dict[str, Tensor]] = {}  # global member -> last-epoch predictions per set
    dev = ctx.device
    x, y = task.x_train.to(dev), task.y_train.to(dev)
    sets = {"test": task.x_test.to(dev), "other": task.x_other.to(dev), "noise": task.x_noise.to(dev)}
    y_test = task.y_test.to(dev)
    flipped = task.flipped.to(dev)
    pos = cfg.classes[1]
    pred_path = ctx.artifact_path("_predictions.npz")

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        # called once per pack: ``tr`` holds a consecutive slice of the members
        cw = torch.tensor([m.class_weight for m in tr.members], dtype=torch.float32, device=dev)  # (m, 2)
        chunk = _chunk(tr.M, 64 * cfg.size * cfg.size, dev)

        def logits(inp: Tensor) -> Tensor:
            if inp.shape[0] == 0:
                return torch.zeros(tr.M, 0, device=dev)
            return tr.logits(inp, chunk=chunk).squeeze(-1)  # (m, N)

        z = logits(x)
        out = {
            "train_loss": weighted_binary_cross_entropy(
                z, y.float(), class_weight=cw, normalization=cfg.normalization, validate=False
            ),
            "train_acc": ((z > 0).long() == y).float().mean(1),
        }
        if bool(flipped.any()):  # fitted to the flipped (noisy) labels: memorization of the noise
            out["train_acc_flipped"] = ((z[:, flipped] > 0).long() == y[flipped]).float().mean(1)
        preds = {}
        for name, xs in sets.items():
            preds[name] = (logits(xs) > 0).long()
            if preds[name].shape[1]:
                out[f"frac_{pos}_{name}"] = preds[name].float().mean(1)
        out["test_acc"] = (preds["test"] == y_test).float().mean(1)
        dead = (tr.diverged_at >= 0).numpy()
        if epoch == cfg.epochs:
            for j, m in enumerate(tr.members):
                final_preds[index[id(m)]] = {k: v[j].cpu() for k, v in preds.items()}
        return _drop_diverged(out, dead)

    trainers = fit_in_packs(
        model_fn_for(cfg, variant),
        members,
        x,
        y,
        pack_size=cfg.pack_size or None,
        batch_size=cfg.batch_size,
        optimizer="adam" if variant == "adam" else "sgd",
        normalization=cfg.normalization,
        device=dev,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    history = merge_histories(trainers)
    diverged = torch.cat([t.diverged_at for t in trainers])
    if len(final_preds) != M:  # every pack was resumed past its last epoch: recompute the predictions
        for t in trainers:
            metrics(t, cfg.epochs)
    preds = {k: torch.stack([final_preds[i][k] for i in range(M)]) for k in final_preds[0]}  # (M, N) per set
    agree = _save_predictions(pred_path, members, preds, task.y_test, (diverged >= 0).numpy(), cfg.KIND == "binary")
    history.rows.extend((cfg.epochs, i, name, float(v)) for name, vals in agree.items() for i, v in enumerate(vals))
    return CellResult(
        members=[m.labels for m in members],
        rows=history.rows,
        diverged=diverged.tolist(),
        artifacts=[("predictions", str(pred_path.relative_to(ctx.run_dir)))],
    )


def _drop_diverged(out: dict[str, Tensor], dead: np.ndarray) -> dict[str, Tensor]:
    """NaN (not stored) for members whose parameters went NaN/inf: their NaN logits would read as class 0."""
    if not dead.any():
        return out
    mask = torch.from_numpy(dead)
    return {k: v.detach().cpu().double().masked_fill(mask, float("nan")) for k, v in out.items()}


def _save_predictions(
    path: Path, members: list, preds: dict[str, Tensor], y_test: Tensor, dead: np.ndarray, with_agreement: bool
) -> dict[str, Tensor]:
    """Write the members' last-epoch predictions; return the per-member agreement metrics (none if any diverged)."""
    weights = [m.labels["weight"] for m in members]
    seeds = [m.labels["seed"] for m in members]
    arrays = {f"pred_{k}": v.cpu().numpy().astype(np.int8) for k, v in preds.items()}
    np.savez_compressed(
        path, weight=np.array(weights), seed=np.array(seeds), diverged=dead, y_test=y_test.numpy(), **arrays
    )
    out: dict[str, Tensor] = {}
    _, _, where = _grid_of(weights, seeds)
    if not with_agreement or len(where) != len(weights) or dead.any():
        return out
    for name, p in arrays.items():
        if p.shape[1] == 0:
            continue
        a_seeds, a_weights = agreement_per_member(_to_grid(p, weights, seeds))
        set_name = name.removeprefix("pred_")
        idx = [where[(w, s)] for w, s in zip(weights, seeds, strict=True)]
        out[f"agree_seeds_{set_name}"] = torch.tensor([a_seeds[i, j] for i, j in idx])
        out[f"agree_weights_{set_name}"] = torch.tensor([a_weights[i] for i, _ in idx])
    return out


def _run_multiclass(cfg: MulticlassConfig, params: dict, ctx: CellContext) -> CellResult:
    from iwlab.data.cifar10 import multiclass_task
    from iwlab.functional.losses import weighted_cross_entropy
    from iwlab.models import MLP
    from iwlab.train import EnsembleTrainer

    task = multiclass_task(
        load_arrays(cfg),
        n_train_per_class=cfg.n_train_per_class or None,
        n_test_per_class=cfg.n_test_per_class or None,
        size=cfg.size,
        seed=cfg.data_seed,
    )
    members = _multiclass_members(cfg, params["rho"])
    in_dim = 3 * cfg.size * cfg.size

    def model_fn(g: torch.Generator) -> MLP:
        return MLP(in_dim, (cfg.hidden,), 10, generator=g)

    trainer = EnsembleTrainer(
        model_fn, members, batch_size=cfg.batch_size, normalization=cfg.normalization, device=ctx.device
    )
    dev = ctx.device
    x, y = task.x_train.reshape(len(task.x_train), -1).to(dev), task.y_train.to(dev)
    xt, yt = task.x_test.reshape(len(task.x_test), -1).to(dev), task.y_test.to(dev)
    cw = torch.tensor([m.class_weight for m in members], dtype=torch.float32, device=dev)  # (M, 10)
    present = [c for c in range(10) if bool((yt == c).any())]

    def metrics(tr: EnsembleTrainer, epoch: int) -> dict[str, Tensor]:
        z = tr.logits(x)  # (M, N, 10)
        pt = tr.predict(xt)  # (M, Nt)
        out = {
            "train_loss": weighted_cross_entropy(
                z, y, class_weight=cw, normalization=cfg.normalization, validate=False
            ),
            "train_acc": (z.argmax(-1) == y).float().mean(1),
            "test_acc": (pt == yt).float().mean(1),
            "weighted_acc": weighted_accuracy(pt, yt, cw),
        }
        for c in present:  # per-class accuracy: any test weighting can be recomputed from these
            out[f"acc_class{c}"] = (pt[:, yt == c] == c).float().mean(1)
        return _drop_diverged(out, (tr.diverged_at >= 0).numpy())

    trainer.fit(
        x,
        y,
        epochs=cfg.epochs,
        eval_epochs=cfg.eval_epochs(),
        callbacks=[metrics],
        checkpoint_path=ctx.checkpoint_path,
        progress=ctx.progress,
    )
    return CellResult(
        members=[m.labels for m in members], rows=trainer.history.rows, diverged=trainer.diverged_at.tolist()
    )


# ----------------------------------------------------------------------------------------------
# Figures and summary


FIGURES_BINARY = {
    # variant -> (file, title); Fig. 4 (a-c) is the plain variant
    "cifar_binary": {
        "plain": ("fig4abc_fraction_vs_epoch.png", "Fig. 4 (a-c): fraction predicted as {pos}, plain CNN"),
        "l2": ("figA3_l2_fraction_vs_epoch.png", "Fig. A.3: with L2 = {l2:g}"),
        "dropout": ("figA4_dropout_fraction_vs_epoch.png", "Fig. A.4: with dropout {dropout:g}"),
        "adam": ("figA9_adam_fraction_vs_epoch.png", "Fig. A.9: Adam, lr {lr_adam:g}"),
    },
    "cifar_resnet": {
        "plain": ("figA5_resnet_fraction_vs_epoch.png", "Fig. A.5: ResNet without batch norm"),
        "batchnorm": ("figA5_resnet_bn_fraction_vs_epoch.png", "Fig. A.5: ResNet with batch norm"),
    },
    "cifar_label_noise": {
        "plain": ("figA7_label_noise_fraction_vs_epoch.png", "Fig. A.7: {label_noise:.0%} label noise per class"),
    },
    "cifar_cars_trucks": {
        "plain": ("figA8_cars_trucks_fraction_vs_epoch.png", "Fig. A.8: automobile (0) vs truck (1)"),
    },
}


def _fmt_cfg(template: str, cfg: Any) -> str:
    from dataclasses import asdict

    return template.format(pos=cfg.classes[1] if hasattr(cfg, "classes") else "", **asdict(cfg))


# what to look for in each variant's fraction curves: Byrd & Lipton's claim for it (sections 4-5)
LOOK_FOR = {
    "plain": "Look for: the lines of different weights start apart and converge as training goes on (the effect "
    "of the weights fades; Byrd & Lipton Fig. 4 a-c).",
    "l2": "Look for: with L2 the lines stay apart longer than without (L2 keeps some of the weights' effect, "
    "Fig. A.3).",
    "dropout": "Look for: with dropout the lines still converge, as without regularization (Fig. A.4).",
    "adam": "Look for: with Adam the lines still converge (Fig. A.9).",
    "batchnorm": "Look for: with batch norm the lines stay apart (Fig. A.5: an effect remains with batch norm).",
}


def figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fmt: str = "png") -> list[Path]:
    """All figures of a run, from the store, saved as ``fmt`` under ``run_dir/figures`` with their captions
    (``captions.json``, shown in the report).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.results.load`).
        cfg: its config (binary, imbalanced or multiclass).
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Returns:
        The files written, in report order (none when ``df`` is empty).

    Raises:
        ValueError: ``fmt`` is not a known format.

    Example:
        >>> # figures(Path("runs/cifar_binary-quick"), iwlab.results.load("runs/cifar_binary-quick"), cfg, fmt="svg")
    """
    from iwlab.plots import cifar as P
    from iwlab.plots import style

    style.check_format(fmt)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    if df.empty:
        return []
    if _is_multiclass(cfg):
        look = (
            "Look for: weighting helps the weighted accuracy early (gain above 0) and the benefit dissipates with "
            "training (Byrd & Lipton Fig. 5)."
        )
        return [P.weighted_accuracy_curves(df, cfg, fig_dir / "fig5_weighted_acc_vs_epoch", fmt, look_for=look)]
    prefix = f"frac_{cfg.classes[1]}"
    classes = (cfg.classes[0], cfg.classes[1])
    out: list[Path] = []
    if cfg.KIND == "imbalanced":
        look = (
            "Look for: sub-sampling shifts the fractions towards the majority class, and late in training the dashed "
            "(weighted) lines lie on the solid ones: the weights do not undo the shift (Byrd & Lipton Fig. A.6)."
        )
        out.append(P.imbalanced_curves(df, prefix, fig_dir / "figA6_imbalanced_fraction_vs_epoch", fmt, look_for=look))
    else:
        specs = FIGURES_BINARY.get(cfg.EXPERIMENT, FIGURES_BINARY["cifar_binary"])
        weights = sorted(df.weight.unique())
        for variant in cfg.variants:
            d = df[df.variant == variant]
            if d.empty:
                continue
            name, title = specs.get(variant, (f"{variant}_fraction_vs_epoch.png", f"{variant}"))
            look = LOOK_FOR.get(variant, "")
            if cfg.EXPERIMENT == "cifar_resnet" and variant == "plain":
                look = "Look for: without batch norm the lines converge, as with the plain CNN (Fig. A.5)."
            out.append(
                P.fraction_curves(
                    d,
                    prefix,
                    fig_dir / name,
                    _fmt_cfg(title, cfg),
                    fmt,
                    classes=classes,
                    weights=weights,
                    look_for=look,
                )
            )
        shown = [v for v in ("plain", "l2", "dropout", "adam", "batchnorm") if v in set(df.variant)]
        if shown:
            paper = cfg.EXPERIMENT == "cifar_binary"
            name = "fig4def_fraction_vs_weight" if paper else "fraction_vs_weight"
            title = "Fig. 4 (d-f): last epoch" if paper else f"Fraction predicted as {cfg.classes[1]} at the last epoch"
            look = (
                "Look for: flat lines (the fraction no longer depends on the weight late in training) without "
                "regularization and with dropout; a slope with L2."
            )
            out.append(P.fraction_vs_weight(df, prefix, shown, fig_dir / name, title, fmt, look_for=look))
    look = "Look for: training accuracy reaching 1 (the claim that the weights' effect fades needs it)."
    out.append(P.accuracy_curves(df, fig_dir / "accuracy_vs_epoch", fmt, look_for=look))
    return out


def spreads(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant: max - min across weights of the seed-mean ``metric`` at the first and last recorded epochs.

    ``n_weights`` is the variant's number of weights, ``n_weights_first`` / ``n_weights_last`` how many have a
    value at that epoch (fewer when a member diverged: the spread then covers fewer weights).

    Example:
        >>> # spreads(iwlab.results.load(run_dir), "frac_dog_test")
    """
    d = df[df.name == metric]
    if d.empty:
        return pd.DataFrame()
    mean = d.groupby(["variant", "weight", "epoch"]).value.mean().reset_index()
    rows = []
    for variant, g in _by_variant(mean):
        first, last = g.epoch.min(), g.epoch.max()
        f, la = g[g.epoch == first].set_index("weight")["value"], g[g.epoch == last].set_index("weight")["value"]
        rows.append(
            {
                "variant": variant,
                "first_epoch": int(first),
                "last_epoch": int(last),
                "spread_first": float(f.max() - f.min()),
                "spread_last": float(la.max() - la.min()),
                "wmin_last": float(la.loc[la.index.min()]),
                "w1_last": float(la.loc[1.0]) if 1.0 in la.index else float("nan"),
                "wmax_last": float(la.loc[la.index.max()]),
                "n_weights": int(g.weight.nunique()),
                "n_weights_first": int(f.size),
                "n_weights_last": int(la.size),
            }
        )
    return pd.DataFrame(rows)


def agreement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and set: mean agreement across weightings and across seeds, from the stored metrics.

    Example:
        >>> # agreement_table(iwlab.results.load(run_dir))
    """
    rows = []
    for variant, g in _by_variant(df[df.name.str.startswith("agree_")]):
        for name in SETS:
            w = g[g.name == f"agree_weights_{name}"]
            s = g[g.name == f"agree_seeds_{name}"]
            if w.empty or s.empty:
                continue
            rows.append(
                {
                    "variant": variant,
                    "set": name,
                    "across_weightings": float(w.groupby("weight").value.mean().mean()),
                    "across_seeds": float(s.value.mean()),
                    "n_weightings": int(w.weight.nunique()),
                    "n_seeds": int(s.seed.nunique()),
                }
            )
    return pd.DataFrame(rows)


def _by_variant(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Groups by variant in the order plain, l2, dropout, adam, batchnorm."""
    return [(v, df[df.variant == v]) for v in BINARY_VARIANTS if v in set(df.variant)]


# Byrd & Lipton's claim per variant (sections 4-5): does the weights' effect fade or persist?
CLAIMS = {"plain": "faded", "dropout": "faded", "adam": "faded", "l2": "persists", "batchnorm": "persists"}


def _train_acc_range(df: pd.DataFrame, variant: str) -> tuple[float, float]:
    """(lowest, highest) training accuracy over a variant's models at its last epoch; NaN if not recorded."""
    a = df[(df.variant == variant) & (df.name == "train_acc")]
    if a.empty:
        return float("nan"), float("nan")
    last = a[a.epoch == a.epoch.max()].value
    return float(last.min()), float(last.max())


def _spread_verdicts(df: pd.DataFrame, prefix: str) -> list[dict]:
    """Rows of :func:`spreads` for every set, with the verdict (:data:`iwlab.report.LEVEL_RULE`), Byrd &
    Lipton's claim for the variant and whether the two match."""
    from iwlab.report import level_verdict

    out = []
    for name in SETS:
        for r in spreads(df, f"{prefix}_{name}").to_dict("records"):
            lowest, best = _train_acc_range(df, r["variant"])
            verdict, claim, matches = level_verdict(
                CLAIMS.get(r["variant"]), r["spread_first"], r["spread_last"], lowest, best
            )
            if claim == "persists" and r["variant"] == "l2":
                claim = "persists (L2 keeps the effect)"
            if min(r["n_weights_first"], r["n_weights_last"]) < r["n_weights"]:  # a diverged member is missing
                matches = f"n/a ({r['n_weights_first']} / {r['n_weights_last']} of {r['n_weights']} weights recorded)"
            out.append({**r, "set": name, "verdict": verdict, "claim": claim, "matches": matches})
    return out


def summary(df: pd.DataFrame, cfg: Any) -> str:
    """Markdown: spreads of the class-1 fraction across weights (first vs last epoch) with a verdict per row
    computed from the numbers and compared with Byrd & Lipton's claim, accuracies, agreement.

    Example:
        >>> # print(summary(iwlab.results.load(run_dir), cfg))
    """
    from iwlab.report import LEVEL_RULE, TREND_RULE, finding_line

    if df.empty:
        return "(no results)"
    if _is_multiclass(cfg):
        return _summary_multiclass(df, cfg)
    pos = cfg.classes[1]
    prefix = f"frac_{pos}"
    lines = [
        f"Classes: {cfg.classes[0]} (0) vs {pos} (1); {cfg.n_train_per_class or 'all'} training images per class "
        f"at {cfg.size}x{cfg.size}{f', {cfg.label_noise:.0%} labels flipped per class' if cfg.label_noise else ''}. "
        f"Model: {cfg.arch}, width {cfg.width:g}, dense {tuple(cfg.dense)}, init {cfg.init}. "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, seeds {cfg.seeds}.",
        "",
    ]
    last = df[df.epoch == df.epoch.max()]
    acc = last[last.name.isin(["train_acc", "test_acc"])].groupby(["variant", "name"]).value.agg(["min", "mean", "max"])
    if not acc.empty:
        lines += [
            f"### Accuracy at epoch {int(df.epoch.max())} (min / mean / max over models)",
            "",
            "| variant | train accuracy | test accuracy |",
            "|---|---|---|",
        ]
        for variant in [v for v in BINARY_VARIANTS if v in set(last.variant)]:
            cells_ = []
            for n in ("train_acc", "test_acc"):
                r = acc.loc[(variant, n)] if (variant, n) in acc.index else None
                cells_.append("-" if r is None else f"{r['min']:.3f} / {r['mean']:.3f} / {r['max']:.3f}")
            lines.append(f"| {variant} | {cells_[0]} | {cells_[1]} |")
        lines.append("")
    if cfg.KIND == "imbalanced":
        return "\n".join(lines + _summary_imbalanced(df, prefix, pos))
    rows = _spread_verdicts(df, prefix)
    lines += [
        f"### Spread across weights of the fraction predicted as {pos}",
        "",
        f"Weight w = {pos} weight relative to {cfg.classes[0]} (the down-weighted class gets min(w, 1/w), the "
        f"other 1). Spread = max - min over weights of the seed-mean fraction. {LEVEL_RULE} {TREND_RULE}",
        "",
        "Byrd & Lipton's claim per variant: the effect of the weights fades once the models fit their training set "
        "without regularization, with dropout and with Adam; with L2 or batch norm it persists.",
        "",
        finding_line(
            [(f"{r['variant']} {r['set']}", r["verdict"], r["claim"], r["matches"]) for r in rows], "all sets"
        ),
        "",
        "| variant | set | spread at first epoch | spread at last epoch | w=min / w=1 / w=max at last epoch "
        "| verdict | Byrd & Lipton | matches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['set']} | {r['spread_first']:.3f} (epoch {r['first_epoch']}) "
            f"| {r['spread_last']:.3f} (epoch {r['last_epoch']}) "
            f"| {r['wmin_last']:.3f} / {'-' if math.isnan(r['w1_last']) else format(r['w1_last'], '.3f')} "
            f"/ {r['wmax_last']:.3f} "
            f"| {r['verdict']} | {r['claim']} | {r['matches']} |"
        )
    lines.append("")
    agree = agreement_table(df)
    if not agree.empty:
        lines += [
            "### Agreement between models at the last epoch",
            "",
            "Across weightings: per example, the fraction of the weightings (each a majority vote over seeds) "
            "that give the modal label. Across seeds: per example and weighting, the fraction of seeds that give "
            "the weighting's majority label. The paper (9 seeds, 17 weightings): 82% vs 78% on the test set, "
            "74% vs 71% on the other 8 classes, near 100% on noise.",
            "",
            "| variant | set | across weightings | across seeds | weightings x seeds |",
            "|---|---|---|---|---|",
        ]
        for r in agree.itertuples():
            lines.append(
                f"| {r.variant} | {r.set} | {r.across_weightings:.3f} | {r.across_seeds:.3f} "
                f"| {r.n_weightings} x {r.n_seeds} |"
            )
        lines.append("")
    if "train_acc_flipped" in set(df.name):
        fl = last[last.name == "train_acc_flipped"].value
        lines += [f"Flipped training labels fitted at the last epoch: {fl.mean():.3f} (mean over models).", ""]
    lines += _diverged(df)
    return "\n".join(lines)


def _summary_imbalanced(df: pd.DataFrame, prefix: str, pos: str) -> list[str]:
    """Fraction predicted as ``pos``, sub-sampling alone vs with the compensating weight, with verdicts computed
    from the numbers: the weights' effect |weighted - unweighted| first vs last epoch, and on the (balanced) test
    set whether sub-sampling alone shifted the prediction towards the majority class."""
    from iwlab.report import TREND_RULE, finding_line, trend, trend_text

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
    return lines + _diverged(df)


def _summary_multiclass(df: pd.DataFrame, cfg: MulticlassConfig) -> str:
    from iwlab.plots.cifar import multiclass_frame
    from iwlab.report import TREND_RULE, claim_match, finding_line, trend_text

    lines = [
        f"MLP ({cfg.hidden} hidden) on {cfg.size}x{cfg.size} images, {cfg.n_train_per_class or 'all'} training "
        f"images per class, lr {cfg.lr:g}, batch {cfg.batch_size}, loss normalization {cfg.normalization}, "
        f"{cfg.epochs} epochs. Weighted accuracy: each test example weighted by its class's weight (rho for the "
        "weighted class, (1 - rho)/9 for the others), mean +- std over the weighted classes.",
        "",
    ]
    t = multiclass_frame(df)
    if t.empty:
        return "\n".join(lines + ["(no weighted accuracy recorded)"])
    first, last = t.epoch.min(), t.epoch.max()
    has_base = t.baseline.notna().any()
    table = [
        "| rho | weighted acc., first epoch | weighted acc., last epoch"
        + (
            " | gain over unweighted, first | max gain (epoch) | gain, last | benefit | matches |" if has_base else " |"
        ),
        "|---|---|---" + ("|---|---|---|---|---|" if has_base else "|"),
    ]
    found = []
    for rho, g in t.groupby("rho"):
        agg = g.groupby("epoch").agg(m=("wacc", "mean"), s=("wacc", "std"), gain=("gain", "mean"))
        sd = agg.s.fillna(0.0)
        row = f"| {rho:g} | {agg.m[first]:.3f} +- {sd[first]:.3f} | {agg.m[last]:.3f} +- {sd[last]:.3f}"
        if has_base and _is_uniform(rho):
            row += " | (the unweighted baseline) | | | | |"
        elif has_base:
            best = agg.gain.idxmax() if agg.gain.notna().any() else first
            # the benefit is the positive part of the gain: a loss is no benefit to dissipate
            b_max, b_last = max(float(agg.gain[best]), 0.0), max(float(agg.gain[last]), 0.0)
            verdict, matches = trend_text(b_max, b_last), claim_match(b_max, b_last, ("shrinks",))
            found.append((f"rho={rho:g}", verdict, "the benefit dissipates", matches))
            row += (
                f" | {agg.gain[first]:+.3f} | {agg.gain[best]:+.3f} ({best}) | {agg.gain[last]:+.3f} "
                f"| {verdict} | {matches} |"
            )
        else:
            row += " |"
        table.append(row)
    if has_base:
        lines += [
            "Gain = weighted accuracy of the weighted model minus that of the unweighted (rho = 0.1) models under "
            "the same test weights; benefit = the gain where positive, at its maximum vs at the last epoch. Byrd & "
            f"Lipton's claim (Fig. 5): a benefit early in training that dissipates ('shrinks'). {TREND_RULE}",
            "",
            finding_line(found, "benefit of weighting"),
            "",
        ]
    lines += [*table, ""]
    return "\n".join(lines + _diverged(df))


def _diverged(df: pd.DataFrame) -> list[str]:
    div = df.dropna(subset=["diverged_epoch"]) if "diverged_epoch" in df else df.iloc[:0]
    if div.empty:
        return []
    per_cell = div[["run_id", "member"]].drop_duplicates().groupby("run_id").size()
    shown = ", ".join(f"{cell}: {n}" for cell, n in per_cell.items())
    return [
        f"Diverged models (NaN/inf parameters; nothing is recorded for them after divergence, and cells with one "
        f"have no agreement rows): {shown}.",
        "",
    ]


# ----------------------------------------------------------------------------------------------
# The registry entries (``iwlab.experiments.EXPERIMENTS`` names "iwlab.experiments.cifar:<name>"):
# one namespace per experiment, all sharing the code above.


def _experiment(name: str, description: str, config: type, profiles: dict, pack_keys: tuple) -> SimpleNamespace:
    return SimpleNamespace(
        NAME=name,
        DESCRIPTION=description,
        Config=config,
        PROFILES=profiles,
        PACK_KEYS=pack_keys,
        cells=cells,
        run_cell=run_cell,
        figures=figures,
        summary=summary,
    )


cifar_binary = _experiment(
    "cifar_binary",
    "CIFAR-10 cats vs dogs, CNN: class weights vs epochs; plain, L2, dropout, Adam (Figs 4, A.3, A.4, A.9)",
    BinaryConfig,
    PROFILES_BINARY,
    PACK_KEYS_BINARY,
)
cifar_cars_trucks = _experiment(
    "cifar_cars_trucks",
    "CIFAR-10 automobile vs truck, CNN: class weights vs epochs (Fig A.8)",
    CarsTrucksConfig,
    PROFILES_CARS_TRUCKS,
    PACK_KEYS_BINARY,
)
cifar_imbalanced = _experiment(
    "cifar_imbalanced",
    "CIFAR-10 cats vs dogs, one class sub-sampled: weighting vs sub-sampling alone (Fig A.6)",
    ImbalancedConfig,
    PROFILES_IMBALANCED,
    PACK_KEYS_IMBALANCED,
)
cifar_label_noise = _experiment(
    "cifar_label_noise",
    "CIFAR-10 cats vs dogs with 5% label noise per class: class weights vs epochs (Fig A.7)",
    LabelNoiseConfig,
    PROFILES_LABEL_NOISE,
    PACK_KEYS_BINARY,
)
cifar_multiclass = _experiment(
    "cifar_multiclass",
    "CIFAR-10 10 classes, MLP: one class weighted by rho, weighted test accuracy vs epochs (Fig 5)",
    MulticlassConfig,
    PROFILES_MULTICLASS,
    PACK_KEYS_MULTICLASS,
)
cifar_resnet = _experiment(
    "cifar_resnet",
    "CIFAR-10 cats vs dogs, ResNet with and without batch norm: class weights vs epochs (Fig A.5)",
    ResNetConfig,
    PROFILES_RESNET,
    PACK_KEYS_BINARY,
)
