"""The one path every experiment takes: config -> cells -> executor -> store -> figures -> report.

:func:`run_experiment` is what ``iwlab run`` and ``iwlab sweep`` call. A run directory holds
``config.json``, ``provenance.json``, ``results.db``, ``checkpoints/``, ``artifacts/``, ``figures/``
and ``report.md``/``report.html``. Running the same command with the same ``--out`` again skips
finished cells and resumes unfinished ones from their checkpoints; a different config in an
existing directory is refused rather than mixed in.

Example:
    >>> # run_dir = run_experiment("synthetic", "quick", ["epochs=50"], out="runs/demo")
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iwlab.config import config_to_dict
from iwlab.experiments import get_experiment, make_config
from iwlab.experiments.base import CellContext, CellResult
from iwlab.provenance import provenance
from iwlab.store import Store, load

MIN_FREE_BYTES = 50 * 2**20


class RunError(RuntimeError):
    """A run cannot start or continue (unwritable directory, full disk, config mismatch)."""


def default_out(name: str, profile: str) -> Path:
    """``runs/NAME-PROFILE``: deterministic, so rerunning a command resumes it.

    Example:
        >>> default_out("synthetic", "quick").as_posix()
        'runs/synthetic-quick'
    """
    return Path("runs") / f"{name}-{profile}"


def preflight(out: Path) -> None:
    """Fail before training if ``out`` cannot be written or its disk is nearly full.

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


class _EpochReporter:
    """Callable handed to ``fit(progress=...)`` in workers: sends (cell, epoch, total), at most 4 a second."""

    def __init__(self, queue: Any, cell_id: str) -> None:
        self.queue, self.cell_id, self.last = queue, cell_id, 0.0

    def __call__(self, epoch: int, total: int) -> None:
        import time

        now = time.monotonic()
        if now - self.last > 0.25 or epoch == total:
            self.last = now
            self.queue.put((self.cell_id, epoch, total))


def _follow_progress(queue: Any, bar: Any, done: dict[str, float]) -> None:
    """Driver thread: the bar shows finished cells plus the finished fraction of running ones."""
    while True:
        item = queue.get()
        if item is None:
            return
        cid, epoch, total = item
        done[cid] = max(done.get(cid, 0.0), epoch / max(total, 1))
        bar.n = round(sum(done.values()), 2)
        bar.refresh()


def _run_cell_task(
    name: str,
    cfg_dict: dict,
    cell_id: str,
    params: dict,
    run_dir: str,
    device: str,
    progress: bool,
    threads: int | None,
) -> tuple[str, Any]:
    """Worker entry point: ('ok', CellResult) or ('failed', traceback text). Never raises.

    ``params`` may carry ``_cell`` (the experiment's own cell id, when ``cell_id`` has a sweep prefix)
    and ``_grid`` (the sweep point, added to every member's labels by the driver).
    """
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from iwlab.config import config_from_dict

        exp = get_experiment(name)
        cfg = config_from_dict(exp.Config, cfg_dict)
        if hasattr(progress, "put"):  # a queue from the driver: report (cell, epoch, total) instead of a bar
            progress = _EpochReporter(progress, cell_id)
        ctx = CellContext(run_dir=Path(run_dir), cell_id=cell_id, device=device, progress=progress)
        own = {k: v for k, v in params.items() if not k.startswith("_")}
        return "ok", exp.run_cell(cfg, params.get("_cell", cell_id), own, ctx)
    except KeyboardInterrupt:
        raise
    except Exception:
        return "failed", traceback.format_exc()


def run_experiment(
    name: str,
    profile: str = "quick",
    overrides: Sequence[str] | dict | None = None,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cells_filter: Callable[[str], bool] | None = None,
    progress: bool = True,
    report: bool = True,
    cells_override: list[tuple[str, dict]] | None = None,
    cfg: Any = None,
) -> Path:
    """Run (or resume) an experiment and write its report; returns the run directory.

    Example:
        >>> # run_experiment("synthetic", "quick", ["epochs=20"], out="runs/x", workers=2)
    """
    exp = get_experiment(name)
    if cfg is None:
        cfg = make_config(name, profile, list(overrides or []) if not isinstance(overrides, dict) else overrides)
    if device.startswith("cuda") and address is None:  # a Ray cluster may have GPUs the driver lacks
        import torch

        if not torch.cuda.is_available():
            raise RunError("--device cuda was asked for, but torch sees no CUDA device")
    run_dir = Path(out) if out is not None else default_out(name, profile)
    preflight(run_dir)
    cfg_dict = config_to_dict(cfg)
    _check_same_config(run_dir, name, profile, cfg_dict)
    prov = provenance(device)
    (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2))
    store = Store(run_dir / "results.db")
    store.set_meta(experiment=name, profile=profile, config=cfg_dict, provenance=prov)
    cells = cells_override if cells_override is not None else exp.cells(cfg)
    if cells_filter is not None:
        cells = [c for c in cells if cells_filter(c[0])]
    tasks = [(cid, cfg_dict, p) for cid, p in cells]
    _run_tasks(store, name, tasks, prov, run_dir, device, executor, workers, address, progress)
    if report:
        write_report(run_dir)
    store.close()
    return run_dir


def _check_same_config(run_dir: Path, name: str, profile: str, cfg_dict: dict, extra: dict | None = None) -> None:
    path = run_dir / "config.json"
    record = {"experiment": name, "profile": profile, "config": cfg_dict, **(extra or {})}
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(
                k for k in set(old.get("config", {})) | set(cfg_dict) if old.get("config", {}).get(k) != cfg_dict.get(k)
            )
            what = (
                f"keys differ: {', '.join(diff)}"
                if diff
                else f"experiment, profile or sweep differ ({old.get('experiment')}/{old.get('profile')})"
            )
            raise RunError(f"{run_dir} holds a run with a different config ({what}); use another --out to start afresh")
        return
    path.write_text(json.dumps(record, indent=2))


def _record(store: Store, cell_id: str, status: str, payload: Any, grid: dict | None = None) -> None:
    if status == "ok":
        res: CellResult = payload
        if grid:
            res.members = [{**m, **grid} for m in res.members]
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
        print(
            f"iwlab: cell {cell_id} failed; traceback stored in results.db (runs.error)",
            file=sys.stderr,
        )


def _run_tasks(
    store: Store,
    name: str,
    tasks: list[tuple[str, dict, dict]],
    prov: dict,
    run_dir: Path,
    device: str,
    executor: str,
    workers: int | None,
    address: str | None,
    progress: bool,
) -> None:
    """Register tasks ``(cell_id, config dict, params)`` and execute those not finished yet."""
    from tqdm.auto import tqdm

    store.add_runs(name, [(cid, {"config": c, "cell": p}) for cid, c, p in tasks], provenance=prov)
    todo = [t for t in tasks if store.status(t[0]) not in ("done", "diverged")]
    if not todo:
        return

    n_workers = workers or 1
    bar = tqdm(total=len(todo), desc=f"{name} cells", disable=not progress, leave=True, unit="cell")
    if executor == "ray":
        from iwlab.executors import run_ray

        run_ray(store, name, todo, run_dir, device, n_workers, address, bar, _record, _run_cell_task)
        bar.close()
        return
    if executor != "local":
        raise RunError(f"unknown executor '{executor}'; valid: local, ray")
    if n_workers <= 1:
        for cid, cfg_dict, params in todo:
            store.set_status(cid, "running")
            try:
                status, payload = _run_cell_task(name, cfg_dict, cid, params, str(run_dir), device, progress, None)
            except KeyboardInterrupt:
                store.set_status(cid, "pending")  # resumes from its checkpoint on the next run
                raise
            _record(store, cid, status, payload, params.get("_grid"))
            bar.update()
        bar.close()
        return
    import multiprocessing as mp
    import threading
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import torch

    threads = max(1, torch.get_num_threads() // n_workers)
    ctx = mp.get_context("spawn")  # fork after torch initialised its thread pools is unsafe
    pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_ignore_sigint)
    pending = {}
    queue: Any = False
    follower = None
    frac: dict[str, float] = {}
    if progress:
        queue = ctx.Manager().Queue()
        follower = threading.Thread(target=_follow_progress, args=(queue, bar, frac), daemon=True)
        follower.start()
    try:
        grids = {cid: params.get("_grid") for cid, _, params in todo}
        for cid, cfg_dict, params in todo:
            store.set_status(cid, "running")
            fut = pool.submit(_run_cell_task, name, cfg_dict, cid, params, str(run_dir), device, queue, threads)
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
        bar.close()
    pool.shutdown()


def _ignore_sigint() -> None:
    # Workers leave Ctrl-C to the driver, which checkpoints nothing itself but owns the store.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def failed_cells(run_dir: str | Path) -> list[str]:
    """Ids of the cells whose status is ``failed`` (their tracebacks are in ``runs.error``).

    Example:
        >>> # failed_cells("runs/synthetic-quick")
    """
    store = Store(Path(run_dir) / "results.db")
    try:
        return [r["run_id"] for r in store.runs() if r["status"] == "failed"]
    finally:
        store.close()


def write_report(run_dir: str | Path) -> Path:
    """Figures (from the store) plus the experiment's summary, as report.md and report.html.

    Example:
        >>> # write_report("runs/synthetic-quick")
    """
    from iwlab.config import config_from_dict
    from iwlab.report import render_report

    run_dir = Path(run_dir)
    store = Store(run_dir / "results.db")
    meta = store.meta()
    exp = get_experiment(meta["experiment"])
    cfg = config_from_dict(exp.Config, meta["config"])
    df = load(run_dir)
    if meta.get("sweep"):
        from iwlab.sweep import sweep_summary

        summary, figures = sweep_summary(exp, df, meta), []
        path = render_report(run_dir, meta, store.runs(), figures, summary)
        store.close()
        return path
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures = exp.figures(run_dir, df, cfg)
    for f in figures:
        store.add_artifact("", "figure", str(Path(f).relative_to(run_dir)))
    summary = exp.summary(df, cfg)
    path = render_report(run_dir, meta, store.runs(), figures, summary)
    store.close()
    return path
