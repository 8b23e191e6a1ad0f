"""The run directory: where a run goes, whether it can be written (and whether it is on a network file
system, where results.db's SQLite WAL is unsafe across hosts), and whether it holds the same run.

A run directory holds ``config.json``, ``provenance.json``, ``results.db``, ``checkpoints/``,
``artifacts/``, ``figures/`` and ``report.md``/``report.html``.

Example:
    >>> default_out("synthetic", "quick").as_posix(), default_out("synthetic", "quick", sweep=True).as_posix()
    ('runs/synthetic-quick', 'runs/synthetic-quick-sweep')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch

from iwlab.experiments import canonical_name
from iwlab.store import Store

MIN_FREE_BYTES = 50 * 2**20
# File systems shared over a network: SQLite's locks and its WAL index (shared memory) are unreliable
# there across hosts (https://www.sqlite.org/wal.html, "WAL does not work over a network filesystem").
NETWORK_FS = frozenset(
    "nfs nfs4 cifs smb3 smbfs lustre gpfs beegfs ceph fuse.ceph-fuse 9p glusterfs fuse.glusterfs fuse.sshfs afs "
    "orangefs pvfs2 ocfs2 gfs2 wekafs fuse.s3fs fuse.gcsfuse".split()
)


class RunError(RuntimeError):
    """A run cannot start or continue (unwritable directory, full disk, config mismatch)."""


def check_device(device: str, *, need_cuda: bool = True) -> None:
    """Refuse a device torch does not know, or CUDA on a machine without it, before anything runs.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ...
        need_cuda: whether a ``cuda`` device must exist here (False when cells run on a Ray or Slurm
            cluster, which may have GPUs the driver lacks).

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


def _unescape_mount(field: str) -> str:
    r"""A /proc/mounts field with its octal escapes (``\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: str | Path, mounts_text: str | None = None) -> str | None:
    r"""The type of the file system ``path`` lies on: that of the longest mount point containing it.

    Args:
        path: a file or directory (resolved first: symbolic links followed, made absolute).
        mounts_text: the text of ``/proc/mounts`` (``device mountpoint fstype options 0 0`` per line);
            None reads the real one.

    Returns:
        The type as the kernel names it (``"ext4"``, ``"nfs4"``, ``"lustre"``, ...), or None when it is
        unknown (no ``/proc/mounts``, as on macOS, or no mount point matches).

    Source: proc(5), ``/proc/mounts``; a later mount on the same point hides an earlier one, so the last wins.

    Example:
        >>> mounts = "/dev/sda1 / ext4 rw 0 0\nserver:/home /home nfs4 rw 0 0\n"
        >>> filesystem_type("/home/me/runs/x", mounts), filesystem_type("/tmp/x", mounts)
        ('nfs4', 'ext4')
    """
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = Path(os.path.realpath(path))
    best, best_len = None, -1
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(_unescape_mount(fields[1]))
        n = len(point.parts)
        if n >= best_len and (target == point or point in target.parents):
            best, best_len = fields[2], n
    return best


def network_fs_warning(out: Path, fs_type: str | None = None) -> str | None:
    """The warning line for a run directory on a network file system (:data:`NETWORK_FS`), else None.

    Args:
        out: the run directory.
        fs_type: its file system type (None: :func:`filesystem_type` finds it).

    Example:
        >>> network_fs_warning(Path("runs/x"), "ext4") is None, network_fs_warning(Path("runs/x"), "nfs4")[:33]
        (True, 'iwlab: warning: run directory run')
    """
    fs_type = filesystem_type(out) if fs_type is None else fs_type
    if fs_type not in NETWORK_FS and not (fs_type or "").startswith("nfs"):
        return None
    return (
        f"iwlab: warning: run directory {out} is on a network file system ({fs_type}); SQLite's WAL in "
        "results.db is unsafe across hosts: open it from one host at a time (iwlab's driver is its only writer)"
    )


def preflight(out: Path) -> None:
    """Fail before training if ``out`` cannot be written or its disk is nearly full.

    Warns (one line on stderr, :func:`network_fs_warning`) when ``out`` is on a network file system.

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
    warning = network_fs_warning(out)
    if warning:
        print(warning, file=sys.stderr)


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
