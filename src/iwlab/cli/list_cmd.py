"""``iwlab list``: experiments, their descriptions and profiles."""

from __future__ import annotations

import argparse

from iwlab.experiments import EXPERIMENTS, get_experiment


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``list`` subcommand."""
    p = sub.add_parser("list", help="list experiments and their profiles")
    p.set_defaults(command="list")


def main(args: argparse.Namespace) -> int:
    """Print each experiment: its name and description, then its profiles (and old names) on lines of their own."""
    width = max(18, *(len(n) for n in EXPERIMENTS))
    for name in sorted(EXPERIMENTS):
        exp = get_experiment(name)
        print(f"{name:<{width}} {exp.description}")
        print(f"{'':<{width}} profiles: {', '.join(exp.profiles)}")
        if exp.aliases:
            print(f"{'':<{width}} also: {', '.join(exp.aliases)}")
    return 0
