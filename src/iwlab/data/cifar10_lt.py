"""Long-tailed CIFAR-10 (CIFAR-10-LT) as built by Cao et al. (2019), LDAM-DRW.

Class ``c`` (0 = head, airplane) keeps ``n_c`` training images (:func:`long_tailed_counts`):

* ``"exponential"``: ``n_c = int(n_max * (1 / imbalance) ** (c / (C - 1)))``, so ``n_0 = n_max`` and the tail
  ``n_{C-1} = int(n_max / imbalance)``;
* ``"step"``: the first ``C / 2`` classes keep ``n_max``, the others ``int(n_max * (1 / imbalance))``.

The float expression and the truncation by ``int()`` are those of ``get_img_num_per_cls`` in
kaidic/LDAM-DRW ``imbalance_cifar.py`` (with their ``imb_factor = 1 / imbalance``), so the real data at
``imbalance=100`` gives ``[5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]`` (12406 images).

Which images: as in their ``gen_imbalanced_data``, one legacy ``numpy.random.RandomState(seed)`` (their
``np.random.seed(rand_number)``, default 0) shuffles the indices of each class in turn, 0..C-1, and the first
``n_c`` are kept, in that shuffled order. On the canonical CIFAR-10 order this reproduces their training set
image for image. The test set stays the full balanced CIFAR-10 test set, unless ``n_test_per_class`` asks
for a (sorted) per-class subset, drawn from the same generator after all training draws.

Example:
    >>> from iwlab.data.cifar10 import make_fixture
    >>> task = long_tailed_task(make_fixture(n_train_per_class=20, n_test_per_class=2), imbalance=10, size=8)
    >>> task.class_counts.tolist()
    [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    >>> task.x_train.shape, task.x_test.shape
    (torch.Size([78, 3, 8, 8]), torch.Size([20, 3, 8, 8]))
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from iwlab.data.cifar10 import CLASSES, CifarArrays, to_tensor, validate_arrays

__all__ = ["PROFILES", "LongTailedTask", "long_tailed_counts", "long_tailed_indices", "long_tailed_task"]

PROFILES = ("exponential", "step")


@dataclass
class LongTailedTask:
    """A long-tailed training set with the balanced test set; labels 0..9 in ``CLASSES`` order.

    Attributes:
        x_train: ``(N, 3, s, s)`` float32 (normalized as :func:`~iwlab.data.cifar10.to_tensor`), grouped by
            class 0..9, within a class in the drawn (shuffled) order.
        y_train: ``(N,)`` int64.
        class_counts: ``(C,)`` int64 training images per class (``N = class_counts.sum()``).
        x_test: ``(Nt, 3, s, s)`` float32; y_test: ``(Nt,)`` int64.
        imbalance: ``n_max / n_min`` as requested (the realized ratio can be larger: counts are truncated).
        profile: ``"exponential"`` or ``"step"``.
    """

    x_train: Tensor
    y_train: Tensor
    class_counts: Tensor
    x_test: Tensor
    y_test: Tensor
    imbalance: float
    profile: str


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_imbalance(imbalance: object) -> float:
    ok = isinstance(imbalance, numbers.Real) and not isinstance(imbalance, bool)
    if not ok or not math.isfinite(imbalance) or imbalance < 1:
        raise ValueError(f"imbalance must be a finite number >= 1 (n_max / n_min), got {imbalance!r}")
    return float(imbalance)


def long_tailed_counts(
    n_max: int, imbalance: float = 100.0, profile: str = "exponential", n_classes: int = len(CLASSES)
) -> np.ndarray:
    """Images per class of a long-tailed set (Cao et al. 2019), class 0 the head.

    Args:
        n_max: images of the head class (int >= 1; 5000 for the full CIFAR-10 training set).
        imbalance: ``n_max / n_min``, a finite number >= 1 (1 gives a balanced set).
        profile: ``"exponential"`` or ``"step"`` (see the module docstring).
        n_classes: number of classes ``C`` (int >= 2; even for ``"step"``).

    Returns:
        ``(C,)`` int64 counts, non-increasing.

    Raises:
        ValueError: a bad argument (named), or a class that would get 0 images (``imbalance`` too large
            for ``n_max``).

    Source:
        Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", Sec. 4.1;
        kaidic/LDAM-DRW ``imbalance_cifar.py``, ``get_img_num_per_cls`` (same float expression, then ``int()``).

    Example:
        >>> long_tailed_counts(5000, 100).tolist()
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        >>> long_tailed_counts(5000, 10, "step").tolist()
        [5000, 5000, 5000, 5000, 5000, 500, 500, 500, 500, 500]
    """
    if not _is_int(n_max) or n_max < 1:
        raise ValueError(f"n_max must be an int >= 1, got {n_max!r}")
    imbalance = _check_imbalance(imbalance)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if not _is_int(n_classes) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    if profile == "step" and n_classes % 2:
        raise ValueError(f"profile 'step' needs an even n_classes (two halves), got {n_classes}")
    n_max = int(n_max)
    factor = 1.0 / imbalance  # their imb_factor; 1 / 100 is the same double as the literal 0.01 they pass
    if profile == "exponential":
        # int(n_max * factor ** (c / (C - 1.0))) exactly as their loop: another float grouping may round differently
        counts = [int(n_max * factor ** (c / (n_classes - 1.0))) for c in range(n_classes)]
    else:
        half = n_classes // 2
        counts = [n_max] * half + [int(n_max * factor)] * half
    if counts[-1] == 0:  # the tail is the smallest class in both profiles
        raise ValueError(
            f"imbalance={imbalance:g} is too large for n_max={n_max}: class {n_classes - 1} would get 0 images "
            f"(needs imbalance <= {n_max})"
        )
    return np.asarray(counts, dtype=np.int64)


def _check_labels(y: object) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_train must be a 1-D integer array of class indices, got {y.dtype} {y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(CLASSES)):
        raise ValueError(f"y_train must hold class indices 0..{len(CLASSES) - 1}, got [{y.min()}, {y.max()}]")
    return y


def long_tailed_indices(
    y_train: np.ndarray,
    imbalance: float = 100.0,
    n_max: int | None = None,
    profile: str = "exponential",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Which training images a long-tailed subset keeps (labels only, no images needed).

    Args:
        y_train: ``(N,)`` integer labels in 0..9 (CIFAR-10 order, or any order).
        imbalance: ``n_max / n_min``, a finite number >= 1.
        n_max: head-class count; None takes the images per class, which must then be the same for
            every class (5000 on CIFAR-10).
        profile: ``"exponential"`` or ``"step"``.
        seed: seed of ``numpy.random.RandomState`` (int in ``0..2**32 - 1``), their ``rand_number``.

    Returns:
        ``(index, counts)``: ``index`` ``(sum(counts),)`` int64 positions in ``y_train``, class 0's first,
        within a class in shuffled order; ``counts`` ``(10,)`` int64 from :func:`long_tailed_counts`.

    Raises:
        ValueError: bad labels, ``n_max=None`` with unequal class sizes, a class with fewer images than its
            count, a bad seed, or any error of :func:`long_tailed_counts`.

    Source:
        kaidic/LDAM-DRW ``imbalance_cifar.py``, ``gen_imbalanced_data``: ``np.random.seed(rand_number)``,
        then per class ``idx = np.where(targets == c)[0]; np.random.shuffle(idx); idx[:n_c]``.

    Example:
        >>> idx, counts = long_tailed_indices(np.repeat(np.arange(10), 5000), imbalance=100)
        >>> len(idx), int(counts.sum())
        (12406, 12406)
    """
    y, counts = _plan(y_train, imbalance, n_max, profile, seed)
    return _shuffle_take(y, counts, np.random.RandomState(seed)), counts


def _plan(
    y_train: object, imbalance: float, n_max: int | None, profile: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check the arguments of a draw; return the labels ``(N,)`` and the counts ``(10,)`` int64."""
    y = _check_labels(y_train)
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in 0..2**32 - 1 (numpy RandomState), got {seed!r}")
    available = np.bincount(y, minlength=len(CLASSES))  # (10,)
    if n_max is None:
        if available.min() != available.max():
            raise ValueError(
                f"n_max=None needs the same number of training images per class, got {available.min()}.."
                f"{available.max()}; pass n_max"
            )
        n_max = int(available[0])
        if n_max == 0:
            raise ValueError("y_train is empty: no training images to draw from")
    counts = long_tailed_counts(n_max, imbalance, profile, len(CLASSES))
    short = np.flatnonzero(counts > available)
    if len(short):
        c = int(short[0])
        raise ValueError(
            f"n_max={n_max} asks {counts[c]} images of class {c} ({CLASSES[c]}), but y_train has {available[c]}"
        )
    return y, counts


def _shuffle_take(y: np.ndarray, counts: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """Shuffle each class's positions in turn and keep the first ``counts[c]`` (LDAM-DRW's procedure)."""
    # the legacy generator, not default_rng: np.random.seed + np.random.shuffle is what LDAM-DRW ran, and the
    # same draws keep the same 12406 images (every class is shuffled in full, the head included)
    parts = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(y == c)  # (available[c],) in dataset order, like np.where(...)[0]
        rs.shuffle(idx)
        parts.append(idx[: counts[c]])
    return np.concatenate(parts).astype(np.int64)  # (sum(counts),)


def long_tailed_task(
    arrays: CifarArrays,
    imbalance: float = 100.0,
    n_max: int | None = None,
    profile: str = "exponential",
    seed: int = 0,
    size: int = 32,
    *,
    n_test_per_class: int | None = None,
) -> LongTailedTask:
    """CIFAR-10-LT: a long-tailed training set (:func:`long_tailed_indices`) and the balanced test set.

    Args:
        arrays: raw CIFAR-10 arrays (:func:`~iwlab.data.cifar10.load_cifar10` or ``make_fixture``).
        imbalance: ``n_max / n_min``, a finite number >= 1 (Cao et al. use 100 and 10).
        n_max: head-class count; None: the images per class available (5000 on the real data).
        profile: ``"exponential"`` or ``"step"``.
        seed: seed of the draws (numpy ``RandomState``; 0 is LDAM-DRW's default ``rand_number``).
        size: image side after average pooling (divides 32).
        n_test_per_class: None keeps the whole test set in its order; an int draws that many test images
            per class (sorted), after the training draws.

    Returns:
        A :class:`LongTailedTask`; ``class_counts[c]`` images of class ``c`` in ``x_train``.

    Raises:
        ValueError: arrays that fail :func:`~iwlab.data.cifar10.validate_arrays`, any error of
            :func:`long_tailed_indices`, ``n_test_per_class`` not an int in 1..(test images per class), or
            ``size`` not dividing 32.

    Source:
        Cao et al. 2019 (NeurIPS), Sec. 4.1 and kaidic/LDAM-DRW ``imbalance_cifar.py`` (``IMBALANCECIFAR10``).

    Example:
        >>> from iwlab.data.cifar10 import make_fixture
        >>> t = long_tailed_task(make_fixture(10, 3), imbalance=5, profile="step", size=4, n_test_per_class=1)
        >>> t.class_counts.tolist(), t.y_test.tolist()
        ([10, 10, 10, 10, 10, 2, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    arrays = validate_arrays(arrays, "long_tailed_task: arrays")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or 32 % size:
        raise ValueError(f"size must be an int and divide 32, got {size!r}")  # before any draw or conversion
    y, counts = _plan(arrays.y_train, imbalance, n_max, profile, seed)
    rs = np.random.RandomState(seed)
    idx = _shuffle_take(y, counts, rs)  # (N,)
    te = np.arange(len(arrays.y_test))
    if n_test_per_class is not None:
        have = np.bincount(arrays.y_test, minlength=len(CLASSES))  # (10,)
        if not _is_int(n_test_per_class) or not 1 <= n_test_per_class <= have.min():
            raise ValueError(
                f"n_test_per_class must be None or an int in 1..{have.min()} (test images of the smallest "
                f"class), got {n_test_per_class!r}"
            )
        # continue the training generator: one seed fixes both sets, and the test draw does not depend on
        # imbalance or profile (the training shuffles consume the same numbers whatever the counts)
        te = np.concatenate(
            [
                np.sort(rs.choice(np.flatnonzero(arrays.y_test == c), size=int(n_test_per_class), replace=False))
                for c in range(len(CLASSES))
            ]
        )
    return LongTailedTask(
        x_train=to_tensor(arrays.x_train[idx], size),
        y_train=torch.from_numpy(arrays.y_train[idx]),
        class_counts=torch.from_numpy(counts),
        x_test=to_tensor(arrays.x_test[te], size),
        y_test=torch.from_numpy(arrays.y_test[te]),
        imbalance=_check_imbalance(imbalance),
        profile=profile,
    )
