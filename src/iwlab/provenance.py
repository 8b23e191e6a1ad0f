"""Provenance: what produced a result (git commit, versions, machine, command)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Library versions, git commit, host and command line, for every result.

    Example:
        >>> "torch" in provenance()["versions"]
        True
    """
    import numpy
    import torch

    import iwlab

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
        "command": " ".join(sys.argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["host"]["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
