"""Executors beyond the built-in local process pool: cells of a run or sweep as Ray tasks.

``iwlab sweep ... --executor ray [--address ADDR] [--workers N]`` calls :func:`run_ray`. Each cell
runs as one Ray task with ``num_cpus=1``; the driver submits every unfinished cell at once, records
results in ``results.db`` as they complete (the driver alone writes to the store) and updates the
progress bar. Without ``--address`` a private local Ray instance with ``--workers`` CPUs is started
and shut down at the end; with one (``auto``, ``HOST:6379`` or ``ray://HOST:10001``) the cells go to
that cluster, which is left running.

On a cluster the run directory must lie on a file system that every node mounts at the same path
(NFS, Lustre, a shared home): workers write their checkpoints and artifacts there directly, and a
resumed sweep finds them there, whichever node picks up a cell. ``iwlab`` must also be importable on
every node (install it in the cluster's image, or pass a Ray ``runtime_env``). The directory is
passed to the workers as an absolute path, so a relative ``--out`` resolves on the driver.

With ``--device cuda`` each task asks Ray for ``1 / --workers`` of a GPU, so that many cells share
one GPU at a time.

Ctrl-C cancels the outstanding tasks and puts their cells back to ``pending``; finished cells stay
recorded, and rerunning the same command resumes the others from their last checkpoints.

Example (a shell command)::

    iwlab sweep synthetic --grid lr_scale=1,2 --executor ray --workers 8 --out runs/sw
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RAY_MISSING = "the Ray executor needs ray: pip install 'iwlab[ray]'"

Task = tuple[str, dict, dict]
Recorder = Callable[..., None]


def _import_ray() -> Any:
    try:
        import ray  # optional dependency (the `ray` extra): imported only when the Ray executor is asked for
    except ImportError as e:
        raise ImportError(RAY_MISSING) from e
    return ray


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
    task_fn: Callable[..., tuple[str, Any]],
) -> None:
    """Run the cells ``todo`` (``(cell_id, config dict, params)``) as Ray tasks and record them.

    Args:
        store: the run's :class:`~iwlab.store.Store`; only this (driver) process writes to it.
        name: experiment name, passed on to ``task_fn``.
        todo: the unfinished cells.
        run_dir: the run directory; on a cluster it must be on a file system shared by all nodes.
        device: ``"cpu"`` or ``"cuda"`` for every cell (``"cuda"``: each task asks Ray for
            ``1 / n_workers`` GPU).
        n_workers: CPUs of the local Ray instance started when ``address`` is None.
        address: a Ray cluster to connect to, or None to start a local one.
        bar: a progress bar (``update()`` is called once per finished cell).
        record: ``record(store, cell_id, status, payload, grid)`` writes one outcome to the store.
        task_fn: ``task_fn(name, cfg_dict, cell_id, params, run_dir, device, progress, threads)``
            returning ``("ok", CellResult)`` or ``("failed", traceback)``; it never raises.

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
        opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 2}
        task_device = device
        if device.startswith("cuda"):
            # Ray hides GPUs from tasks that do not ask for one; n_workers tasks share each GPU,
            # and a task sees its GPU as cuda:0
            opts["num_gpus"] = 1.0 / max(1, n_workers)
            task_device = "cuda"
        remote = ray.remote(**opts)(task_fn)
        grids = {cid: params.get("_grid") for cid, _, params in todo}
        for cid in unfinished:
            store.set_status(cid, "running")
        for cid, cfg_dict, params in todo:
            ref = remote.remote(name, cfg_dict, cid, params, run_dir_str, task_device, False, 1)
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
