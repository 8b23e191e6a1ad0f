"""CIFAR-10 readers: the canonical python batches, the shared npz copy, and a generated fixture.

Formats read, in this order, from ``data_dir(root) / "cifar10"``:

* ``cifar10.npz`` with ``x_train (50000, 32, 32, 3) uint8, y_train, x_test, y_test`` (the copy in the
  project's shared data folder);
* ``cifar-10-batches-py/`` holding the pickled ``data_batch_1..5`` and ``test_batch`` of the canonical
  ``cifar-10-python.tar.gz`` (md5 c58f30108f718f92721af3b95e74349a);
* the tarball itself, extracted on first use; with ``download=True`` it is fetched and verified.

Every source goes through one check (:func:`validate_arrays`): images ``uint8 (N, 32, 32, 3)`` (channels
last, 0..255; float images are refused, never rescaled), labels ``(N,)`` of an integer dtype in 0..9, one
per image. Errors are one line naming the file and the array or key; a truncated or corrupt npz or batch
is reported as such with the file's name.

:func:`to_tensor` turns images into float tensors ``(N, 3, s, s)`` normalized with the published
training-set channel means and stds (optionally average-pooled to ``s < 32`` for CPU profiles). Byrd &
Lipton's tasks (class pairs, sub-sampling, label noise, evaluation sets) are built in
:mod:`iwlab.data.cifar10_tasks`.

Example:
    >>> arrays = make_fixture(n_train_per_class=4, n_test_per_class=2)
    >>> to_tensor(arrays.x_train, size=16).shape
    torch.Size([40, 3, 16, 16])
"""

from __future__ import annotations

import numbers
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from iwlab.data.download import data_dir, ensure, verify

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


def _one_line(e: BaseException) -> str:
    # library messages (zipfile, zlib, pickle) may span lines; the reader's errors stay on one line
    return " ".join(f"{type(e).__name__}: {e}".split())


def _check_images(x: object, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1:] == (3, 32, 32):
        raise ValueError(
            f"{where}: channels-first images {x.shape}; expected channels-last (N, 32, 32, 3): "
            "use x.transpose(0, 2, 3, 1)"
        )
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise ValueError(f"{where}: expected images of shape (N, 32, 32, 3), got {x.shape}")
    if x.dtype != np.uint8:
        # never rescale here: a float image in [0, 1] divided by 255 again comes out near-black
        how = (
            "if they are in [0, 1], convert with (x * 255).round().astype(np.uint8)"
            if np.issubdtype(x.dtype, np.floating)
            else "convert with x.astype(np.uint8) after checking 0 <= x <= 255"
        )
        raise ValueError(f"{where}: {x.dtype} images; expected uint8 pixel values 0..255 ({how})")
    return x


def _check_labels(y: object, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == len(CLASSES):
        raise ValueError(f"{where}: one-hot labels {y.shape}; expected class indices (N,) in 0..9: use y.argmax(1)")
    if y.ndim != 1:
        raise ValueError(f"{where}: expected labels of shape (N,), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        # float labels are refused even when integral: they are a sign of a mixed-up array
        raise ValueError(f"{where}: {y.dtype} labels; expected an integer dtype (class indices 0..9)")
    if len(y) != n:
        raise ValueError(f"{where}: {len(y)} labels for {n} images")
    if n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= len(CLASSES):
            hint = " (1-based? subtract 1)" if lo >= 1 and hi == len(CLASSES) else ""
            raise ValueError(f"{where}: labels must be class indices 0..9, got range [{lo}, {hi}]{hint}")
    return y.astype(np.int64, copy=False)


def _check_split(
    x: object, y: object, *, x_where: str, y_where: str, allow_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The one validation of CIFAR images and labels, used by every source (npz, batches, tarball, arrays)."""
    x = _check_images(x, x_where)
    if not allow_empty and len(x) == 0:
        raise ValueError(f"{x_where}: no images (0 rows)")
    return x, _check_labels(y, len(x), y_where)


def validate_arrays(arrays: CifarArrays, source: str = "CifarArrays") -> CifarArrays:
    """Check raw CIFAR-10 arrays; return them with labels as ``int64`` (values unchanged).

    Images must be ``uint8 (N, 32, 32, 3)`` (channels last, 0..255; never rescaled here), labels
    ``(N,)`` of an integer dtype with values 0..9, one per image. Empty splits are allowed.

    Raises:
        ValueError: one line naming ``source`` and the field (``x_train`` ...) and what was expected:
            channels-first or other shapes, non-uint8 images, one-hot/float/2-D labels, labels
            outside 0..9, or a label count that differs from the image count.

    Example:
        >>> validate_arrays(make_fixture(1, 1)).y_test.dtype
        dtype('int64')
    """
    if not isinstance(arrays, CifarArrays):
        raise TypeError(f"{source}: expected CifarArrays, got {type(arrays).__name__}")
    out = {}
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        out[xk], out[yk] = _check_split(
            getattr(arrays, xk),
            getattr(arrays, yk),
            x_where=f"{source}.{xk}",
            y_where=f"{source}.{yk}",
            allow_empty=True,
        )
    return CifarArrays(**out)


def _batch_field(d: dict, name: str, path: Path) -> object:
    # the canonical batches were pickled under Python 2 (bytes keys); re-saved ones often have str keys
    for key in (name.encode(), name):
        if key in d:
            return d[key]
    found = ", ".join(sorted(repr(k) for k in d))
    raise ValueError(f"{path}: not a CIFAR-10 python batch: no {name.encode()!r} or {name!r} key (keys: {found})")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except OSError:
        raise
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise ValueError(f"{path}: not a CIFAR-10 python batch (truncated or corrupt?): {_one_line(e)}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch: expected a pickled dict, got {type(d).__name__}")
    data = np.asarray(_batch_field(d, "data", path))  # (n, 3072): R, G, B planes of 32x32, row-major
    labels = _batch_field(d, "labels", path)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{path}, key 'data': expected shape (n, 3072) (R, G, B planes of 32x32 per row), got {data.shape}"
        )
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3)
    return _check_split(x, labels, x_where=f"{path}, key 'data'", y_where=f"{path}, key 'labels'")


def read_batches(directory: str | Path) -> CifarArrays:
    """Read the canonical pickled batches (``data_batch_1..k``, ``test_batch``) from a directory.

    The canonical set has ``k = 5``; every ``data_batch_<i>`` present is read, and the numbers must run
    1..k without a gap (a missing batch is an error, never silently fewer images). Keys may be bytes
    (``b"data"``, ``b"labels"``, as shipped) or str (batches re-saved under Python 3).

    Raises:
        FileNotFoundError: no training batch or no ``test_batch``.
        ValueError: a gap in the batch numbers, or a batch that is corrupt or fails the checks of
            :func:`validate_arrays` (the message names the batch file and its key).

    Example:
        >>> import tempfile; d = write_cifar_batches(tempfile.mkdtemp(), make_fixture(1, 1), n_batches=2)
        >>> sorted(p.name for p in d.iterdir()), read_batches(d).x_train.shape
        (['data_batch_1', 'data_batch_2', 'test_batch'], (10, 32, 32, 3))
    """
    directory = Path(directory)
    suffixes = [p.name[len("data_batch_") :] for p in directory.glob("data_batch_*") if p.is_file()]
    odd = sorted(f"data_batch_{x}" for x in suffixes if x.isdigit() and x != str(int(x)))
    if odd:  # e.g. data_batch_01: neither read nor ignored silently
        raise ValueError(
            f"{directory}: unexpected batch file name {odd[0]} (expected data_batch_1..5, no leading zeros)"
        )
    numbers = sorted(int(x) for x in suffixes if x.isdigit())
    if not numbers or not (directory / "test_batch").is_file():
        raise FileNotFoundError(f"{directory}: expected data_batch_1..5 and test_batch")
    if numbers != list(range(1, len(numbers) + 1)):
        missing = min(set(range(1, max(numbers) + 1)) - set(numbers))
        raise ValueError(
            f"{directory}: training batches must be numbered 1..k without a gap; found "
            f"{', '.join(map(str, numbers))}, missing data_batch_{missing}"
        )
    train = [_read_batch(directory / f"data_batch_{i}") for i in numbers]
    xt, yt = _read_batch(directory / "test_batch")
    return CifarArrays(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), xt, yt)


def read_npz(path: str | Path) -> CifarArrays:
    """Read ``x_train, y_train, x_test, y_test`` from an ``.npz`` (the shared copy's format).

    Extra arrays (the shared copy's ``test_is_lossless``) are ignored. Every array is checked as in
    :func:`validate_arrays`, except that an empty split is an error.

    Raises:
        ValueError: one line naming the file (and the array key): a truncated or corrupt archive
            (bad zip, bad CRC, zlib or npy-header errors), a missing key, or an array that fails the checks.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "c.npz"; np.savez(p, **vars(make_fixture(1, 1)))
        >>> read_npz(p).x_train.shape
        (10, 32, 32, 3)
    """
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    damaged = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)
    try:
        z = np.load(path)
    except damaged as e:
        raise ValueError(f"{path}: cannot read the npz archive (truncated or corrupt?): {_one_line(e)}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an npz archive with {', '.join(keys)}")
    with z:
        missing = [k for k in keys if k not in z]
        try:
            raw = {} if missing else {k: z[k] for k in keys}  # reading is where a damaged member fails
        except damaged as e:
            raise ValueError(f"{path}: cannot read the npz archive (truncated or corrupt?): {_one_line(e)}") from None
    if missing:
        raise ValueError(f"{path} lacks the array '{missing[0]}' (expected {', '.join(keys)})")
    out = {}
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        out[xk], out[yk] = _check_split(
            raw[xk], raw[yk], x_where=f"{path}, array '{xk}'", y_where=f"{path}, array '{yk}'"
        )
    return CifarArrays(**out)


def write_cifar_batches(directory: str | Path, arrays: CifarArrays, n_batches: int = 5) -> Path:
    """Write arrays in the canonical pickle format (for fixtures and tests); returns the directory.

    The training images are split into ``n_batches`` files ``data_batch_1..n_batches`` (5 in the
    canonical set).

    Raises:
        ValueError: arrays that :func:`read_batches` would refuse (see :func:`validate_arrays`; empty
            splits too), or ``n_batches`` not an int in ``1..len(x_train)``.

    Example:
        >>> import tempfile; d = write_cifar_batches(tempfile.mkdtemp(), make_fixture(2, 1))
        >>> read_batches(d).x_train.shape
        (20, 32, 32, 3)
    """
    arrays = validate_arrays(arrays, "write_cifar_batches: arrays")
    for split in ("train", "test"):
        if len(getattr(arrays, f"x_{split}")) == 0:
            raise ValueError(f"write_cifar_batches: arrays.x_{split} is empty; a batch file needs at least one image")
    if (
        isinstance(n_batches, bool)
        or not isinstance(n_batches, numbers.Integral)
        or not 1 <= n_batches <= len(arrays.x_train)
    ):
        raise ValueError(
            f"n_batches must be an int in 1..{len(arrays.x_train)} (the training images), got {n_batches!r}"
        )
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

    Returns images ``uint8 (N, 32, 32, 3)`` and labels ``int64 (N,)`` in 0..9, train and test.

    Raises:
        FileNotFoundError: none of the three forms is present and ``download`` is false.
        ChecksumError: the tarball's md5 is not the canonical one.
        ValueError: see :func:`read_npz` and :func:`read_batches` (one line naming the file and key).

    Example::

        arrays = load_cifar10()  # with IWLAB_DATA=/path/to/data holding cifar10/
    """
    folder = data_dir(root) / "cifar10"
    if (folder / "cifar10.npz").exists():
        return read_npz(folder / "cifar10.npz")
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

    Pixels are divided by 255, then standardized per channel with :data:`MEAN` and :data:`STD`.

    Raises:
        ValueError: ``x`` is not uint8 ``(N, 32, 32, 3)`` (float images are refused, never divided by
            255 a second time), or ``size`` is not an int dividing 32.

    Example:
        >>> to_tensor(np.zeros((2, 32, 32, 3), np.uint8), size=8).shape
        torch.Size([2, 3, 8, 8])
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or 32 % size:
        raise ValueError(f"size must be an int and divide 32, got {size!r}")
    x = _check_images(x, "to_tensor: x")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)
    if size < 32:
        t = torch.nn.functional.avg_pool2d(t, 32 // size)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((t - mean) / std).contiguous()
