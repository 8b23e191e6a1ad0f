"""Run a function on several CPU processes joined in a gloo process group, and collect what each returns.

    from gloo_ranks import run_ranks          # tests/ is on pytest's pythonpath

    def _gather_ranks(rank, world_size, n):    # module level: spawn pickles it by name
        out = [None] * world_size
        torch.distributed.all_gather_object(out, rank * n)
        return out

    assert run_ranks(_gather_ranks, 2, 10) == [[0, 10], [0, 10]]

Each rank is a fresh ``spawn``ed interpreter (no CUDA, OMP_NUM_THREADS=1), so one call costs a few
seconds of imports: do several checks per call. A rank that raises makes ``run_ranks`` raise
``RankFailed`` with that rank's traceback; a hung rank (e.g. its peer died before a collective) is
terminated at ``timeout``.
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["RankFailed", "run_ranks"]

# how long to wait for the message of a rank whose process has already exited (its queue's feeder
# thread flushes before exit, but the parent may poll just before the bytes arrive)
_EXIT_GRACE_S = 2.0


class RankFailed(RuntimeError):
    """A rank raised, died or timed out; the message holds its traceback (or exit code)."""


def _worker(rank: int, world_size: int, init_file: str, fn: Callable, args: tuple, results, timeout: float) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{init_file}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout),
        )
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
        return
    try:
        # pickled here, not by the queue's feeder thread, where an unpicklable result would be lost
        results.put((rank, True, pickle.dumps(fn(rank, world_size, *args))))
    except BaseException:
        # reported before the group is destroyed, which makes the peers fail too: the root cause
        # usually arrives first
        results.put((rank, False, traceback.format_exc()))
    finally:
        gc.collect()  # objects of fn that hold the group (a DDP model's reducer) must go first, or gloo may abort
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], world_size: int = 2, *args: Any, timeout: float = 60) -> list[Any]:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, world_size, *args)]``, each in its own process.

    Args:
        fn: a module-level (picklable) function ``fn(rank, world_size, *args)`` returning a picklable
            value; it runs inside an initialized gloo process group (``torch.distributed`` works).
        world_size: number of processes, >= 1.
        *args: picklable extra arguments, the same for every rank.
        timeout: seconds for the whole run (and the process group's collective timeout).

    Returns:
        The ranks' return values, in rank order.

    Raises:
        RankFailed: a rank raised (its traceback is in the message), exited without a result, or the
            run exceeded ``timeout`` (the remaining processes are terminated).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="iwlab-gloo-") as tmp:
        init_file = str(Path(tmp) / "rendezvous")
        env_before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children before torch is imported there
        try:
            procs = [
                ctx.Process(target=_worker, args=(r, world_size, init_file, fn, args, results, timeout), daemon=True)
                for r in range(world_size)
            ]
            for p in procs:
                p.start()
        finally:
            if env_before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = env_before
        try:
            return _collect(procs, results, world_size, timeout)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join()
            results.close()


def _collect(procs: list, results, world_size: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    done: dict[int, Any] = {}
    failed: dict[int, str] = {}  # rank -> traceback, in arrival order
    exited_at: dict[int, float] = {}
    while len(done) + len(failed) < world_size:
        now = time.monotonic()
        if now > deadline:
            waiting = sorted(set(range(world_size)) - set(done) - set(failed))
            raise RankFailed(f"timed out after {timeout} s waiting for rank(s) {waiting}" + _report(failed))
        try:
            rank, ok, payload = results.get(timeout=0.1)
        except queue.Empty:
            for r, p in enumerate(procs):
                if r in done or r in failed or p.exitcode is None:
                    continue
                if now - exited_at.setdefault(r, now) > _EXIT_GRACE_S:
                    failed[r] = f"exited with code {p.exitcode} without a result"
            continue
        if ok:
            done[rank] = pickle.loads(payload)
            continue
        failed[rank] = payload
        # the first failure often makes the others fail too (a collective loses its peer): wait briefly
        # for theirs, so the report holds the root cause whichever rank's message came first
        deadline = min(deadline, time.monotonic() + _EXIT_GRACE_S)
    if failed:
        raise RankFailed(f"{len(failed)} of {world_size} rank(s) failed" + _report(failed))
    return [done[r] for r in range(world_size)]


def _report(failed: dict[int, str]) -> str:
    return "".join(f"\n--- rank {r} (failure #{k + 1} to arrive) ---\n{tb}" for k, (r, tb) in enumerate(failed.items()))
