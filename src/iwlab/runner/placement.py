"""Where cells run: the executor options checked together (before anything is written), and the GPUs the local
executor's workers get in turn.

Example:
    >>> gpu_slots(["0", "1"], 4)
    ['0', '1', '0', '1']
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence

import torch

from iwlab.executors import RAY_MISSING, SlurmOptions, import_submitit
from iwlab.runner.rundir import RunError

EXECUTORS = ("local", "ray", "slurm")


def check_executor_options(
    executor: str,
    device: str,
    *,
    workers: int | None = None,
    cells_per_gpu: int | None = None,
    threads_per_worker: int | None = None,
    slurm: SlurmOptions | None = None,
    address: str | None = None,
) -> None:
    """Refuse options that cannot go together, before anything is written or trained.

    Args:
        executor: ``"local"``, ``"ray"`` or ``"slurm"``.
        device: the cells' device (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
        workers: ``--workers`` (None: the default).
        cells_per_gpu: ``--cells-per-gpu`` (None: not given).
        threads_per_worker: ``--threads-per-worker`` (None: not given).
        slurm: the ``--slurm-*`` options (None: none given).
        address: ``--address`` of a Ray cluster (None: not given).

    Raises:
        RunError: an unknown executor, ``--cells-per-gpu`` without CUDA or with Slurm, Slurm options
            without ``--executor slurm``, a count below 1 (each message names the option).

    Example:
        >>> check_executor_options("local", "cpu", cells_per_gpu=2)
        Traceback (most recent call last):
        ...
        iwlab.runner.rundir.RunError: --cells-per-gpu needs --device cuda (got --device cpu)
    """
    if executor not in EXECUTORS:
        raise RunError(f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    for opt, value in (
        ("--workers", workers),
        ("--cells-per-gpu", cells_per_gpu),
        ("--threads-per-worker", threads_per_worker),
    ):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RunError(f"{opt} must be an integer >= 1, got {value!r}")
    if cells_per_gpu is not None:
        if not device.startswith("cuda"):
            raise RunError(f"--cells-per-gpu needs --device cuda (got --device {device})")
        if device != "cuda":  # cuda:N pins every cell to one GPU; spreading them is --device cuda's job
            raise RunError(
                f"--cells-per-gpu spreads cells over the visible GPUs, but --device {device} pins them to one: use "
                "--device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)"
            )
        if executor == "slurm":
            raise RunError(
                "--cells-per-gpu applies to --executor local and ray; a Slurm task gets --slurm-gpus-per-task"
            )
    if slurm is not None and executor != "slurm":
        raise RunError(f"--slurm-* options need --executor slurm (got --executor {executor})")
    if address is not None and executor != "ray":
        raise RunError(f"--address names a Ray cluster; it needs --executor ray (got --executor {executor})")
    if executor == "ray":
        try:  # before the run directory is made (importing ray itself takes seconds; its spec is enough)
            missing = importlib.util.find_spec("ray") is None
        except ValueError:  # a module in sys.modules without a spec (a test's stand-in): importable
            missing = False
        if missing:
            raise RunError(RAY_MISSING)
    if executor == "slurm":
        opts = slurm or SlurmOptions()
        _check_slurm(device, opts)
        if threads_per_worker is not None and threads_per_worker > opts.cpus_per_task:
            raise RunError(
                f"--threads-per-worker {threads_per_worker} exceeds the {opts.cpus_per_task} CPU(s) each Slurm task "
                "asks for: raise --slurm-cpus-per-task"
            )
    if executor == "local" and device == "cuda" and cells_per_gpu is not None and workers is not None:
        gpu_slots(visible_gpus(), workers, cells_per_gpu)  # raises when workers exceed the GPU slots


def _check_slurm(device: str, opts: SlurmOptions) -> None:
    """What ``--executor slurm`` needs before the run directory is made: submitit, sbatch, GPUs that match."""
    try:
        import_submitit()
    except ImportError as e:
        raise RunError(str(e)) from None
    if opts.cluster == "slurm" and shutil.which("sbatch") is None:
        raise RunError("--executor slurm needs Slurm's sbatch on PATH: run iwlab on the cluster's login node")
    cuda, gpus = device.startswith("cuda"), opts.gpus_per_task
    if cuda and gpus == 0:
        raise RunError(f"--slurm-gpus-per-task 0 with --device {device}: the tasks would have no GPU")
    if not cuda and gpus:
        raise RunError(f"--slurm-gpus-per-task {gpus} with --device {device}: the cells would not use them")


def visible_gpus() -> list[str]:
    """The GPUs the driver may use: its ``CUDA_VISIBLE_DEVICES`` entries if set, else ``0 .. device_count - 1``.

    Entries are passed on as they are (indices or ``GPU-<uuid>``), so a worker's ``CUDA_VISIBLE_DEVICES``
    names the same physical GPU as the driver's.

    Example:
        >>> all(isinstance(g, str) for g in visible_gpus())
        True
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(visible: Sequence[str], n_workers: int, cells_per_gpu: int | None = None) -> list[str]:
    """Each pool worker's ``CUDA_VISIBLE_DEVICES``: the visible GPUs in turn, at most ``cells_per_gpu`` per GPU.

    Args:
        visible: the GPUs to share (:func:`visible_gpus`), e.g. ``["0", "1"]``.
        n_workers: worker processes.
        cells_per_gpu: most workers on one GPU (None: no limit, ``--workers`` alone decides).

    Returns:
        ``n_workers`` entries of ``visible``, worker ``i`` on ``visible[i % len(visible)]``, so the
        GPUs' loads differ by at most one worker.

    Raises:
        ValueError: no GPU visible, ``n_workers < 1``, or more workers than ``len(visible) * cells_per_gpu``.

    Example:
        >>> gpu_slots(["0", "1"], 4, cells_per_gpu=2)
        ['0', '1', '0', '1']
    """
    if not visible:
        raise ValueError("visible: no GPU to share (CUDA_VISIBLE_DEVICES is empty or torch sees no CUDA device)")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if cells_per_gpu is not None and n_workers > len(visible) * cells_per_gpu:
        raise ValueError(
            f"--workers {n_workers} with --cells-per-gpu {cells_per_gpu} needs {-(-n_workers // cells_per_gpu)} GPUs; "
            f"{len(visible)} visible ({','.join(visible)})"
        )
    return [visible[i % len(visible)] for i in range(n_workers)]
