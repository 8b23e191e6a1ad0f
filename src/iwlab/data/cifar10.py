"""CIFAR-10: the canonical python batches (and the shared npz copy), plus Byrd & Lipton's task builders.

Formats read, in this order, from ``data_dir(root) / "cifar10"``:

* ``cifar10.npz`` with ``x_train (50000, 32, 32, 3) uint8, y_train, x_test, y_test`` (the copy in the
  project's shared data folder);
* ``cifar-10-batches-py/`` holding the pickled ``data_batch_1..5`` and ``test_batch`` of the canonical
  ``cifar-10-python.tar.gz`` (md5 c58f30108f718f92721af3b95e74349a);
* the tarball itself, extracted on first use; with ``download=True`` it is fetched and verified.

Task builders turn the arrays into float tensors ``(N, 3, s, s)`` normalized with the published
training-set channel means and stds (optionally average-pooled to ``s < 32`` for CPU profiles):
:func:`binary_task` (class pairs such as cats/dogs, sub-sampling, label noise, out-of-domain and noise
evaluation sets) and :func:`multiclass_task`.

Example:
    >>> arrays = make_fixture(n_train_per_class=4, n_test_per_class=2)
    >>> task = binary_task(arrays, ("cat", "dog"), n_noise=5, size=16)
    >>> task.x_train.shape, task.x_noise.shape
    (torch.Size([8, 3, 16, 16]), torch.Size([5, 3, 16, 16]))
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)  # training-set channel means and stds (Krizhevsky's CIFAR-10)
STD = (0.2470, 0.2435, 0.2616)
TARBALL = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"


@dataclass
class CifarArrays:
    """Raw CIFAR-10 arrays in the original order: images ``(N, 32, 32, 3) uint8``, labels ``int64``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class BinaryTask:
    """A two-class task with its evaluation sets; label 1 is the second class (e.g. dog)."""

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
    """All ten classes; labels 0..9 in :data:`CLASSES` order."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def _class_index(name: str) -> int:
    if name not in CLASSES:
        raise ValueError(f"unknown CIFAR-10 class '{name}'; valid: {', '.join(CLASSES)}")
    return CLASSES.index(name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (truncated or corrupt?): {e}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (n, 3072) and n labels, got {data.shape} and {len(labels)}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_batches(directory: str | Path) -> CifarArrays:
    """Read the canonical pickled batches (``data_batch_1..5``, ``test_batch``) from a directory.

    Example:
        >>> # read_batches("~/.cache/iwlab/cifar10/cifar-10-batches-py")
    """
    directory = Path(directory)
    train = [
        _read_batch(directory / f"data_batch_{i}") for i in range(1, 6) if (directory / f"data_batch_{i}").exists()
    ]
    if not train or not (directory / "test_batch").exists():
        raise FileNotFoundError(f"{directory}: expected data_batch_1..5 and test_batch")
    xt, yt = _read_batch(directory / "test_batch")
    return CifarArrays(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), xt, yt)


def write_cifar_batches(directory: str | Path, arrays: CifarArrays, n_batches: int = 5) -> Path:
    """Write arrays in the canonical pickle format (for fixtures and tests); returns the directory.

    Example:
        >>> import tempfile; d = write_cifar_batches(tempfile.mkdtemp(), make_fixture(2, 1))
        >>> read_batches(d).x_train.shape
        (20, 32, 32, 3)
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, x: np.ndarray, y: np.ndarray) -> None:
        flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        with open(path, "wb") as f:
            pickle.dump({b"data": flat, b"labels": [int(v) for v in y]}, f)

    for i, idx in enumerate(np.array_split(np.arange(len(arrays.x_train)), n_batches), start=1):
        dump(directory / f"data_batch_{i}", arrays.x_train[idx], arrays.y_train[idx])
    dump(directory / "test_batch", arrays.x_test, arrays.y_test)
    return directory


def load_cifar10(root: str | Path | None = None, download: bool = False) -> CifarArrays:
    """CIFAR-10 arrays from ``data_dir(root)/cifar10`` (npz, pickled batches or tarball).

    Example:
        >>> # arrays = load_cifar10()   # with IWLAB_DATA=/path/to/data holding cifar10/
    """
    from iwlab.data.download import data_dir, ensure, verify

    folder = data_dir(root) / "cifar10"
    if (folder / "cifar10.npz").exists():
        with np.load(folder / "cifar10.npz") as z:
            for k in ("x_train", "y_train", "x_test", "y_test"):
                if k not in z:
                    raise ValueError(f"{folder / 'cifar10.npz'} lacks the array '{k}'")
            return CifarArrays(z["x_train"], z["y_train"].astype(np.int64), z["x_test"], z["y_test"].astype(np.int64))
    if (folder / BATCH_DIR).exists():
        return read_batches(folder / BATCH_DIR)
    if not (folder / TARBALL).exists():
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {folder} (looked for cifar10.npz, {BATCH_DIR}/, {TARBALL}); "
                "set IWLAB_DATA to a folder holding cifar10/, or allow download"
            )
        ensure("cifar10", root=root, download=True)
    verify(folder / TARBALL, "c58f30108f718f92721af3b95e74349a")
    with tarfile.open(folder / TARBALL) as tar:
        tar.extractall(folder, filter="data")
    return read_batches(folder / BATCH_DIR)


def make_fixture(n_train_per_class: int = 20, n_test_per_class: int = 10, seed: int = 0) -> CifarArrays:
    """A tiny fake CIFAR-10: each class is a distinct colour/texture pattern plus noise, so it is learnable.

    Example:
        >>> make_fixture(3, 1).x_test.shape
        (10, 32, 32, 3)
    """
    rng = np.random.default_rng(seed)
    protos = rng.uniform(40, 215, size=(10, 32, 32, 3))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(10), n)
        x = protos[y] + rng.normal(0, 30, size=(len(y), 32, 32, 3))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    xtr, ytr = draw(n_train_per_class)
    xte, yte = draw(n_test_per_class)
    return CifarArrays(xtr, ytr, xte, yte)


def to_tensor(x: np.ndarray, size: int = 32) -> Tensor:
    """uint8 ``(N, 32, 32, 3)`` -> normalized float32 ``(N, 3, size, size)`` (average-pooled if ``size < 32``).

    Example:
        >>> to_tensor(np.zeros((2, 32, 32, 3), np.uint8), size=8).shape
        torch.Size([2, 3, 8, 8])
    """
    if size < 1 or 32 % size:
        raise ValueError(f"size must divide 32, got {size}")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)
    if size < 32:
        t = torch.nn.functional.avg_pool2d(t, 32 // size)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((t - mean) / std).contiguous()


def noise_images(n: int = 1000, seed: int = 0, size: int = 32) -> Tensor:
    """``n`` images of uniform random pixels, seeded, normalized like the real images.

    Example:
        >>> noise_images(3, size=16).shape
        torch.Size([3, 3, 16, 16])
    """
    g = torch.Generator().manual_seed(seed)
    pix = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
    return to_tensor(pix.numpy(), size)


def _take(idx: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
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

    ``subsample={"cat": 0.25}`` keeps a quarter of the cats (after ``n_train_per_class``);
    ``label_noise=0.05`` flips 5% of each class's training labels (``flipped`` marks them).
    ``x_other`` holds test images of the other 8 classes; ``x_noise`` uniform-noise images.

    Example:
        >>> t = binary_task(make_fixture(10, 2), ("automobile", "truck"), subsample={"truck": 0.5}, n_noise=2)
        >>> int((t.y_train == 1).sum()), int((t.y_train == 0).sum())
        (5, 10)
    """
    a, b = (_class_index(c) for c in classes)
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
        k = int(round(len(idx) * frac))
        if k == 0:
            raise ValueError(
                f"class {CLASSES[cls]} would be left empty by subsampling (n={len(idx)}, fraction={frac:g})"
            )
        idx = np.sort(rng.choice(idx, size=k, replace=False)) if k < len(idx) else idx
        parts.append((idx, np.full(len(idx), label)))
    for name in subsample or {}:
        if _class_index(name) not in (a, b):
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

    Example:
        >>> multiclass_task(make_fixture(3, 1), size=8).x_train.shape
        torch.Size([30, 3, 8, 8])
    """
    rng = np.random.default_rng(seed)
    tr = np.concatenate([_take(np.flatnonzero(arrays.y_train == c), n_train_per_class, rng) for c in range(10)])
    te = np.concatenate([_take(np.flatnonzero(arrays.y_test == c), n_test_per_class, rng) for c in range(10)])
    return MulticlassTask(
        x_train=to_tensor(arrays.x_train[tr], size),
        y_train=torch.from_numpy(arrays.y_train[tr].astype(np.int64)),
        x_test=to_tensor(arrays.x_test[te], size),
        y_test=torch.from_numpy(arrays.y_test[te].astype(np.int64)),
    )
