"""Execute cells: register them in the store, run the unfinished ones (in-process, a process pool or Ray),
record each outcome. Only this driver process writes to the store.

A task is ``(cell_id, config dict, params)``. ``params`` may carry ``_cell`` (the experiment's own cell
id, when ``cell_id`` has a sweep prefix) and ``_grid`` (the sweep point, added to every member's
labels when recorded).

Example::

    run_tasks(store, "synthetic", [("mlp", cfg_dict, {"model": "mlp"})], prov, run_dir, "cpu",
              "local", 1, None, progress=False)
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from iwlab.config import config_from_dict
from iwlab.executors import run_ray
from iwlab.experiments import get_experiment
from iwlab.experiments.base import CellContext, CellResult
from iwlab.runner.progress import EpochReporter, cells_bar, eta_text, follow_progress
from iwlab.runner.rundir import RunError
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
) -> None:
    """Register ``tasks`` and execute those not finished yet; prints how many a resumed run finds done.

    Raises:
        RunError: an unknown executor.
        ImportError: ``executor="ray"`` without ray installed.
        KeyboardInterrupt: after putting unfinished cells back to ``pending`` (they resume next time).
    """
    if executor not in ("local", "ray"):
        raise RunError(f"unknown executor '{executor}'; valid: local, ray")
    store.add_runs(name, [(cid, {"config": c, "cell": p}) for cid, c, p in tasks], provenance=prov)
    todo = [t for t in tasks if store.status(t[0]) not in ("done", "diverged")]
    already = len(tasks) - len(todo)
    if already:
        rest = f"running the other {len(todo)}" if todo else "nothing left to train, rewriting the report"
        print(f"iwlab: {already} of {len(tasks)} cells already done; {rest}", file=sys.stderr)
    if not todo:
        return
    n_workers = min(workers or 1, len(todo))  # a process per cell at most
    bar = cells_bar(name, len(todo), progress)
    try:
        if executor == "ray":
            run_ray(store, name, todo, run_dir, device, n_workers, address, bar, _record, run_cell_task)
        elif n_workers <= 1:
            _run_in_process(store, name, todo, run_dir, device, progress, bar)
        else:
            _run_in_pool(store, name, todo, run_dir, device, progress, bar, n_workers)
    finally:
        bar.close()


def _run_in_process(
    store: Store, name: str, todo: list[Task], run_dir: Path, device: str, progress: bool, bar: Any
) -> None:
    t0 = time.monotonic()
    for cid, cfg_dict, params in todo:
        store.set_status(cid, "running")
        try:
            status, payload = run_cell_task(name, cfg_dict, cid, params, str(run_dir), device, progress, None)
        except KeyboardInterrupt:
            store.set_status(cid, "pending")  # resumes from its checkpoint on the next run
            raise
        _record(store, cid, status, payload, params.get("_grid"))
        bar.update()
        bar.set_postfix_str(eta_text(time.monotonic() - t0, bar.n, bar.total - bar.n))


def _run_in_pool(
    store: Store, name: str, todo: list[Task], run_dir: Path, device: str, progress: bool, bar: Any, n_workers: int
) -> None:
    threads = max(1, torch.get_num_threads() // n_workers)
    ctx = mp.get_context("spawn")  # fork after torch initialised its thread pools is unsafe
    pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_ignore_sigint)
    pending = {}
    queue: Any = False
    follower = None
    frac: dict[str, float] = {}
    if progress:
        queue = ctx.Manager().Queue()
        follower = threading.Thread(target=follow_progress, args=(queue, bar, frac), daemon=True)
        follower.start()
    try:
        grids = {cid: params.get("_grid") for cid, _, params in todo}
        for cid, cfg_dict, params in todo:
            store.set_status(cid, "running")
            fut = pool.submit(run_cell_task, name, cfg_dict, cid, params, str(run_dir), device, queue, threads)
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


def _ignore_sigint() -> None:
    # Workers leave Ctrl-C to the driver, which checkpoints nothing itself but owns the store.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
