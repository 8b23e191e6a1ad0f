"""``iwlab`` command line: parse arguments and call library functions, one module per subcommand.

Exit codes: 0 success; 1 a cell failed (or an unexpected internal error); 2 a user error (bad
config, unreadable store or data, ...: one line on stderr, no traceback unless ``--debug``);
130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys

import iwlab
from iwlab.cli import list_cmd, results_cmd, run_cmd, sweep_cmd

SUBCOMMANDS = {"run": run_cmd, "sweep": sweep_cmd, "list": list_cmd, "results": results_cmd}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per subcommand module.

    Example:
        >>> build_parser().parse_args(["list"]).command
        'list'
    """
    parser = argparse.ArgumentParser(prog="iwlab", description="Importance weighting and sampling experiments.")
    parser.add_argument("--version", action="version", version=f"iwlab {iwlab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in SUBCOMMANDS.values():
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iwlab`` console script; user errors print one line and exit 2.

    Example:
        >>> main(["run", "no_such_experiment"])  # a user error: one line on stderr, exit code 2
        2
    """
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return SUBCOMMANDS[args.command].main(args) or 0
    except BrokenPipeError:  # e.g. `iwlab list | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(
            "iwlab: interrupted; finished work is saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, OSError) as e:
        if debug:
            raise
        print(f"iwlab: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line, the traceback on request
        if debug:
            raise
        print(
            f"iwlab: internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
