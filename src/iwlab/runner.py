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
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iwlab.config import config_to_dict
from iwlab.experiments import get_experiment, make_config
from iwlab.experiments.base import CellContext, CellResult
from iwlab.provenance import provenance
from iwlab.store import Store, failure_reason, load

MIN_FREE_BYTES = 50 * 2**20


class RunError(RuntimeError):
    """A run cannot start or continue (unwritable directory, full disk, config mismatch)."""


def check_device(device: str) -> None:
    """Refuse a device name torch does not know before anything runs (it would fail inside every cell).

    Raises:
        RunError: e.g. ``--device foo``; the message lists the usual choices.

    Example:
        >>> check_device("cpu")
    """
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise RunError(f"--device {device!r} is not a device torch knows ({e}); use cpu, cuda or cuda:N") from None


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
    """Driver thread: the bar shows finished cells plus the finished fraction of running ones.

    The ETA is measured from the first epoch report on, not from the start: worker start-up (process
    spawn, imports, data loading) would otherwise count as training time and open the bar with an
    ETA many times too long.
    """
    first: tuple[float, float] | None = None  # (time, cells done) at the first report
    while True:
        item = queue.get()
        if item is None:
            return
        cid, epoch, total = item
        done[cid] = max(done.get(cid, 0.0), epoch / max(total, 1))
        n = sum(done.values())
        now = time.monotonic()
        if first is None:
            first = (now, n)
        bar.n = round(n, 2)
        bar.set_postfix_str(eta_text(now - first[0], n - first[1], bar.total - n), refresh=False)
        bar.refresh()


def eta_text(elapsed: float, progressed: float, remaining: float) -> str:
    """``"ETA 2:05"`` from the progress made in ``elapsed`` seconds; ``"ETA ..."`` until it is measurable.

    Example:
        >>> eta_text(10.0, 0.5, 1.0), eta_text(0.0, 0.0, 3.0)
        ('ETA 0:20', 'ETA ...')
    """
    if progressed <= 0 or elapsed < 1.0:
        return "ETA ..."
    secs = int(round(remaining * elapsed / progressed))
    h, rest = divmod(secs, 3600)
    return f"ETA {h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"ETA {rest // 60}:{rest % 60:02d}"


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
    debug: bool = False,
    figure_format: str = "png",
) -> Path:
    """Run (or resume) an experiment and write its report; returns the run directory.

    Example:
        >>> # run_experiment("synthetic", "quick", ["epochs=20"], out="runs/x", workers=2)
    """
    exp = get_experiment(name)
    if figure_format not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}; got '{figure_format}'")
    if cfg is None:
        cfg = make_config(name, profile, list(overrides or []) if not isinstance(overrides, dict) else overrides)
    check_device(device)
    if device.startswith("cuda") and address is None:  # a Ray cluster may have GPUs the driver lacks
        import torch

        if not torch.cuda.is_available():
            raise RunError("--device cuda was asked for, but torch sees no CUDA device")
    run_dir = Path(out) if out is not None else default_out(name, profile)
    preflight(run_dir)
    cfg_dict = config_to_dict(cfg)
    store = Store(run_dir / "results.db")
    try:
        check_same_config(run_dir, store, name, profile, cfg_dict)
        prov = provenance(device, run_dir)
        (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2))
        store.set_meta(experiment=name, profile=profile, config=cfg_dict, provenance=prov)
        cells = cells_override if cells_override is not None else exp.cells(cfg)
        if cells_filter is not None:
            cells = [c for c in cells if cells_filter(c[0])]
        tasks = [(cid, cfg_dict, p) for cid, p in cells]
        run_tasks(store, name, tasks, prov, run_dir, device, executor, workers, address, progress)
    finally:
        store.close()
    if report:
        write_report(run_dir, progress=progress, debug=debug, figure_format=figure_format)
    return run_dir


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


def check_same_config(
    run_dir: Path, store: Store, name: str, profile: str, cfg_dict: dict, extra: dict | None = None
) -> None:
    """Refuse to mix runs: ``config.json`` and the store's own record must both match this run's config.

    The store's copy is checked too, so a results.db copied into a fresh directory (or a run
    directory whose config.json was deleted) cannot take a new config while keeping the old metrics.
    A missing config.json is rewritten from the run's record.

    Raises:
        RunError: either record differs (the message names the differing keys and both values).

    Example:
        >>> # check_same_config(Path("runs/x"), Store("runs/x/results.db"), "synthetic", "quick", cfg_dict)
    """
    path = run_dir / "config.json"
    record = {"experiment": name, "profile": profile, "config": cfg_dict, **(extra or {})}
    meta = store.meta()
    if "config" in meta or "experiment" in meta:
        stored = {k: meta.get(k) for k in ("experiment", "profile", "config")}
        if "sweep" in meta or "sweep" in record:
            stored["sweep"] = meta.get("sweep")
        if stored != {k: record.get(k) for k in stored}:
            raise RunError(
                f"{store.path} holds results of a different config ({_config_diff(stored, record)}); "
                "use another --out to start afresh"
            )
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{path} is not valid JSON ({e}); move it aside or use another --out") from None
        if old != record:
            raise RunError(
                f"{run_dir} holds a run with a different config ({_config_diff(old, record)}); "
                "use another --out to start afresh"
            )
        return
    path.write_text(json.dumps(record, indent=2))


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
    tasks: list[tuple[str, dict, dict]],
    prov: dict,
    run_dir: Path,
    device: str,
    executor: str,
    workers: int | None,
    address: str | None,
    progress: bool,
) -> None:
    """Register tasks ``(cell_id, config dict, params)`` and execute those not finished yet.

    Used by :func:`run_experiment` and :func:`iwlab.sweep.run_sweep` (a run is a sweep with an empty
    grid). Prints how many cells a resumed run finds already done.

    Example:
        >>> # run_tasks(store, "synthetic", [("mlp", cfg_dict, {"model": "mlp"})], prov, run_dir, "cpu", ...)
    """
    from tqdm.auto import tqdm

    store.add_runs(name, [(cid, {"config": c, "cell": p}) for cid, c, p in tasks], provenance=prov)
    todo = [t for t in tasks if store.status(t[0]) not in ("done", "diverged")]
    already = len(tasks) - len(todo)
    if already:
        rest = f"running the other {len(todo)}" if todo else "nothing left to train, rewriting the report"
        print(f"iwlab: {already} of {len(tasks)} cells already done; {rest}", file=sys.stderr)
    if not todo:
        return

    n_workers = min(workers or 1, len(todo))  # a process per cell at most
    bar = tqdm(
        total=len(todo),
        desc=f"{name} cells",
        disable=not progress,
        leave=True,
        unit="cell",
        # our own ETA (see _follow_progress): tqdm's would count worker start-up as progress time
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.4g}/{total_fmt} cells [{elapsed}{postfix}]",
    )
    if executor == "ray":
        from iwlab.executors import run_ray

        run_ray(store, name, todo, run_dir, device, n_workers, address, bar, _record, _run_cell_task)
        bar.close()
        return
    if executor != "local":
        raise RunError(f"unknown executor '{executor}'; valid: local, ray")
    if n_workers <= 1:
        t0 = time.monotonic()
        for cid, cfg_dict, params in todo:
            store.set_status(cid, "running")
            try:
                status, payload = _run_cell_task(name, cfg_dict, cid, params, str(run_dir), device, progress, None)
            except KeyboardInterrupt:
                store.set_status(cid, "pending")  # resumes from its checkpoint on the next run
                raise
            _record(store, cid, status, payload, params.get("_grid"))
            bar.update()
            bar.set_postfix_str(eta_text(time.monotonic() - t0, bar.n, bar.total - bar.n))
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


def failed_cells(run_dir: str | Path) -> list[tuple[str, str]]:
    """``(cell id, one-line reason)`` of every cell whose status is ``failed`` (tracebacks in ``runs.error``).

    Example:
        >>> # failed_cells("runs/synthetic-quick")  -> [("logreg", "ValueError: ...")]
    """
    store = Store(Path(run_dir) / "results.db")
    try:
        return [(r["run_id"], failure_reason(r["error"])) for r in store.runs() if r["status"] == "failed"]
    finally:
        store.close()


FIGURE_FORMATS = ("png", "pdf", "svg")


def write_report(
    run_dir: str | Path, *, progress: bool = True, debug: bool = False, figure_format: str = "png"
) -> Path:
    """Figures (from the store) plus the experiment's summary, as report.md and report.html.

    With no metrics at all (every cell failed) there are no figures: the report lists the failed
    cells and their reasons. If drawing the figures fails, the report says so (one line, also
    printed) instead of the run ending in a traceback; ``debug=True`` re-raises instead.

    Example:
        >>> # write_report("runs/synthetic-quick")
    """
    from iwlab.config import config_from_dict
    from iwlab.report import render_report

    if figure_format not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}; got '{figure_format}'")
    run_dir = Path(run_dir)
    store = Store(run_dir / "results.db")
    try:
        meta = store.meta()
        runs = store.runs()
        exp = get_experiment(meta["experiment"])
        cfg = config_from_dict(exp.Config, meta["config"])
        df = load(run_dir)
        notes: list[str] = []
        figures: list[Path] = []
        if df.empty:
            summary = "No metrics were recorded: every cell failed (reasons below)."
        elif meta.get("sweep"):
            from iwlab.sweep import sweep_summary

            summary = sweep_summary(exp, df, meta)
        else:
            (run_dir / "figures").mkdir(exist_ok=True)
            t0 = time.monotonic()
            if progress:
                print("iwlab: drawing figures ...", file=sys.stderr)
            try:
                figures = list(exp.figures(run_dir, df, cfg, fmt=figure_format))
            except Exception as e:
                if debug:
                    raise
                note = f"figures could not be drawn: {type(e).__name__}: {e}"
                print(f"iwlab: {note} (rerun with --debug for the traceback)", file=sys.stderr)
                notes.append(note)
            for f in figures:
                store.add_artifact("", "figure", str(Path(f).relative_to(run_dir)))
            if progress:
                print(f"iwlab: {len(figures)} figures in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            summary = exp.summary(df, cfg)
        if getattr(cfg, "fixture", False):  # say it before any number: these are not the paper's data
            summary = (
                "**Data: a generated stand-in (fixture=true), not the real dataset.** These numbers test the "
                "pipeline; they say nothing about the paper's claims.\n\n" + summary
            )
        if notes:
            summary += "\n\n" + "\n".join(f"**Note:** {n}" for n in notes)
        return render_report(run_dir, meta, runs, figures, summary)
    finally:
        store.close()
