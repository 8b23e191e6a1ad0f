"""``iwlab results RUN_DIR [--format csv|parquet] [--output FILE]``: export the metrics."""

from __future__ import annotations

import argparse
import sys

from iwlab.store import default_parquet_path, export, failure_reason, load_runs


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``results`` subcommand."""
    p = sub.add_parser(
        "results",
        help="export a run directory's metrics",
        description="Export a run's metrics in long form (one row per cell, member, epoch and metric, with "
        "each member's labels as columns). The store is opened read-only.",
    )
    p.add_argument("run_dir", help="a run directory (holding results.db), or the results.db file itself")
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default="csv",
        help="csv (default) or parquet (needs pyarrow: pip install 'iwlab[parquet]')",
    )
    p.add_argument(
        "--output",
        "-o",
        default=None,
        help="file to write (default: CSV to stdout; Parquet to RUN_DIR/results.parquet)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(command="results")


def main(args: argparse.Namespace) -> int:
    """Write the export, then say on stderr how many cells failed (their metrics are missing)."""
    text = export(args.run_dir, args.format, args.output)
    if text is not None:
        sys.stdout.write(text)
    elif args.format == "parquet" and args.output is None:
        print(f"wrote {default_parquet_path(args.run_dir)}", file=sys.stderr)
    runs = load_runs(args.run_dir)
    failed = runs[runs.status == "failed"]
    if len(failed):
        reasons = "; ".join(f"{r.run_id}: {failure_reason(r.error)}" for r in failed.itertuples())
        print(f"iwlab: {len(failed)} of {len(runs)} cells failed (no metrics from them): {reasons}", file=sys.stderr)
    unfinished = runs[runs.status.isin(["pending", "running"])]
    if len(unfinished):
        print(f"iwlab: {len(unfinished)} of {len(runs)} cells are not finished yet", file=sys.stderr)
    return 0
