"""MNIST from the original IDX files (gzipped), downloaded and md5-checked by :mod:`iwlab.data.download`.

Files, in ``data_dir(root) / "mnist"``: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (the canonical names and md5s are in
``RESOURCES["mnist"]``). Every file is verified against its md5 before it is read; a missing file or a
wrong checksum raises an error naming that file.

:func:`to_tensor` turns ``uint8 (N, 28, 28)`` images into ``float32 (N, 1, 28, 28)`` standardized with the
usual training-set pixel mean :data:`MEAN` = 0.1307 and std :data:`STD` = 0.3081 (of ``x / 255`` over all
60,000 training images). Katharopoulos & Fleuret's Keras code only scaled to [0, 1]; standardizing is a
fixed affine change of the input that Adam is nearly insensitive to.

Source: the data of Katharopoulos & Fleuret (2017, Sec. 4.1); LeCun et al.'s IDX files.

Example:
    >>> arrays = make_fixture(n_train=8, n_test=4)
    >>> x = to_tensor(arrays.x_train)        # float32 (8, 1, 28, 28)
    >>> x.shape, arrays.y_train.dtype
    (torch.Size([8, 1, 28, 28]), dtype('int64'))
"""

from __future__ import annotations

import gzip as _gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from iwlab.data.download import data_dir, ensure, read_idx

__all__ = [
    "FILES",
    "MEAN",
    "STD",
    "MnistArrays",
    "load_mnist",
    "make_fixture",
    "read_mnist_dir",
    "to_tensor",
    "write_mnist_idx",
]

MEAN = 0.1307  # mean of x/255 over the 60,000 MNIST training images
STD = 0.3081  # their standard deviation (the constants torchvision's examples use)

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass
class MnistArrays:
    """Raw MNIST in file order: images ``(N, 28, 28) uint8``, labels ``(N,) int64`` in 0..9.

    Attributes:
        x_train: ``(60000, 28, 28) uint8`` pixel values 0..255 on the real data.
        y_train: ``(60000,) int64`` digit labels.
        x_test: ``(10000, 28, 28) uint8``.
        y_test: ``(10000,) int64``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _read(path: Path, images: bool) -> np.ndarray:
    arr = read_idx(path).numpy()
    if images:
        if arr.ndim != 3 or arr.shape[1:] != (28, 28) or arr.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 images (N, 28, 28), got {arr.dtype} {arr.shape}")
        return arr
    if arr.ndim != 1 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 labels (N,), got {arr.dtype} {arr.shape}")
    if len(arr) and arr.max() > 9:
        raise ValueError(f"{path}: labels must be digits 0..9, got values up to {int(arr.max())}")
    return arr.astype(np.int64)


def read_mnist_dir(directory: str | os.PathLike[str]) -> MnistArrays:
    """Read the four IDX files (no checksum check) from ``directory``; images and labels must pair up.

    Args:
        directory: folder holding the four files named in :data:`FILES` (gzipped or plain IDX).

    Returns:
        :class:`MnistArrays`: images ``uint8 (N, 28, 28)`` and labels ``int64 (N,)`` in 0..9, in file order.

    Raises:
        FileNotFoundError: a file is missing (the message names it and ``IWLAB_DATA``).
        ValueError: one line naming the file: truncated or corrupt gzip/IDX, images not ``uint8 (N, 28, 28)``,
            labels not ``uint8 (N,)`` in 0..9, or a label count that differs from the image count.

    Example:
        >>> import tempfile; d = write_mnist_idx(tempfile.mkdtemp(), make_fixture(5, 2))
        >>> read_mnist_dir(d).x_test.shape
        (2, 28, 28)
    """
    directory = Path(directory)
    for name in FILES.values():
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"MNIST file missing: {directory / name}; set IWLAB_DATA to a folder whose mnist/ holds the IDX files"
            )
    out = {k: _read(directory / name, k.startswith("x")) for k, name in FILES.items()}
    for split in ("train", "test"):
        nx, ny = len(out[f"x_{split}"]), len(out[f"y_{split}"])
        if nx != ny:
            raise ValueError(
                f"MNIST {split}: {nx} images but {ny} labels "
                f"({directory / FILES[f'x_{split}']}, {directory / FILES[f'y_{split}']})"
            )
    return MnistArrays(**out)


def load_mnist(
    root: str | os.PathLike[str] | None = None, download: bool = False, *, verify: bool = True
) -> MnistArrays:
    """MNIST from ``data_dir(root) / "mnist"``: every file md5-verified, downloaded first if ``download``.

    Args:
        root: the data root (see :func:`iwlab.data.download.data_dir`: ``root``, else ``$IWLAB_DATA``,
            else ``~/.cache/iwlab``).
        download: fetch missing files (about 11 MB) first.
        verify: check every md5. ``verify=False`` skips the check (for fixtures written by
            :func:`write_mnist_idx`, e.g. in CI); it never downloads.

    Returns:
        :class:`MnistArrays` (60,000 training and 10,000 test images on the real data).

    Raises:
        FileNotFoundError: a file is missing and ``download`` is false (the message names it and
            the ``IWLAB_DATA`` variable).
        ChecksumError: a file's md5 differs from the registered one (the message names the file).
        ValueError: a file is truncated or not IDX.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp(); _ = write_mnist_idx(Path(root) / "mnist", make_fixture(6, 2))
        >>> load_mnist(root, verify=False).x_train.shape  # real data (md5-verified): (60000, 28, 28)
        (6, 28, 28)
    """
    folder = ensure("mnist", root=root, download=download) if verify else data_dir(root) / "mnist"
    return read_mnist_dir(folder)


def to_tensor(x: np.ndarray | Tensor) -> Tensor:
    """uint8 ``(N, 28, 28)`` (numpy or torch) -> float32 ``(N, 1, 28, 28)`` equal to ``(x / 255 - MEAN) / STD``.

    Args:
        x: uint8 images ``(N, H, W)`` (any ``H, W``), numpy or torch, on any device.

    Returns:
        float32 ``(N, 1, H, W)``, standardized (unitless), on ``x``'s device.

    Raises:
        ValueError: ``x`` is not 3-D or not uint8 (float images are refused, never divided by 255 a second time).

    Example:
        >>> float(to_tensor(np.zeros((1, 28, 28), np.uint8))[0, 0, 0, 0])  # doctest: +ELLIPSIS
        -0.4242...
    """
    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    if t.ndim != 3:
        raise ValueError(f"to_tensor: expected images x of shape (N, H, W), got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        how = "if they are in [0, 1], convert with (x * 255).round() to uint8" if t.is_floating_point() else ""
        raise ValueError(
            f"to_tensor: x has dtype {t.dtype}; expected uint8 pixel values 0..255" + (f" ({how})" if how else "")
        )
    t = t.to(torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, H, W)
    return t.sub_(MEAN).div_(STD).contiguous()


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.uint8:  # a cast here would wrap or truncate silently
        raise ValueError(f"IDX unsigned-byte data must be uint8, got {arr.dtype}")
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def write_mnist_idx(directory: str | os.PathLike[str], arrays: MnistArrays, gzip: bool = True) -> Path:
    """Write arrays as the four IDX files (gzipped under the canonical ``.gz`` names when ``gzip``).

    Without ``gzip`` the files are plain IDX saved under the same names (:func:`read_idx` detects gzip
    from the magic bytes, so both read back).

    Args:
        directory: destination folder (created if missing).
        arrays: images ``uint8 (N, 28, 28)`` and labels ``(N,)`` integers in 0..255.
        gzip: gzip each file (with mtime 0, so the bytes are reproducible).

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: images that are not ``uint8`` (never cast: floats in [0, 1] would become black), or
            labels that are not 1-D integers in 0..255 (the IDX unsigned-byte type). Label counts are not
            checked here (tests write mismatched files on purpose); :func:`read_mnist_dir` checks them.

    Example:
        >>> import tempfile; d = write_mnist_idx(tempfile.mkdtemp(), make_fixture(3, 2), gzip=False)
        >>> sorted(p.name for p in d.iterdir())[0]
        't10k-images-idx3-ubyte.gz'
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for key in FILES:
        arr = np.asarray(getattr(arrays, key))
        if key.startswith("x") and arr.dtype != np.uint8:
            raise ValueError(f"write_mnist_idx: arrays.{key} has dtype {arr.dtype}; expected uint8 pixel values 0..255")
        if key.startswith("y"):
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"write_mnist_idx: arrays.{key} must be 1-D integers, got {arr.dtype} {arr.shape}")
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
                raise ValueError(f"write_mnist_idx: arrays.{key}: labels must fit in uint8 (0..255)")
            arr = arr.astype(np.uint8)  # lossless: the range was checked above
        out[key] = arr
    for key, name in FILES.items():
        raw = _idx_bytes(out[key])
        (directory / name).write_bytes(_gzip.compress(raw, mtime=0) if gzip else raw)
    return directory


def make_fixture(n_train: int = 100, n_test: int = 20, seed: int = 0) -> MnistArrays:
    """A tiny learnable fake MNIST: one random blob prototype per digit plus noise, labels cycling 0..9.

    Args:
        n_train: training images.
        n_test: test images.
        seed: seed of the numpy generator (same seed, same arrays).

    Returns:
        :class:`MnistArrays` with images ``uint8 (n, 28, 28)`` and labels ``int64 (n,)``.

    Example:
        >>> a = make_fixture(12, 3); a.x_train.shape, a.y_train[:3].tolist()
        ((12, 28, 28), [0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    protos = (rng.random((10, 28, 28)) < 0.2) * 200.0

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        x = protos[y] + rng.normal(0, 25, size=(n, 28, 28))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return MnistArrays(xtr, ytr, xte, yte)
