"""The run directory: where a run goes, whether it can be written, and whether it holds the same run.

A run directory holds ``config.json``, ``provenance.json``, ``results.db``, ``checkpoints/``,
``artifacts/``, ``figures/`` and ``report.md``/``report.html``.

Example:
    >>> default_out("synthetic", "quick").as_posix(), default_out("synthetic", "quick", sweep=True).as_posix()
    ('runs/synthetic-quick', 'runs/synthetic-quick-sweep')
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from iwlab.experiments import canonical_name
from iwlab.store import Store

MIN_FREE_BYTES = 50 * 2**20


class RunError(RuntimeError):
    """A run cannot start or continue (unwritable directory, full disk, config mismatch)."""


def check_device(device: str, *, need_cuda: bool = True) -> None:
    """Refuse a device torch does not know, or CUDA on a machine without it, before anything runs.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ...
        need_cuda: whether a ``cuda`` device must exist here (False when cells run on a Ray cluster,
            which may have GPUs the driver lacks).

    Raises:
        RunError: e.g. ``--device foo`` (the message lists the usual choices), or ``cuda`` without CUDA.

    Example:
        >>> check_device("cpu")
    """
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise RunError(f"--device {device!r} is not a device torch knows ({e}); use cpu, cuda or cuda:N") from None
    if need_cuda and device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for, but torch sees no CUDA device")


def default_out(name: str, profile: str, *, sweep: bool = False) -> Path:
    """``runs/NAME-PROFILE`` (``-sweep`` appended for a sweep): deterministic, so rerunning a command resumes it.

    ``name`` is the name as given (an alias keeps the folder it had before the rename).
    """
    return Path("runs") / f"{name}-{profile}{'-sweep' if sweep else ''}"


def preflight(out: Path) -> None:
    """Fail before training if ``out`` cannot be written or its disk is nearly full.

    Raises:
        RunError: the directory cannot be created or written, or has under :data:`MIN_FREE_BYTES` free.

    Example:
        >>> import tempfile; preflight(Path(tempfile.mkdtemp()))
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunError(f"output directory {out} is not writable: {e.strerror or e}") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise RunError(
            f"only {free / 2**20:.0f} MiB free on the disk of {out}; need at least {MIN_FREE_BYTES // 2**20} MiB"
        )


def _config_diff(old: dict, new: dict) -> str:
    """What differs between two run records, in words (the config keys, else the experiment/profile/sweep)."""
    oc, nc = old.get("config") or {}, new.get("config") or {}
    keys = sorted(k for k in set(oc) | set(nc) if oc.get(k) != nc.get(k))
    if keys:
        return "keys differ: " + ", ".join(f"{k} ({oc.get(k)!r} there, {nc.get(k)!r} here)" for k in keys[:5])
    return (
        f"experiment, profile or sweep differ: {old.get('experiment')}/{old.get('profile')} there, "
        f"{new.get('experiment')}/{new.get('profile')} here"
    )


def _canonical(record: dict) -> dict:
    """The record with its experiment's current name: a run made under an old name (an alias) still matches."""
    try:
        return {**record, "experiment": canonical_name(record.get("experiment") or "")}
    except ValueError:  # not a registered name: compared as it is
        return record


def check_same_config(
    run_dir: Path, store: Store, name: str, profile: str, cfg_dict: dict, extra: dict | None = None
) -> None:
    """Refuse to mix runs: ``config.json`` and the store's own record must both match this run's config.

    The store's copy is checked too, so a results.db copied into a fresh directory (or a run
    directory whose config.json was deleted) cannot take a new config while keeping the old metrics.
    A missing config.json is rewritten from the run's record.

    Raises:
        RunError: either record differs (the message names the differing keys and both values).

    Example::

        check_same_config(Path("runs/x"), Store("runs/x/results.db"), "synthetic", "quick", cfg_dict)
    """
    path = run_dir / "config.json"
    record = {"experiment": name, "profile": profile, "config": cfg_dict, **(extra or {})}
    meta = store.meta()
    if "config" in meta or "experiment" in meta:
        stored = {k: meta.get(k) for k in ("experiment", "profile", "config")}
        if "sweep" in meta or "sweep" in record:
            stored["sweep"] = meta.get("sweep")
        if _canonical(stored) != _canonical({k: record.get(k) for k in stored}):
            raise RunError(
                f"{store.path} holds results of a different config ({_config_diff(stored, record)}); "
                "use another --out to start afresh"
            )
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{path} is not valid JSON ({e}); move it aside or use another --out") from None
        if _canonical(old) != _canonical(record):
            raise RunError(
                f"{run_dir} holds a run with a different config ({_config_diff(old, record)}); "
                "use another --out to start afresh"
            )
        return
    path.write_text(json.dumps(record, indent=2))
