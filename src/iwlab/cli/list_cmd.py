"""``iwlab list``: experiments and their profiles."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``list`` subcommand."""
    p = sub.add_parser("list", help="list experiments and their profiles")
    p.set_defaults(command="list")


def main(args: argparse.Namespace) -> int:
    """Print one line per experiment."""
    from iwlab.experiments import EXPERIMENTS, get_experiment

    for name in sorted(EXPERIMENTS):
        exp = get_experiment(name)
        print(f"{name:<18} profiles: {', '.join(exp.PROFILES):<14} {exp.DESCRIPTION}")
    return 0
