"""Execute cells: register them in the store, run the unfinished ones (in-process, a process pool, Ray or
Slurm), record each outcome. Only this driver process writes to the store.

A task is ``(cell_id, config dict, params)``. ``params`` may carry ``_cell`` (the experiment's own cell
id, when ``cell_id`` has a sweep prefix) and ``_grid`` (the sweep point, added to every member's
labels when recorded).

Workers (pool processes, Ray tasks, Slurm tasks) run torch with one thread each (a Slurm task: one per
CPU it asked for) unless ``threads_per_worker`` says otherwise: multi-threaded processes oversubscribe
few cores (two-thread workers on 2 busy cores were measured 10-40x slower). The in-process path keeps
torch's default. With ``device="cuda"`` the pool gives its workers the visible GPUs in turn (each
worker's ``CUDA_VISIBLE_DEVICES`` names one GPU, set before torch initialises CUDA there), at most
``cells_per_gpu`` workers per GPU; by default one worker per GPU and cell slot (:func:`gpu_slots`).

Example::

    run_tasks(store, "synthetic", [("mlp", cfg_dict, {"model": "mlp"})], prov, run_dir, "cpu",
              "local", 1, None, progress=False)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from iwlab.config import config_from_dict
from iwlab.executors import SlurmOptions, run_ray, run_slurm
from iwlab.experiments import get_experiment
from iwlab.experiments.base import CellContext, CellResult
from iwlab.runner.placement import check_executor_options, gpu_slots, visible_gpus
from iwlab.runner.progress import EpochReporter, cells_bar, eta_text, follow_progress
from iwlab.store import Store, failure_reason

Task = tuple[str, dict, dict]


def run_cell_task(
    name: str,
    cfg_dict: dict,
    cell_id: str,
    params: dict,
    run_dir: str,
    device: str,
    progress: Any,
    threads: int | None,
) -> tuple[str, Any]:
    """Worker entry point: ``('ok', CellResult)`` or ``('failed', traceback text)``. Never raises (but Ctrl-C).

    ``progress`` is a bool (an epoch bar or none) or a queue from the driver, which then gets
    ``(cell, epoch, total)`` reports instead of a bar.
    """
    try:
        if threads:
            torch.set_num_threads(threads)
        exp = get_experiment(name)
        cfg = config_from_dict(exp.config, cfg_dict)
        if hasattr(progress, "put"):
            progress = EpochReporter(progress, cell_id)
        ctx = CellContext(run_dir=Path(run_dir), cell_id=cell_id, device=device, progress=progress)
        own = {k: v for k, v in params.items() if not k.startswith("_")}
        return "ok", exp.run_cell(cfg, params.get("_cell", cell_id), own, ctx)
    except KeyboardInterrupt:
        raise
    except Exception:
        return "failed", traceback.format_exc()


def grid_labels(member: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any]:
    """A sweep member's labels: its own, plus ``grid_point`` and the point's scalar values it lacks.

    A member's own label is what it was trained with and always wins: a grid over ``seed=0,10`` trains
    seeds 0, 1 and 10, 11 (``--seeds 2``), and ``lr=0.1`` with ``lr_scale=2`` trains at 0.2, so copying the
    grid value over the label would mislabel the member. ``grid_point`` (``"lr=0.1,seed=10"``) names the
    point; tuple values appear only there.

    Example:
        >>> grid_labels({"seed": 11, "lr": 0.2}, {"seed": 10, "lr_scale": 2.0})
        {'lr_scale': 2.0, 'seed': 11, 'lr': 0.2, 'grid_point': 'seed=10,lr_scale=2.0'}
    """
    extra = {k: v for k, v in grid.items() if k not in member and not isinstance(v, list | tuple | dict)}
    return {**extra, **member, "grid_point": ",".join(f"{k}={v}" for k, v in grid.items())}


def _record(store: Store, cell_id: str, status: str, payload: Any, grid: dict | None = None) -> None:
    """Write one cell's outcome: its members and metrics (status done or diverged), or its failure."""
    if status == "ok":
        res: CellResult = payload
        if grid:
            res.members = [grid_labels(m, grid) for m in res.members]
        div = [d for d in res.diverged if d >= 0]
        store.write_result(
            cell_id,
            res.members,
            res.rows,
            diverged=res.diverged,
            artifacts=res.artifacts,
            status="diverged" if div else "done",
            epoch=min(div) if div else None,
            error=f"{len(div)} member(s) diverged (NaN/inf)" if div else None,
        )
    else:
        store.set_status(cell_id, "failed", error=payload)
        print(f"iwlab: cell {cell_id} failed: {failure_reason(payload)}", file=sys.stderr)


def make_pool(n_workers: int, *, threads: int = 1, slots: Sequence[str] | None = None) -> ProcessPoolExecutor:
    """A spawn-context process pool whose workers use ``threads`` torch threads and, given ``slots``, one GPU each.

    Args:
        n_workers: worker processes.
        threads: ``torch.set_num_threads`` of every worker.
        slots: each worker's ``CUDA_VISIBLE_DEVICES`` (:func:`gpu_slots`), handed out in the order
            the workers start; None leaves the driver's.

    Raises:
        ValueError: ``slots`` does not have ``n_workers`` entries.

    Example::

        with make_pool(2, slots=["0", "1"]) as pool:
            pool.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result()  # "0" or "1"
    """
    ctx = mp.get_context("spawn")  # fork after torch initialised its thread pools is unsafe
    queue = None
    if slots is not None:
        if len(slots) != n_workers:
            raise ValueError(f"slots: need {n_workers} entries (one per worker), got {len(slots)}")
        queue = ctx.Queue()
        for slot in slots:
            queue.put(slot)
    return ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, threads))


def _init_worker(slots: Any, threads: int) -> None:
    # Workers leave Ctrl-C to the driver, which checkpoints nothing itself but owns the store.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if slots is not None:
        # CUDA reads CUDA_VISIBLE_DEVICES once, when torch first initialises it; importing iwlab never
        # does, so a spawned worker still can take its GPU here, before its first cell
        if torch.cuda.is_initialized():
            raise RuntimeError("CUDA was initialised in a pool worker before it got its GPU")
        os.environ["CUDA_VISIBLE_DEVICES"] = slots.get(timeout=60)
    torch.set_num_threads(threads)


def run_tasks(
    store: Store,
    name: str,
    tasks: list[Task],
    prov: dict,
    run_dir: Path,
    device: str,
    executor: str,
    workers: int | None,
    address: str | None,
    progress: bool,
    *,
    cells_per_gpu: int | None = None,
    threads_per_worker: int | None = None,
    slurm: SlurmOptions | None = None,
) -> None:
    """Register ``tasks`` and execute those not finished yet; prints how many a resumed run finds done.

    Args:
        store: the run's store; only this process writes to it.
        name: experiment name.
        tasks: every cell of the run, ``(cell_id, config dict, params)``.
        prov: provenance recorded with each cell.
        run_dir: the run directory.
        device: torch device of every cell.
        executor: ``"local"`` (in-process, or a process pool when more than one worker), ``"ray"`` or ``"slurm"``.
        workers: cells at once (None: 1 on CPU; with ``device="cuda"`` and the local executor, one per
            visible GPU times ``cells_per_gpu``).
        address: a Ray cluster's address (None: a local Ray).
        progress: progress bars on stderr.
        cells_per_gpu: cells sharing one GPU at a time (local pool and Ray).
        threads_per_worker: torch threads of each worker process or task (None: 1, on Slurm the task's
            ``cpus_per_task``; the in-process path keeps torch's default unless this is given).
        slurm: the Slurm tasks' resources (``executor="slurm"``; None: :class:`SlurmOptions` defaults).

    Raises:
        RunError: an unknown executor or options that cannot go together (:func:`check_executor_options`).
        ImportError: ``executor="ray"`` or ``"slurm"`` without ray or submitit installed.
        KeyboardInterrupt: after putting unfinished cells back to ``pending`` (they resume next time).
    """
    opts = {"cells_per_gpu": cells_per_gpu, "threads_per_worker": threads_per_worker}
    check_executor_options(executor, device, workers=workers, slurm=slurm, **opts)
    store.add_runs(name, [(cid, {"config": c, "cell": p}) for cid, c, p in tasks], provenance=prov)
    todo = [t for t in tasks if store.status(t[0]) not in ("done", "diverged")]
    already = len(tasks) - len(todo)
    if already:
        rest = f"running the other {len(todo)}" if todo else "nothing left to train, rewriting the report"
        print(f"iwlab: {already} of {len(tasks)} cells already done; {rest}", file=sys.stderr)
    if not todo:
        return
    threads = threads_per_worker or 1
    slots = None
    if executor == "local" and device == "cuda" and (workers is None or workers > 1):
        visible = visible_gpus()
        n_workers = min(workers or len(visible) * (cells_per_gpu or 1), len(todo))
        slots = gpu_slots(visible, n_workers, cells_per_gpu) if n_workers > 1 else None
    else:
        n_workers = min(workers or 1, len(todo))  # a process per cell at most
    bar = cells_bar(name, len(todo), progress)
    try:
        if executor == "ray":
            ray_kw = {"threads": threads, "cells_per_gpu": cells_per_gpu}
            run_ray(store, name, todo, run_dir, device, n_workers, address, bar, _record, run_cell_task, **ray_kw)
        elif executor == "slurm":
            resources = slurm if slurm is not None else SlurmOptions()
            threads = threads_per_worker or resources.cpus_per_task  # the CPUs Slurm gives each task
            run_slurm(store, name, todo, run_dir, device, bar, _record, run_cell_task, resources, threads=threads)
        elif n_workers <= 1:
            _run_in_process(store, name, todo, run_dir, device, progress, bar, threads_per_worker)
        else:
            _run_in_pool(store, name, todo, run_dir, device, progress, bar, n_workers, threads, slots)
    finally:
        bar.close()


def _run_in_process(
    store: Store, name: str, todo: list[Task], run_dir: Path, device: str, progress: bool, bar: Any, threads: int | None
) -> None:
    t0 = time.monotonic()
    for cid, cfg_dict, params in todo:
        store.set_status(cid, "running")
        try:
            status, payload = run_cell_task(name, cfg_dict, cid, params, str(run_dir), device, progress, threads)
        except KeyboardInterrupt:
            store.set_status(cid, "pending")  # resumes from its checkpoint on the next run
            raise
        _record(store, cid, status, payload, params.get("_grid"))
        bar.update()
        bar.set_postfix_str(eta_text(time.monotonic() - t0, bar.n, bar.total - bar.n))


def _run_in_pool(
    store: Store,
    name: str,
    todo: list[Task],
    run_dir: Path,
    device: str,
    progress: bool,
    bar: Any,
    n_workers: int,
    threads: int,
    slots: list[str] | None,
) -> None:
    pool = make_pool(n_workers, threads=threads, slots=slots)
    task_device = "cuda" if slots is not None else device  # each worker sees its one GPU as cuda:0
    pending = {}
    queue: Any = False
    follower = None
    frac: dict[str, float] = {}
    if progress:
        queue = mp.get_context("spawn").Manager().Queue()
        follower = threading.Thread(target=follow_progress, args=(queue, bar, frac), daemon=True)
        follower.start()
    try:
        grids = {cid: params.get("_grid") for cid, _, params in todo}
        for cid, cfg_dict, params in todo:
            store.set_status(cid, "running")
            fut = pool.submit(run_cell_task, name, cfg_dict, cid, params, str(run_dir), task_device, queue, threads)
            pending[fut] = cid
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cid = pending.pop(fut)
                try:
                    status, payload = fut.result()
                except Exception:  # a worker process died (e.g. out of memory)
                    status, payload = "failed", traceback.format_exc()
                _record(store, cid, status, payload, grids[cid])
                if queue:
                    queue.put((cid, 1, 1))
                else:
                    bar.update()
    except KeyboardInterrupt:
        # Finished cells are already committed; unfinished ones go back to pending and resume from
        # their last checkpoint on the next run.
        for cid in pending.values():
            store.set_status(cid, "pending")
        # shutdown() drops the pool's process table, so take it first
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        raise
    finally:
        if follower is not None:
            queue.put(None)
            follower.join(timeout=5)
    pool.shutdown()
