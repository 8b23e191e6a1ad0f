"""``iwlab list``: experiments, their descriptions and profiles."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``list`` subcommand."""
    p = sub.add_parser("list", help="list experiments and their profiles")
    p.set_defaults(command="list")


def main(args: argparse.Namespace) -> int:
    """Print each experiment: its name and description, then its profiles on a line of their own."""
    from iwlab.experiments import EXPERIMENTS, get_experiment

    for name in sorted(EXPERIMENTS):
        exp = get_experiment(name)
        print(f"{name:<18} {exp.DESCRIPTION}")
        print(f"{'':<18} profiles: {', '.join(exp.PROFILES)}")
    return 0
