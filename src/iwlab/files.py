"""Checkpoint files shared by every trainer and experiment: atomic writes, safe reads, settings records.

* :func:`atomic_save` writes through a temporary file and a rename, so a kill never leaves half a file.
* :func:`load_checkpoint` reads one back; a file that cannot be read (truncated, empty, random bytes) is
  moved aside to ``<name>.corrupt`` with one logged warning, and the caller starts from scratch.
* :func:`check_record` compares the settings record a checkpoint was made with (its ``"spec"``) against
  the current run's, field by field, and raises one line naming the first field that differs: resuming
  with other settings would silently mix two runs.
* :func:`fingerprint` is a cheap hash of data tensors for those records.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = atomic_save({"epoch": 3}, pathlib.Path(d) / "checkpoints" / "cell.pt")
    ...     load_checkpoint(path), load_checkpoint(pathlib.Path(d) / "none.pt")  # None: start afresh
    ({'epoch': 3}, None)
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["atomic_save", "check_record", "fingerprint", "load_checkpoint", "set_aside"]

logger = logging.getLogger(__name__)

# every file torch.save writes (the default zip serialization since torch 1.6) starts with this
_ZIP_MAGIC = b"PK\x03\x04"
_HINT = "use another --out, or delete the checkpoint to start afresh"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a kill never leaves half a file.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_save({"a": 1}, pathlib.Path(tempfile.mkdtemp()) / "x" / "c.pt")
        >>> torch.load(p)
        {'a': 1}
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def set_aside(path: str | os.PathLike[str], reason: str, *, what: str = "checkpoint") -> Path | None:
    """Move an unusable file to ``<name>.corrupt`` (or ``<name>.corrupt.1``, ... if taken) and log one warning.

    Nothing is deleted: the file stays for inspection. Returns the new path, or None when the file had
    already gone (another process set it aside first).

    Args:
        path: the unusable file.
        reason: why it is unusable (goes into the warning, one line).
        what: what the file is, for the warning (``"checkpoint"``, ``"token cache"``).

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = pathlib.Path(d) / "tokens.pt"
        ...     _ = p.write_bytes(b"junk")
        ...     set_aside(p, "inconsistent contents", what="token cache").name
        'tokens.pt.corrupt'
    """
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    k = 0
    while dest.exists():
        k += 1
        dest = path.with_name(f"{path.name}.corrupt.{k}")
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    reason = " ".join(reason.split())  # one line, whatever the exception said
    logger.warning("%s %s cannot be used (%s); moved it to %s and starting afresh", what, path, reason, dest)
    return dest


def _unreadable(err: BaseException) -> bool:
    """Whether ``torch.load`` failed because the bytes are damaged (not, e.g., a missing CUDA device)."""
    if isinstance(err, EOFError | pickle.UnpicklingError | zipfile.BadZipFile):
        return True
    if isinstance(err, OSError) and err.errno == errno.EINVAL:  # torch's zip reader seeking in a short file
        return True
    if isinstance(err, RuntimeError):
        msg = str(err)
        return "PytorchStreamReader" in msg or "zip archive" in msg or "archive is corrupted" in msg
    return False


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: Any = None,
    weights_only: bool = False,
    what: str = "checkpoint",
) -> Any | None:
    """``torch.load(path)``, or None when there is nothing usable to resume from.

    None when the file does not exist. When it exists but cannot be read (empty, truncated, random
    bytes: anything that is not a readable ``torch.save`` zip archive), it is moved aside to
    ``<name>.corrupt`` (see :func:`set_aside`), one warning naming both paths and the reason is logged
    on this module's logger, and None is returned so the caller starts from scratch. Errors that do
    not mean damaged bytes (a CUDA tensor without CUDA, a permission error) propagate.

    Args:
        path: the checkpoint file.
        map_location: as for ``torch.load``.
        weights_only: as for ``torch.load`` (iwlab's own trainer checkpoints need False).
        what: what the file is, for the warning.

    Returns:
        The loaded object, or None.

    Raises:
        OSError: the file exists but cannot be opened.
        RuntimeError: ``torch.load`` failed for a reason other than damaged bytes.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> load_checkpoint(d / "missing.pt") is None
        True
        >>> _ = (d / "bad.pt").write_bytes(b"")
        >>> load_checkpoint(d / "bad.pt") is None, (d / "bad.pt.corrupt").exists()
        (True, True)
    """
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        # not a torch.save file: unpickling random bytes could even run code, so do not try
        reason = "empty file" if not head else f"not a torch.save zip archive (starts with {head!r})"
        set_aside(path, reason, what=what)
        return None
    try:
        # the central directory sits at the end of the archive: a truncated file fails here, in the
        # same way on every torch version
        zipfile.ZipFile(path).close()
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        set_aside(path, f"truncated or damaged zip archive ({type(err).__name__}: {err})", what=what)
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:
        if not _unreadable(err):
            raise
        set_aside(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", what=what)
        return None


# ----------------------------------------------------------------------------------------------
# settings records


def fingerprint(*tensors: Tensor | None, max_elements: int = 65536) -> str:
    """A cheap SHA-256 of data tensors (shape, dtype and values), for a checkpoint's settings record.

    Tensors with at most ``max_elements`` elements are hashed whole; larger ones through
    ``max_elements`` evenly spaced elements (in row-major order), so a change confined to the
    elements in between is not caught. ``None`` entries hash as a marker. Runs on the tensors' device;
    only the sampled elements are copied to the CPU.

    Args:
        tensors: any shapes and dtypes, on any device.
        max_elements: elements hashed per tensor at most.

    Returns:
        64 hex digits.

    Example:
        >>> fingerprint(torch.arange(3)) == fingerprint(torch.arange(3)) != fingerprint(torch.arange(3.0))
        True
    """
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"None\0")
            continue
        t = t.detach()
        h.update(f"{tuple(t.shape)}|{t.dtype}\0".encode())
        n = t.numel()
        if n > max_elements:
            # evenly spaced flat positions, in integer arithmetic (exact for any n)
            flat = torch.arange(max_elements, dtype=torch.long) * (n - 1) // (max_elements - 1)  # (K,)
            idx = torch.unravel_index(flat.to(t.device), t.shape)
            t = t[idx]  # (K,): no copy of the whole tensor, whatever its strides
        t = t.reshape(-1).contiguous().cpu()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _show(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def _first_difference(saved: Any, current: Any, where: str) -> tuple[str, Any, Any] | None:
    """``(field, saved value, current value)`` of the first difference, depth first, or None."""
    if isinstance(current, Mapping) and isinstance(saved, Mapping):
        for key in [*current, *(k for k in saved if k not in current)]:
            field = f"{where}{key}" if not where else f"{where} {key}"
            if key not in saved:
                return field, "(not recorded)", current[key]
            if key not in current:
                return field, saved[key], "(not recorded)"
            diff = _first_difference(saved[key], current[key], field)
            if diff is not None:
                return diff
        return None
    seq = (list, tuple)
    if isinstance(current, seq) and isinstance(saved, seq) and any(isinstance(v, Mapping) for v in current):
        if len(saved) != len(current):
            return f"number of {where or 'entries'}", len(saved), len(current)
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            # members: "member 3 lr" reads better than "members 3 lr"
            diff = _first_difference(a, b, f"{where.removesuffix('s')} {i}".strip())
            if diff is not None:
                return diff
        return None
    if isinstance(current, seq) and isinstance(saved, seq):
        saved, current = list(saved), list(current)  # a tuple saved, a list now: the same values
    if type(saved) is not type(current) and not (_number(saved) and _number(current)):
        return where, saved, current
    return None if saved == current else (where, saved, current)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_record(saved: Any, current: Mapping[str, Any], path: str | os.PathLike[str] | None) -> None:
    """Raise unless a checkpoint's settings record equals this run's; the message names the first difference.

    Records are nested dicts/lists of plain values (numbers, strings, bools, None, lists); lists of
    dicts are compared entry by entry (``"member 3 lr"``). Numbers compare by value (``1 == 1.0``).

    Args:
        saved: the checkpoint's ``"spec"`` (None for a checkpoint from before records were kept).
        current: this run's record.
        path: the checkpoint file, for the message (None: "the state dict").

    Raises:
        ValueError: one line, e.g. ``checkpoint c.pt was made with member 3 lr=0.1; this run has
            lr=0.05 (use another --out, or delete the checkpoint to start afresh)``.

    Example:
        >>> check_record({"batch_size": 8}, {"batch_size": 8}, "c.pt")
        >>> check_record({"batch_size": 8}, {"batch_size": 4}, "c.pt")
        Traceback (most recent call last):
        ...
        ValueError: checkpoint c.pt was made with batch_size=8; this run has batch_size=4 (use another --out, or delete the checkpoint to start afresh)
    """  # noqa: E501
    name = "the state dict" if path is None else f"checkpoint {path}"
    if not isinstance(saved, Mapping):
        raise ValueError(
            f"{name} has no settings record (made by an older iwlab, which did not record what a checkpoint was "
            f"made from), so it cannot be checked against this run; {_HINT}"
        )
    diff = _first_difference(saved, current, "")
    if diff is None:
        return
    field, a, b = diff
    short = field.rsplit(" ", 1)[-1] if field.split(" ")[0] in ("member", "group") else field
    raise ValueError(f"{name} was made with {field}={_show(a)}; this run has {short}={_show(b)} ({_HINT})")
