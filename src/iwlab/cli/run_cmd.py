"""``iwlab run EXPERIMENT [--profile P] [--set k=v ...] [--out DIR] [--device cpu|cuda]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

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
        f"at most {MAX_DEFAULT_WORKERS}, and never more than there are cells to run; torch's threads are "
        "split between them)",
    )
    p.add_argument(
        "--figure-format",
        choices=("png", "pdf", "svg"),
        default="png",
        help="file format of the figures (default png; report.html embeds png and svg, links pdf)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


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
    run_dir = run(
        args.experiment,
        args.profile,
        args.overrides,
        out=args.out,
        device=resolve_device(args.device),
        workers=default_workers(args.workers),
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
