"""``iwlab sweep EXPERIMENT --grid key=v1,v2 [--seeds N] [--executor local|ray|slurm] [--workers N] --out DIR``.

Where cells run (``--executor``, ``--workers``, ``--cells-per-gpu``, ``--threads-per-worker``, ``--slurm-*``)
is shared with ``iwlab run`` (:func:`~iwlab.cli.run_cmd.add_common`).
"""

from __future__ import annotations

import argparse

from iwlab.cli.run_cmd import add_common, executor_kwargs, report_and_status, resolve_device
from iwlab.runner import run


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep",
        help="run a grid of configs (resumable; local processes, Ray or Slurm)",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values; repeatable (the product is swept; a key given twice sweeps the values "
        "of both)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (packed into each ensemble)")
    p.set_defaults(command="sweep")


def main(args: argparse.Namespace) -> int:
    """Run the sweep (the same path as ``iwlab run``, with a grid) and print where its report is."""
    device = resolve_device(args.device)
    run_dir = run(
        args.experiment,
        args.profile,
        args.overrides,
        list(args.grid),
        seeds=args.seeds,
        out=args.out,
        device=device,
        **executor_kwargs(args, device),
        progress=not args.no_progress,
        debug=args.debug,
        figure_format=args.figure_format,
    )
    return report_and_status(run_dir)
