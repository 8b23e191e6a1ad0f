"""Executors beyond the built-in local process pool: cells of a run or sweep as Ray tasks or Slurm jobs.

Both keep the rule of the local pool: the driver (the process that runs ``iwlab``) is the only one
that opens ``results.db``; workers return each cell's result and the driver records it, updates the
progress bar and, on Ctrl-C, cancels what is outstanding and puts those cells back to ``pending``
(finished cells stay recorded; rerunning the same command resumes the others from their checkpoints).

Ray (``--executor ray [--address ADDR]``, :func:`run_ray`): each cell is one Ray task asking for
``--threads-per-worker`` CPUs (default 1). Without ``--address`` a private local Ray instance with
``--workers`` CPUs is started and shut down at the end; with one (``auto``, ``HOST:6379`` or
``ray://HOST:10001``) the cells go to that cluster, which is left running. With ``--device cuda`` each
task asks for ``1 / --cells-per-gpu`` of a GPU (default ``1 / --workers``).

Slurm (``--executor slurm``, :func:`run_slurm`, through submitit: ``pip install 'iwlab[slurm]'``): one
array job with one task per cell, its resources from :class:`SlurmOptions` (the ``--slurm-*`` options),
its logs under ``RUN_DIR/slurm/``. A preempted or timed-out task is requeued (at most
:data:`MAX_REQUEUES` times) and its cell resumes from its last checkpoint.

On a cluster the run directory must lie on a file system that every node mounts at the same path
(NFS, Lustre, a shared home): workers write their checkpoints and artifacts there directly, and a
resumed sweep finds them there, whichever node picks up a cell. ``iwlab`` must also be importable on
every node (install it in the cluster's image or environment). The directory is passed to the
workers as an absolute path, so a relative ``--out`` resolves on the driver.

Example (shell commands)::

    iwlab sweep synthetic --grid lr_scale=1,2 --executor ray --workers 8 --out runs/sw
    iwlab sweep synthetic --grid lr_scale=1,2 --executor slurm --slurm-partition gpu --device cuda --out runs/sw
"""

from __future__ import annotations

import math
import numbers
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAY_MISSING = "the Ray executor needs ray: pip install 'iwlab[ray]'"
SUBMITIT_MISSING = "the Slurm executor needs submitit: pip install 'iwlab[slurm]'"
# A cell is requeued after a preemption or a timeout at most this often (submitit's own default for
# timeouts is 3); each requeue resumes from the cell's checkpoint, so a few cover a busy cluster, and a
# cell that never fits its --slurm-time ends as failed instead of cycling forever.
MAX_REQUEUES = 5

Task = tuple[str, dict, dict]
Recorder = Callable[..., None]
TaskFn = Callable[..., tuple[str, Any]]


def _import_ray() -> Any:
    try:
        import ray  # optional dependency (the `ray` extra): imported only when the Ray executor is asked for
    except ImportError as e:
        raise ImportError(RAY_MISSING) from e
    return ray


def import_submitit() -> Any:
    try:
        import submitit  # optional dependency (the `slurm` extra): imported only when Slurm is asked for
    except ImportError as e:
        raise ImportError(SUBMITIT_MISSING) from e
    return submitit


def run_ray(
    store: Any,
    name: str,
    todo: Sequence[Task],
    run_dir: str | Path,
    device: str,
    n_workers: int,
    address: str | None,
    bar: Any,
    record: Recorder,
    task_fn: TaskFn,
    *,
    threads: int = 1,
    cells_per_gpu: int | None = None,
) -> None:
    """Run the cells ``todo`` (``(cell_id, config dict, params)``) as Ray tasks and record them.

    Args:
        store: the run's :class:`~iwlab.store.Store`; only this (driver) process writes to it.
        name: experiment name, passed on to ``task_fn``.
        todo: the unfinished cells.
        run_dir: the run directory; on a cluster it must be on a file system shared by all nodes.
        device: ``"cpu"`` or ``"cuda"`` for every cell (``"cuda"``: each task asks Ray for
            ``1 / cells_per_gpu`` GPU, or ``1 / n_workers`` when that is None).
        n_workers: CPUs of the local Ray instance started when ``address`` is None.
        address: a Ray cluster to connect to, or None to start a local one.
        bar: a progress bar (``update()`` is called once per finished cell).
        record: ``record(store, cell_id, status, payload, grid)`` writes one outcome to the store.
        task_fn: ``task_fn(name, cfg_dict, cell_id, params, run_dir, device, progress, threads)``
            returning ``("ok", CellResult)`` or ``("failed", traceback)``; it never raises.
        threads: torch threads of each task, and the CPUs it asks Ray for.
        cells_per_gpu: with ``device="cuda"``, how many tasks share one GPU.

    Raises:
        ImportError: ray is not installed (the message says how to install it).
        KeyboardInterrupt: re-raised after cancelling outstanding tasks (their cells go back to
            ``pending``).

    Example (as :func:`iwlab.runner.execute.run_tasks` calls it)::

        run_ray(store, "synthetic", todo, run_dir, "cpu", 4, None, bar, record, run_cell_task)
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, n_workers), include_dashboard=False, log_to_driver=False)
        started = True
    run_dir_str = str(Path(run_dir).resolve())
    pending: dict[Any, str] = {}
    unfinished = [cid for cid, _, _ in todo]
    try:
        # retries cover lost workers/nodes; the cell restarts from its last checkpoint
        opts: dict[str, Any] = {"num_cpus": threads, "max_retries": 2}
        task_device = device
        if device.startswith("cuda"):
            # Ray hides GPUs from tasks that do not ask for one; a task sees its GPU as cuda:0
            opts["num_gpus"] = 1.0 / max(1, cells_per_gpu or n_workers)
            task_device = "cuda"
        remote = ray.remote(**opts)(task_fn)
        grids = {cid: params.get("_grid") for cid, _, params in todo}
        for cid in unfinished:
            store.set_status(cid, "running")
        for cid, cfg_dict, params in todo:
            ref = remote.remote(name, cfg_dict, cid, params, run_dir_str, task_device, False, threads)
            pending[ref] = cid
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cid = pending.pop(ref)
                try:
                    status, payload = ray.get(ref)
                except KeyboardInterrupt:
                    pending[ref] = cid
                    raise
                except Exception:  # the worker died (out of memory, node lost, ...)
                    status, payload = "failed", traceback.format_exc()
                record(store, cid, status, payload, grids[cid])
                unfinished.remove(cid)
                bar.update()
    except KeyboardInterrupt:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # best effort: the task may have just finished
                pass
        for cid in unfinished:
            store.set_status(cid, "pending")
        raise
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class SlurmOptions:
    """The resources of each cell's Slurm task (the ``--slurm-*`` options).

    Args:
        partition: ``--slurm-partition`` (None: the cluster's default partition).
        time_min: ``--slurm-time``, minutes per task; a cell that needs longer is requeued and resumes.
        gpus_per_task: ``--slurm-gpus-per-task`` (None: 1 with ``--device cuda``, else 0).
        cpus_per_task: ``--slurm-cpus-per-task``.
        mem_gb: ``--slurm-mem-gb`` (None: the partition's default).
        array_parallelism: ``--slurm-array-parallelism``, cells running at once.
        additional: ``--slurm-additional KEY=VALUE``: any other sbatch option (``{"account": "abc"}``).
        cluster: submitit's cluster: ``"slurm"``; ``"local"`` runs each task as a local process (tests).
        poll_s: seconds between two polls of the jobs by the driver.

    Raises:
        ValueError: a count or time below its minimum (the message names the option).

    Example:
        >>> SlurmOptions(partition="gpu", additional={"account": "abc"}).parameters("cuda")["slurm_gpus_per_task"]
        1
    """

    partition: str | None = None
    time_min: int = 60
    gpus_per_task: int | None = None
    cpus_per_task: int = 1
    mem_gb: float | None = None
    array_parallelism: int = 256
    additional: Mapping[str, Any] = field(default_factory=dict)
    cluster: str = "slurm"
    poll_s: float = 5.0

    def __post_init__(self) -> None:
        for opt, value, low in (
            ("--slurm-time", self.time_min, 1),
            ("--slurm-gpus-per-task", self.gpus_per_task, 0),
            ("--slurm-cpus-per-task", self.cpus_per_task, 1),
            ("--slurm-array-parallelism", self.array_parallelism, 1),
        ):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ValueError(f"{opt} must be an integer >= {low}, got {value!r}")
        for opt, num, low in (("--slurm-mem-gb", self.mem_gb, 1 / 1024), ("poll_s", self.poll_s, 0.0)):
            if num is None and opt == "--slurm-mem-gb":  # None: the partition's default memory
                continue
            try:  # numbers.Real (numpy scalars too), not bool; 10**400 overflows float: refused, not raised
                ok = isinstance(num, numbers.Real) and not isinstance(num, bool) and math.isfinite(num) and num > low
            except OverflowError:
                ok = False
            if not ok:
                # below 1 MB submitit would ask Slurm for --mem=0, which Slurm reads as all of the node's memory
                floor = "at least 1/1024 (1 MB)" if low else "> 0"
                raise ValueError(f"{opt} must be a finite number {floor}, got {num!r}")
        if self.cluster not in ("slurm", "local"):
            raise ValueError(f"cluster must be 'slurm' or 'local', got {self.cluster!r}")

    def parameters(self, device: str) -> dict[str, Any]:
        """submitit ``AutoExecutor.update_parameters`` keywords for cells on ``device``."""
        gpus = self.gpus_per_task if self.gpus_per_task is not None else int(device.startswith("cuda"))
        params: dict[str, Any] = {
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if gpus:
            params["slurm_gpus_per_task"] = gpus
            if self.cluster == "local":  # the local cluster knows only the generic name
                params["gpus_per_node"] = gpus
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.additional:
            params["slurm_additional_parameters"] = dict(self.additional)
        return params


class CellJob:
    """One cell as a submitit job: calling it runs ``task_fn(*args)``; a preemption requeues it.

    It follows submitit's ``Checkpointable`` protocol (submitit requeues any job whose callable has a
    ``checkpoint`` method) without subclassing ``submitit.helpers.Checkpointable``, so that importing
    :mod:`iwlab.executors` does not import submitit. The state to resume lives in the cell's own
    checkpoints under the run directory, so the resubmission is the same cell with its requeue count
    raised; past :data:`MAX_REQUEUES` it is not requeued and the driver records the cell as failed.

    Args:
        task_fn: the worker function (:func:`iwlab.runner.execute.run_cell_task`); it never raises.
        args: its positional arguments (``name, cfg_dict, cell_id, params, run_dir, device, progress, threads``).
        requeues: how often this cell was requeued already.

    Example:
        >>> job = CellJob(max, (1, 3))
        >>> job(), job.requeues
        (3, 0)
    """

    def __init__(self, task_fn: TaskFn, args: tuple, requeues: int = 0) -> None:
        self.task_fn, self.args, self.requeues = task_fn, tuple(args), requeues

    def __call__(self) -> tuple[str, Any]:
        return self.task_fn(*self.args)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on preemption or timeout: the same cell to resubmit, or None past the limit."""
        if self.requeues >= MAX_REQUEUES:
            return None
        submitit = import_submitit()  # only ever called inside a submitit job
        return submitit.helpers.DelayedSubmission(CellJob(self.task_fn, self.args, self.requeues + 1))


def run_slurm(
    store: Any,
    name: str,
    todo: Sequence[Task],
    run_dir: str | Path,
    device: str,
    bar: Any,
    record: Recorder,
    task_fn: TaskFn,
    options: SlurmOptions,
    *,
    threads: int = 1,
) -> None:
    """Run the cells ``todo`` as one Slurm array job through submitit, polling and recording them.

    Args:
        store: the run's :class:`~iwlab.store.Store`; only this (driver) process writes to it.
        name: experiment name, passed on to ``task_fn``.
        todo: the unfinished cells, ``(cell_id, config dict, params)``.
        run_dir: the run directory, on a file system every node mounts at the same path; submitit's
            files and the tasks' logs go to ``run_dir/slurm``.
        device: ``"cpu"`` or ``"cuda"`` (``cuda:N`` too: Slurm shows each task its GPUs from 0).
        bar: a progress bar (``update()`` once per finished cell).
        record: ``record(store, cell_id, status, payload, grid)`` writes one outcome to the store.
        task_fn: as in :func:`run_ray`; it runs on the compute node.
        options: the tasks' resources.
        threads: torch threads of each task.

    Raises:
        ImportError: submitit is not installed (the message says how to install it).
        RuntimeError: ``sbatch`` is not on PATH (``cluster="slurm"`` off a Slurm login node).
        KeyboardInterrupt: re-raised after cancelling the outstanding jobs (their cells go back to
            ``pending``).

    Example (as :func:`iwlab.runner.execute.run_tasks` calls it)::

        run_slurm(store, "synthetic", todo, run_dir, "cuda", bar, record, run_cell_task, SlurmOptions(partition="gpu"))
    """
    submitit = import_submitit()
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise RuntimeError("--executor slurm needs Slurm's sbatch on PATH: run iwlab on the cluster's login node")
    run_dir = Path(run_dir).resolve()
    kw = {f"{options.cluster}_max_num_timeout": MAX_REQUEUES}  # timeouts; CellJob.checkpoint caps preemptions too
    executor = submitit.AutoExecutor(folder=run_dir / "slurm", cluster=options.cluster, **kw)
    executor.update_parameters(name=f"iwlab-{name}", **options.parameters(device))
    task_device = "cuda" if device.startswith("cuda") else device
    grids = {cid: params.get("_grid") for cid, _, params in todo}
    with executor.batch():  # one array job, one task per cell
        jobs = [
            executor.submit(CellJob(task_fn, (name, cfg, cid, params, str(run_dir), task_device, False, threads)))
            for cid, cfg, params in todo
        ]
    pending: dict[Any, str] = {job: cid for job, (cid, _, _) in zip(jobs, todo, strict=True)}
    for cid in pending.values():
        store.set_status(cid, "running")
    try:
        while pending:
            finished = [job for job in pending if job.done()]
            if not finished:
                time.sleep(options.poll_s)
            for job in finished:
                try:
                    status, payload = job.result()
                except Exception:  # the task died: node lost, out of memory, requeued too often, ...
                    status, payload = "failed", traceback.format_exc()
                cid = pending.pop(job)
                record(store, cid, status, payload, grids[cid])
                bar.update()
    except KeyboardInterrupt:
        for job in pending:
            try:
                job.cancel(check=False)
            except Exception:  # best effort: the job may have just finished
                pass
        for cid in pending.values():
            store.set_status(cid, "pending")
        raise
