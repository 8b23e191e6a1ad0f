"""Provenance: what produced a result (git commit, versions, machine, command)."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy
import torch

import iwlab


def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """Commit hash of the iwlab source tree and whether it had uncommitted changes.

    Example:
        >>> sorted(git_commit())
        ['commit', 'dirty']
    """
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(device: str = "cpu", run_dir: str | Path | None = None) -> dict[str, Any]:
    """Library versions, git commit, host and command line, for every result.

    ``command`` is the command line with the program reduced to ``iwlab`` and, when ``run_dir`` is
    given, every argument that names a path written relative to the run directory (``--out`` becomes
    ``.``), so a published report reads the same on every machine. ``IWLAB_DATA`` is that variable relative
    to the run directory (``None`` when unset; a run on generated fixture data does not read it).

    Example:
        >>> "torch" in provenance()["versions"]
        True
    """
    data = os.environ.get("IWLAB_DATA")
    info = {
        "iwlab": iwlab.__version__,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
        "git": git_commit(),
        "host": {"platform": platform.platform(), "machine": platform.machine(), "cpus": _cpus()},
        "device": device,
        "command": portable_command(sys.argv, run_dir),
        "IWLAB_DATA": None if data is None else _relative(data, run_dir),
        # a published report reads the same on every machine; "." in the command is the run directory
        "paths": "relative to the run directory" if run_dir is not None else "as given",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["host"]["gpu"] = torch.cuda.get_device_name(0)
    return info


def _relative(path: str, run_dir: str | Path | None) -> str:
    """``path`` relative to ``run_dir`` (POSIX separators), or unchanged without a run directory."""
    if run_dir is None:
        return path
    return Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix()


def portable_command(argv: Sequence[str], run_dir: str | Path | None = None) -> str:
    """The command line as a user would type it, with paths relative to ``run_dir``.

    The program (an absolute console-script path, or ``.../iwlab/cli/__main__.py`` under
    ``python -m``) becomes ``iwlab``; an argument that exists as a file or folder is rewritten
    relative to the run directory.

    Example:
        >>> portable_command(["/opt/py/bin/iwlab", "run", "synthetic", "--out", "/tmp/r"], "/tmp/r")
        'iwlab run synthetic --out .'
    """
    if not argv:
        return ""
    words = ["iwlab"] if _is_iwlab(argv[0]) else [Path(argv[0]).name]
    for i, a in enumerate(argv[1:], start=1):
        after_out = i > 1 and argv[i - 1] == "--out"
        if run_dir is not None and (after_out or (("/" in a or a.startswith(".")) and Path(a).exists())):
            words.append(_relative(a, run_dir))
        else:
            words.append(a)
    return " ".join(shlex.quote(w) for w in words)


def _is_iwlab(program: str) -> bool:
    p = Path(program)
    return p.name == "iwlab" or (p.name == "__main__.py" and p.parent.name == "cli")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
