"""``iwlab`` command line: parse arguments and call library functions, one module per subcommand."""

from __future__ import annotations

import argparse
import sys

from iwlab.cli import list_cmd, results_cmd, run_cmd, sweep_cmd

SUBCOMMANDS = {"run": run_cmd, "sweep": sweep_cmd, "list": list_cmd, "results": results_cmd}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand module.

    Example:
        >>> build_parser().parse_args(["list"]).command
        'list'
    """
    parser = argparse.ArgumentParser(prog="iwlab", description="Importance weighting and sampling experiments.")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in SUBCOMMANDS.values():
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iwlab`` console script; user errors print one line and exit 2.

    Example:
        >>> # main(["run", "synthetic", "--profile", "quick"])
    """
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].main(args) or 0
    except KeyboardInterrupt:
        print(
            "iwlab: interrupted; finished work is saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        if isinstance(e, ValueError | RuntimeError | FileNotFoundError | ImportError) and not getattr(
            args, "debug", False
        ):
            print(f"iwlab: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
