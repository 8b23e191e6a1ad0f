"""The one execution path: config -> cells -> executor -> store -> figures -> report.

:func:`run` is what both ``iwlab run`` and ``iwlab sweep`` call. A run is a sweep with no grid
(``grid=None``): one point, the base config, its cells under their own ids, reported with figures. A
sweep (``grid`` a list, even an empty one) builds one config per grid point, prefixes each point's
cell ids with the point, labels every member with it, records the grid in the store and reports one
section per point. Running the same command with the same ``--out`` again skips finished cells and
resumes unfinished ones from their checkpoints; a different config in an existing directory is refused.

Example::

    run("synthetic", "quick", ["epochs=50"], out="runs/demo")                    # iwlab run
    run("synthetic", "quick", grid=["lr_scale=1,2"], seeds=2, out="runs/sweep")   # iwlab sweep
    run("synthetic", "quick", grid=["lr_scale=1,2"], executor="slurm", slurm=SlurmOptions(partition="gpu"),
        device="cuda", out="runs/sweep")                                           # on a Slurm cluster
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from iwlab.config import ConfigError, apply_overrides, config_to_dict
from iwlab.executors import SlurmOptions
from iwlab.experiments import get_experiment, make_config
from iwlab.provenance import provenance
from iwlab.runner.execute import Task, check_executor_options, run_tasks
from iwlab.runner.grid import check_set_and_grid, parse_grid, point_label
from iwlab.runner.report import check_figure_format, write_report
from iwlab.runner.rundir import check_device, check_same_config, default_out, preflight
from iwlab.store import Store


def run(
    name: str,
    profile: str = "quick",
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    grid: Sequence[str] | None = None,
    *,
    seeds: int | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cells_per_gpu: int | None = None,
    threads_per_worker: int | None = None,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
    debug: bool = False,
    figure_format: str = "png",
    report: bool = True,
    cfg: Any = None,
    cells_filter: Callable[[str], bool] | None = None,
    cells_override: list[tuple[str, dict]] | None = None,
) -> Path:
    """Run or resume an experiment, or a sweep of it, and write its report; returns the run directory.

    Args:
        name: experiment name or alias (``iwlab list``).
        profile: the profile the config starts from.
        overrides: ``--set`` values, ``["key=value", ...]`` or a mapping.
        grid: None for a run; ``["key=v1,v2", ...]`` for a sweep (see :func:`~iwlab.runner.grid.parse_grid`).
        seeds: ``--seeds N``: sets the config's ``seeds`` (packed into each ensemble).
        out: run directory (default ``runs/NAME-PROFILE``, ``-sweep`` appended for sweeps).
        device: torch device of every cell.
        executor: ``"local"`` (in-process, or a process pool when ``workers > 1``), ``"ray"`` or ``"slurm"``.
        workers: cells trained at once (None: 1; with ``device="cuda"`` and the local executor, one per
            visible GPU times ``cells_per_gpu``).
        address: a Ray cluster's address (None: a local Ray).
        cells_per_gpu: with ``device="cuda"``, cells sharing one GPU at a time (local pool and Ray).
        threads_per_worker: torch threads of each worker process or task (None: 1; in-process: torch's default).
        slurm: resources of each Slurm task (``executor="slurm"``; None: :class:`~iwlab.executors.SlurmOptions`'s
            defaults).
        progress: progress bars and messages on stderr.
        debug: re-raise when figures fail instead of noting it in the report.
        figure_format: ``png``, ``pdf`` or ``svg``.
        report: write figures and report (False: train and record only).
        cfg: a ready config, instead of ``profile`` + ``overrides`` (runs only).
        cells_filter: keep only cells whose id passes (runs only).
        cells_override: run these ``(cell_id, params)`` instead of the experiment's cells (runs only).

    Raises:
        ValueError: an unknown experiment or figure format.
        ConfigError: a bad key, value, grid, or a key given with both ``--set`` and ``--grid``.
        RunError: a bad device, executor options that do not go together, an unwritable or full output
            directory, another config in ``out``.
    """
    exp = get_experiment(name)
    check_figure_format(figure_format)
    sweep = grid is not None
    overrides = overrides or []
    if sweep:
        if cfg is not None or cells_filter is not None or cells_override is not None:
            raise ValueError("cfg, cells_filter and cells_override apply to runs, not sweeps")
        check_set_and_grid([] if isinstance(overrides, Mapping) else overrides, grid)
    base = cfg if cfg is not None else make_config(name, profile, overrides)
    if seeds is not None:
        if not hasattr(base, "seeds"):
            raise ConfigError(f"experiment {exp.name} has no 'seeds' setting")
        base = apply_overrides(base, {"seeds": seeds})
    packed, points = parse_grid(base, grid or (), exp.pack_keys)
    base = apply_overrides(base, packed)
    # every point's config is built (and validated) before anything runs
    configs = [(point, apply_overrides(base, point)) for point in points]
    # a Ray or Slurm cluster may have GPUs the driver lacks
    check_device(device, need_cuda=address is None and executor != "slurm")
    executor_opts = {"cells_per_gpu": cells_per_gpu, "threads_per_worker": threads_per_worker}
    check_executor_options(executor, device, workers=workers, slurm=slurm, address=address, **executor_opts)
    if profile in exp.gpu_profiles and not device.startswith("cuda"):
        print(
            f"iwlab: warning: profile '{profile}' is sized for a GPU; on {device} an epoch takes hours", file=sys.stderr
        )
    run_dir = Path(out) if out is not None else default_out(name, profile, sweep=sweep)
    preflight(run_dir)
    base_dict = config_to_dict(base)
    spec = {"grid": list(grid), "seeds": seeds, "points": [point_label(p) for p in points]} if sweep else None
    store = Store(run_dir / "results.db")
    try:
        check_same_config(run_dir, store, exp.name, profile, base_dict, {"sweep": spec} if sweep else None)
        prov = provenance(device, run_dir)
        (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2))
        sweep_meta = {"sweep": spec} if sweep else {}
        store.set_meta(experiment=exp.name, profile=profile, config=base_dict, provenance=prov, **sweep_meta)
        tasks: list[Task] = []
        for point, point_cfg in configs:
            cells = exp.cells(point_cfg) if cells_override is None else cells_override
            point_dict = config_to_dict(point_cfg)
            for cid, params in cells:
                if cells_filter is not None and not cells_filter(cid):
                    continue
                if sweep:
                    full = f"{point_label(point)}/{cid}" if point else cid
                    tasks.append((full, point_dict, {**params, "_cell": cid, "_grid": point}))
                else:
                    tasks.append((cid, point_dict, params))
        run_args = (store, exp.name, tasks, prov, run_dir, device, executor, workers, address, progress)
        run_tasks(*run_args, slurm=slurm, **executor_opts)
    finally:
        store.close()
    if report:
        write_report(run_dir, progress=progress, debug=debug, figure_format=figure_format)
    return run_dir


def run_experiment(
    name: str,
    profile: str = "quick",
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    **kw: Any,
) -> Path:
    """:func:`run` without a grid (``iwlab run``); keyword arguments as there.

    Example::

        run_experiment("synthetic", "quick", ["epochs=20"], out="runs/x", workers=2)
    """
    return run(name, profile, overrides, None, out=out, **kw)


def run_sweep(
    name: str,
    profile: str = "quick",
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
    **kw: Any,
) -> Path:
    """:func:`run` with a grid (``iwlab sweep``), recorded as a sweep even when the grid is empty.

    Example::

        run_sweep("synthetic", "quick", grid=["lr_scale=1,2"], seeds=2, out="runs/sw")
    """
    return run(name, profile, overrides, list(grid), **kw)
