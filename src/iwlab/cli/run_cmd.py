"""``iwlab run EXPERIMENT [--profile P] [--set k=v ...] [--out DIR] [--device cpu|cuda]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``sweep``."""
    p.add_argument("experiment", help="experiment name (see `iwlab list`)")
    p.add_argument("--profile", default="quick", help="config profile: quick (default) or paper")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value; repeatable",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run directory (default runs/EXPERIMENT-PROFILE); rerun to resume",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel worker processes (default: 1 per 2 cores... see docs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``run`` subcommand."""
    p = sub.add_parser("run", help="run (or resume) one experiment and write its report")
    add_common(p)
    p.set_defaults(command="run")


def resolve_device(device: str | None) -> str:
    """``cuda`` when asked for or available, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_workers(workers: int | None) -> int:
    """One worker per core, at most 4, unless given."""
    if workers:
        return workers
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, n))


def main(args: argparse.Namespace) -> int:
    """Run the experiment and print where its report is."""
    from iwlab.runner import run_experiment

    run_dir = run_experiment(
        args.experiment,
        args.profile,
        args.overrides,
        args.out,
        device=resolve_device(args.device),
        workers=default_workers(args.workers),
        progress=not args.no_progress,
    )
    return report_and_status(run_dir)


def report_and_status(run_dir: Path) -> int:
    """Print where the report is; exit status 1 when a cell failed (its traceback is in the store)."""
    from iwlab.runner import failed_cells

    print(f"report: {run_dir / 'report.html'}")
    failed = failed_cells(run_dir)
    if failed:
        print(
            f"iwlab: {len(failed)} cell(s) failed: {', '.join(failed)}; tracebacks in results.db (runs.error)",
            file=sys.stderr,
        )
        return 1
    return 0
