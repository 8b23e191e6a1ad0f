"""``iwlab sweep EXPERIMENT --grid key=v1,v2 [--seeds N] [--executor local|ray] [--workers N] --out DIR``."""

from __future__ import annotations

import argparse

from iwlab.cli.run_cmd import add_common, default_workers, report_and_status, resolve_device
from iwlab.runner import run


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep",
        help="run a grid of configs (resumable; local processes or Ray)",
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
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.set_defaults(command="sweep")


def main(args: argparse.Namespace) -> int:
    """Run the sweep (the same path as ``iwlab run``, with a grid) and print where its report is."""
    run_dir = run(
        args.experiment,
        args.profile,
        args.overrides,
        list(args.grid),
        seeds=args.seeds,
        out=args.out,
        device=resolve_device(args.device),
        executor=args.executor,
        workers=default_workers(args.workers),
        address=args.address,
        progress=not args.no_progress,
        debug=args.debug,
        figure_format=args.figure_format,
    )
    return report_and_status(run_dir)
