"""``iwlab run EXPERIMENT [--profile P] [--set k=v ...] [--out DIR] [--device cpu|cuda] [--executor local|ray|slurm]``.

The options shared with ``iwlab sweep`` live here (:func:`add_common`), among them where cells run:
``--executor local`` (in-process, or ``--workers`` processes; with ``--device cuda`` one per visible GPU
times ``--cells-per-gpu``, each on its own GPU), ``ray`` (``--address``) or ``slurm`` (the
``--slurm-*`` options, :class:`~iwlab.executors.SlurmOptions`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from iwlab.executors import SlurmOptions
from iwlab.experiments import EXPERIMENTS, get_experiment
from iwlab.runner import failed_cells, run

MAX_DEFAULT_WORKERS = 4


class _HelpWithProfiles(argparse.Action):
    """``-h``: the usual help, then every experiment's real profiles (imported only when asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: object) -> None:
        super().__init__(
            option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help="show this help message and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.epilog = profiles_text()
        parser.print_help()
        parser.exit()


def profiles_text() -> str:
    """One line per experiment with its profiles, for ``run --help`` and ``sweep --help``.

    Example:
        >>> "synthetic" in profiles_text()
        True
    """
    width = max(18, *(len(n) for n in EXPERIMENTS))
    lines = ["experiments and their profiles (--profile):"]
    for name in sorted(EXPERIMENTS):
        exp = get_experiment(name)
        also = f" (also: {', '.join(exp.aliases)})" if exp.aliases else ""
        lines.append(f"  {name:<{width}} {', '.join(exp.profiles)}{also}")
    return "\n".join(lines)


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``sweep``."""
    p.add_argument("-h", "--help", action=_HelpWithProfiles)
    p.add_argument("experiment", help="experiment name (see `iwlab list`)")
    p.add_argument(
        "--profile",
        default="quick",
        help="config profile (default: quick, minutes on 2 CPU cores; paper: the paper's settings; the list below)",
    )
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
        help=f"cells trained at once, each in its own process (default: one per CPU core this process may use, "
        f"at most {MAX_DEFAULT_WORKERS}, and never more than there are cells to run; with --device cuda and the "
        "local executor: one per visible GPU times --cells-per-gpu)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="N",
        help="torch threads of each worker process, Ray or Slurm task (default 1, on Slurm --slurm-cpus-per-task: "
        "several multi-threaded processes oversubscribe the cores; a run in this process keeps torch's default)",
    )
    p.add_argument(
        "--cells-per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="with --device cuda: up to K cells share one GPU at a time (default 1); local workers get the "
        "visible GPUs (CUDA_VISIBLE_DEVICES, else all) in turn",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray", "slurm"),
        default="local",
        help="where cells run: local processes (default), Ray (iwlab[ray]) or Slurm array jobs through "
        "submitit (iwlab[slurm]; run on the login node, pass --device cuda for GPUs)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    add_slurm(p)
    p.add_argument(
        "--figure-format",
        choices=("png", "pdf", "svg"),
        default="png",
        help="file format of the figures (default png; report.html embeds png and svg, links pdf)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_slurm(p: argparse.ArgumentParser) -> None:
    """The ``--slurm-*`` options of ``--executor slurm`` (:class:`~iwlab.executors.SlurmOptions`)."""
    g = p.add_argument_group("slurm (--executor slurm: one array task per cell, logs in OUT/slurm/)")
    g.add_argument("--slurm-partition", default=None, metavar="NAME", help="partition (default: the cluster's)")
    g.add_argument(
        "--slurm-time",
        type=int,
        default=None,
        metavar="MIN",
        help="minutes per task (default 60); a cell that needs longer is requeued and resumes from its checkpoint",
    )
    g.add_argument(
        "--slurm-gpus-per-task", type=int, default=None, metavar="N", help="default: 1 with --device cuda, else 0"
    )
    g.add_argument(
        "--slurm-cpus-per-task",
        type=int,
        default=None,
        metavar="N",
        help="default 1; also each task's torch threads unless --threads-per-worker",
    )
    g.add_argument(
        "--slurm-mem-gb", type=float, default=None, metavar="GB", help="memory per task (default: the partition's)"
    )
    g.add_argument(
        "--slurm-array-parallelism", type=int, default=None, metavar="N", help="cells running at once (default 256)"
    )
    g.add_argument(
        "--slurm-additional",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. account=abc or qos=high; repeatable",
    )


def slurm_options(args: argparse.Namespace) -> SlurmOptions | None:
    """The ``--slurm-*`` options as :class:`~iwlab.executors.SlurmOptions`; None when none is given and
    the executor is not Slurm.

    Raises:
        ValueError: a ``--slurm-additional`` without ``=``, or a value out of range (the message names it).

    Example:
        >>> from iwlab.cli import build_parser
        >>> args = build_parser().parse_args(["run", "synthetic", "--executor=slurm", "--slurm-additional=qos=high"])
        >>> slurm_options(args).additional, slurm_options(args).time_min
        ({'qos': 'high'}, 60)
    """
    given = {
        "partition": args.slurm_partition,
        "time_min": args.slurm_time,
        "gpus_per_task": args.slurm_gpus_per_task,
        "cpus_per_task": args.slurm_cpus_per_task,
        "mem_gb": args.slurm_mem_gb,
        "array_parallelism": args.slurm_array_parallelism,
    }
    given = {k: v for k, v in given.items() if v is not None}
    extra = {}
    for item in args.slurm_additional:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm-additional expects KEY=VALUE, got {item!r}")
        extra[key.strip()] = value
    if not given and not extra and args.executor != "slurm":
        return None
    return SlurmOptions(**given, additional=extra)


def executor_kwargs(args: argparse.Namespace, device: str) -> dict:
    """``run()`` keywords for where cells run (``--executor``, ``--workers``, GPUs, threads, Slurm).

    ``--workers`` left out with ``--device cuda`` and the local executor gives None: one worker per
    visible GPU times ``--cells-per-gpu`` (:func:`~iwlab.runner.execute.gpu_slots`).
    """
    gpu_pool = args.workers is None and args.executor == "local" and device == "cuda"
    return {
        "executor": args.executor,
        "workers": None if gpu_pool else default_workers(args.workers),
        "address": args.address,
        "cells_per_gpu": args.cells_per_gpu,
        "threads_per_worker": args.threads_per_worker,
        "slurm": slurm_options(args),
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run (or resume) one experiment and write its report",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.set_defaults(command="run")


def resolve_device(device: str | None) -> str:
    """``cuda`` when asked for or available, else ``cpu``."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_workers(workers: int | None) -> int:
    """``--workers`` if given (>= 1), else one per usable CPU core, at most :data:`MAX_DEFAULT_WORKERS`.

    Raises:
        ValueError: ``workers`` < 1.
    """
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        return workers
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, n))


def main(args: argparse.Namespace) -> int:
    """Run the experiment (a sweep without a grid) and print where its report is."""
    device = resolve_device(args.device)
    run_dir = run(
        args.experiment,
        args.profile,
        args.overrides,
        out=args.out,
        device=device,
        **executor_kwargs(args, device),
        progress=not args.no_progress,
        debug=args.debug,
        figure_format=args.figure_format,
    )
    return report_and_status(run_dir)


def report_and_status(run_dir: Path) -> int:
    """Print where the report is, and each failed cell's one-line reason; exit status 1 when a cell failed."""
    print(f"report: {run_dir / 'report.html'}")
    failed = failed_cells(run_dir)
    for cid, reason in failed:
        print(f"iwlab: cell {cid} failed: {reason}", file=sys.stderr)
    if failed:
        print(
            f"iwlab: {len(failed)} cell(s) failed; the report lists them, full tracebacks: "
            "results.db (table runs, column error) or rerun with --workers 1 --debug",
            file=sys.stderr,
        )
        return 1
    return 0
