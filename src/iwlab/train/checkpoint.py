"""Atomic checkpoint writes, shared by every trainer and experiment.

Example:
    >>> # atomic_save({"model": model.state_dict()}, run_dir / "checkpoints" / "cell.pt")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


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
