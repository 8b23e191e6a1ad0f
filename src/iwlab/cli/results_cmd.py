"""``iwlab results RUN_DIR [--format csv|parquet] [--output FILE]``: export the metrics."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``results`` subcommand."""
    p = sub.add_parser("results", help="export a run directory's metrics")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--output", "-o", default=None, help="file to write (default: CSV to stdout)")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(command="results")


def main(args: argparse.Namespace) -> int:
    """Write the export."""
    from iwlab.store import export

    text = export(args.run_dir, args.format, args.output)
    if text is not None:
        sys.stdout.write(text)
    return 0
