"""Byrd & Lipton's (2019, Sec. 3-4) CIFAR-10 tasks: class pairs with their evaluation sets, and all ten classes.

Both builders take raw :class:`~iwlab.data.cifar10.CifarArrays` and return float32 tensors
``(N, 3, s, s)`` normalized as in :func:`~iwlab.data.cifar10.to_tensor`. Every choice of images is
drawn from one ``numpy.random.default_rng(seed)`` in a fixed order (training images per class, the
sub-sample, the flipped labels, test images, other-class images), so a seed fixes the task.

* :func:`binary_task`: two classes (label 1 = the second, e.g. dog), optionally one sub-sampled and
  labels flipped, with the test images of the two classes, of the other 8 classes, and uniform-noise
  images (Byrd & Lipton's three evaluation sets, Figs. 4 and A.3-A.9);
* :func:`multiclass_task`: all ten classes (their Fig. 5).

Sub-sample sizes follow the one rounding rule of :func:`iwlab.data.resample.kept_count` (halves round
up: 100 images at fraction 1/8 keep 13).

Example:
    >>> from iwlab.data.cifar10 import make_fixture
    >>> arrays = make_fixture(n_train_per_class=4, n_test_per_class=2)
    >>> task = binary_task(arrays, ("cat", "dog"), n_noise=5, size=16)
    >>> task.x_train.shape, task.x_noise.shape
    (torch.Size([8, 3, 16, 16]), torch.Size([5, 3, 16, 16]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from iwlab.data.cifar10 import CLASSES, CifarArrays, to_tensor, validate_arrays
from iwlab.data.resample import kept_count

__all__ = ["BinaryTask", "MulticlassTask", "binary_task", "class_index", "multiclass_task", "noise_images"]


@dataclass
class BinaryTask:
    """A two-class task with its evaluation sets; label 1 is the second class (e.g. dog).

    Attributes:
        x_train: ``(N, 3, s, s)`` float32 training images.
        y_train: ``(N,)`` int64 labels in {0, 1}, after label noise.
        flipped: ``(N,)`` bool, the training labels that were flipped.
        x_test: ``(Nt, 3, s, s)`` float32 test images of the two classes.
        y_test: ``(Nt,)`` int64 their labels.
        x_other: ``(No, 3, s, s)`` float32 test images of the other 8 classes.
        x_noise: ``(Nn, 3, s, s)`` float32 uniform-noise images.
        classes: the names of class 0 and class 1.
    """

    x_train: Tensor
    y_train: Tensor
    flipped: Tensor
    x_test: Tensor
    y_test: Tensor
    x_other: Tensor
    x_noise: Tensor
    classes: tuple[str, str]


@dataclass
class MulticlassTask:
    """All ten classes; labels 0..9 in :data:`~iwlab.data.cifar10.CLASSES` order.

    Attributes:
        x_train: ``(N, 3, s, s)`` float32; y_train: ``(N,)`` int64; x_test: ``(Nt, 3, s, s)`` float32;
        y_test: ``(Nt,)`` int64.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def class_index(name: str) -> int:
    """The label of a CIFAR-10 class name (0..9).

    Raises:
        ValueError: not a CIFAR-10 class name.

    Example:
        >>> class_index("cat"), class_index("dog")
        (3, 5)
    """
    if name not in CLASSES:
        raise ValueError(f"unknown CIFAR-10 class '{name}'; valid: {', '.join(CLASSES)}")
    return CLASSES.index(name)


def noise_images(n: int = 1000, seed: int = 0, size: int = 32) -> Tensor:
    """``n`` images of uniform random pixels, seeded, normalized like the real images.

    Returns:
        ``(n, 3, size, size)`` float32 (see :func:`~iwlab.data.cifar10.to_tensor`).

    Raises:
        ValueError: ``size`` does not divide 32.

    Example:
        >>> noise_images(3, size=16).shape
        torch.Size([3, 3, 16, 16])
    """
    g = torch.Generator().manual_seed(seed)
    pix = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
    return to_tensor(pix.numpy(), size)


def _take(idx: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``idx`` drawn without replacement, sorted (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=n, replace=False))


def binary_task(
    arrays: CifarArrays,
    classes: tuple[str, str] = ("cat", "dog"),
    *,
    n_train_per_class: int | None = None,
    n_test_per_class: int | None = None,
    n_other: int | None = None,
    subsample: dict[str, float] | None = None,
    label_noise: float = 0.0,
    n_noise: int = 1000,
    size: int = 32,
    seed: int = 0,
) -> BinaryTask:
    """Two classes of CIFAR-10 with Byrd & Lipton's evaluation sets.

    ``subsample={"cat": 0.25}`` keeps a quarter of the cats (after ``n_train_per_class``; the count is
    :func:`~iwlab.data.resample.kept_count`, halves rounded up); ``label_noise=0.05`` flips 5% of each
    class's training labels (``flipped`` marks them). ``x_other`` holds test images of the other 8
    classes; ``x_noise`` uniform-noise images (seed ``seed + 1``).

    Args:
        arrays: raw CIFAR-10 arrays.
        classes: names of class 0 and class 1.
        n_train_per_class, n_test_per_class, n_other: how many images to draw (None: all).
        subsample: class name -> kept fraction in (0, 1].
        label_noise: fraction of each class's training labels flipped, in [0, 0.5).
        n_noise: number of noise images.
        size: image side after average pooling (divides 32).
        seed: seed of every draw.

    Returns:
        A :class:`BinaryTask`.

    Raises:
        ValueError: an unknown or repeated class, a fraction outside (0, 1], a sub-sample that would leave
            a class empty, ``label_noise`` outside [0, 0.5), or arrays that fail
            :func:`~iwlab.data.cifar10.validate_arrays`.

    Example:
        >>> from iwlab.data.cifar10 import make_fixture
        >>> t = binary_task(make_fixture(10, 2), ("automobile", "truck"), subsample={"truck": 0.5}, n_noise=2)
        >>> int((t.y_train == 1).sum()), int((t.y_train == 0).sum())
        (5, 10)
    """
    validate_arrays(arrays, "binary_task: arrays")
    a, b = (class_index(c) for c in classes)
    if a == b:
        raise ValueError(f"the two classes must differ, got {classes}")
    if not 0.0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    rng = np.random.default_rng(seed)
    parts = []
    for label, cls in ((0, a), (1, b)):
        idx = _take(np.flatnonzero(arrays.y_train == cls), n_train_per_class, rng)
        frac = (subsample or {}).get(CLASSES[cls], 1.0)
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"subsample fraction for {CLASSES[cls]} must be in (0, 1], got {frac}")
        k = kept_count(len(idx), frac)
        if k == 0:
            raise ValueError(
                f"class {CLASSES[cls]} would be left empty by subsampling (n={len(idx)}, fraction={frac:g})"
            )
        idx = np.sort(rng.choice(idx, size=k, replace=False)) if k < len(idx) else idx
        parts.append((idx, np.full(len(idx), label)))
    for name in subsample or {}:
        if class_index(name) not in (a, b):
            raise ValueError(f"subsample names {name}, which is not one of the task's classes {classes}")
    idx = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    flipped = np.zeros(len(y), dtype=bool)
    if label_noise > 0:
        for label in (0, 1):
            members = np.flatnonzero(y == label)
            k = int(round(len(members) * label_noise))
            flipped[rng.choice(members, size=k, replace=False)] = True
        y = np.where(flipped, 1 - y, y)
    test_parts = [_take(np.flatnonzero(arrays.y_test == c), n_test_per_class, rng) for c in (a, b)]
    test_idx = np.concatenate(test_parts)
    y_test = np.concatenate([np.zeros(len(test_parts[0])), np.ones(len(test_parts[1]))]).astype(np.int64)
    other = _take(np.flatnonzero((arrays.y_test != a) & (arrays.y_test != b)), n_other, rng)
    return BinaryTask(
        x_train=to_tensor(arrays.x_train[idx], size),
        y_train=torch.from_numpy(y),
        flipped=torch.from_numpy(flipped),
        x_test=to_tensor(arrays.x_test[test_idx], size),
        y_test=torch.from_numpy(y_test),
        x_other=to_tensor(arrays.x_test[other], size),
        x_noise=noise_images(n_noise, seed=seed + 1, size=size),
        classes=(CLASSES[a], CLASSES[b]),
    )


def multiclass_task(
    arrays: CifarArrays,
    *,
    n_train_per_class: int | None = None,
    n_test_per_class: int | None = None,
    size: int = 32,
    seed: int = 0,
) -> MulticlassTask:
    """All ten classes, optionally fewer images per class and smaller images.

    Returns:
        A :class:`MulticlassTask`, images grouped by class (0..9).

    Raises:
        ValueError: arrays that fail :func:`~iwlab.data.cifar10.validate_arrays`, or ``size`` not dividing 32.

    Example:
        >>> from iwlab.data.cifar10 import make_fixture
        >>> multiclass_task(make_fixture(3, 1), size=8).x_train.shape
        torch.Size([30, 3, 8, 8])
    """
    validate_arrays(arrays, "multiclass_task: arrays")
    rng = np.random.default_rng(seed)
    tr = np.concatenate([_take(np.flatnonzero(arrays.y_train == c), n_train_per_class, rng) for c in range(10)])
    te = np.concatenate([_take(np.flatnonzero(arrays.y_test == c), n_test_per_class, rng) for c in range(10)])
    return MulticlassTask(
        x_train=to_tensor(arrays.x_train[tr], size),
        y_train=torch.from_numpy(arrays.y_train[tr].astype(np.int64)),
        x_test=to_tensor(arrays.x_test[te], size),
        y_test=torch.from_numpy(arrays.y_test[te].astype(np.int64)),
    )
