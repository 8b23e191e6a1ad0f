"""A refactor does not change numbers: run every experiment's ``ci`` profile (and ``synthetic`` quick)
with two source trees and compare the ``iwlab results --format csv`` exports byte for byte.

Each tree runs in its own subprocess with ``PYTHONPATH=TREE/src``, one worker and one torch thread, so
both runs see the same arithmetic. ``--only-run`` writes a tree's exports without comparing (e.g. to
keep a baseline from before a refactor); ``--baseline DIR`` compares the current tree against saved
exports instead of running a second tree.

Usage (the data come from ``IWLAB_DATA``; the real datasets, not fixtures)::

    git worktree add /tmp/before <commit-before>          # or: git archive <commit> | tar -x -C /tmp/before
    IWLAB_DATA=../shared/data python benchmarks/compare_exports.py --before /tmp/before --after .
    IWLAB_DATA=../shared/data python benchmarks/compare_exports.py --after . --only-run --out /tmp/exports
    IWLAB_DATA=../shared/data python benchmarks/compare_exports.py --after . --baseline /tmp/exports/after
    ... --new-metrics agree_gap_ agree_null_ agree_p_     # metrics a change adds: left out of --after only

Before comparing, two things that are not numbers of the experiment are normalized, in both exports:

* wall-clock rows (metrics ``time_scoring``, ``time_training``, ``time_total``, ``seconds``) are left out:
  they differ between any two runs of the same code;
* label columns renamed by the refactor (``l2`` -> ``weight_decay``: the same coupled decay) get their
  new names, and columns are put in one order.

Every other field is compared as text, byte for byte (values as written by the export). Prints one line
per run (equal / differs, with the first differing row) and exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (experiment, profile): every experiment's ci profile, and synthetic quick (it has no ci profile).
# Names are the pre-refactor ones, which stay valid as aliases.
RUNS: list[tuple[str, str]] = [
    ("synthetic", "quick"),
    ("cifar_binary", "ci"),
    ("cifar_resnet", "ci"),
    ("cifar_imbalanced", "ci"),
    ("cifar_label_noise", "ci"),
    ("cifar_cars_trucks", "ci"),
    ("cifar_multiclass", "ci"),
    ("mrpc", "ci"),
    ("is_mnist", "ci"),
    ("is_cifar10", "ci"),
    ("is_ptb", "ci"),
]


def run_tree(tree: Path, out: Path, runs: list[tuple[str, str]]) -> dict[str, Path]:
    """Run each (experiment, profile) with ``tree``'s sources; returns name -> exported CSV."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve() / "src"), "OMP_NUM_THREADS": "1"}
    exports = {}
    out.mkdir(parents=True, exist_ok=True)
    for name, profile in runs:
        key = f"{name}-{profile}"
        run_dir = out / key
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "iwlab.cli", "run", name, "--profile", profile, "--out", str(run_dir)]
        cmd += ["--workers", "1", "--no-progress", "--device", "cpu"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{key}: run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        csv = out / f"{key}.csv"
        cmd = [sys.executable, "-m", "iwlab.cli", "results", str(run_dir), "--format", "csv", "--output", str(csv)]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        exports[key] = csv
        print(f"{key}: ran with {tree} in {time.perf_counter() - t0:.0f} s", flush=True)
    return exports


TIMING = frozenset({"time_scoring", "time_training", "time_total", "seconds"})
RENAMED = {"l2": "weight_decay"}


def normalized(path: Path, drop: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The export's header and rows as text: timing rows (and metrics starting with a ``drop`` prefix) left out,
    renamed columns, one column order."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    header = [RENAMED.get(c, c) for c in rows[0]]
    order = sorted(range(len(header)), key=lambda i: header[i])
    name = header.index("name")
    out = [tuple(header[i] for i in order)]
    out += [tuple(r[i] for i in order) for r in rows[1:] if r[name] not in TIMING and not r[name].startswith(drop)]
    return out


def compare(before: dict[str, Path], after: dict[str, Path], new_metrics: tuple[str, ...] = ()) -> int:
    """Print equal/differs per run; returns how many differ or are missing. Metrics whose names start with a
    ``new_metrics`` prefix (added by the change) are left out of the *after* export only, and counted."""
    bad = 0
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            print(f"{key}: MISSING in {'before' if key not in before else 'after'}")
            bad += 1
            continue
        a, b = normalized(before[key]), normalized(after[key], new_metrics)
        added = len(normalized(after[key])) - len(b)
        if a == b:
            extra = f"; {added} rows of new metrics left out" if added else ""
            print(f"{key}: equal, byte for byte ({len(a) - 1} rows besides timing{extra})")
            continue
        bad += 1
        if len(a) != len(b):
            print(f"{key}: DIFFERS: {len(a) - 1} rows before, {len(b) - 1} after; headers {a[0]} / {b[0]}")
            continue
        i = next(i for i, (u, v) in enumerate(zip(a, b, strict=True)) if u != v)
        print(f"{key}: DIFFERS at row {i}: before {a[i]}, after {b[i]}")
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, help="source tree before the change (holding src/iwlab)")
    p.add_argument("--after", type=Path, default=Path("."), help="source tree after the change (default .)")
    p.add_argument("--baseline", type=Path, help="folder of saved exports NAME-PROFILE.csv to compare against")
    p.add_argument("--only-run", action="store_true", help="run --after and keep the exports; no comparison")
    p.add_argument("--out", type=Path, help="where runs and exports go (default: a temporary folder)")
    p.add_argument("--only", nargs="*", help="experiment names to run (default: all)")
    p.add_argument(
        "--new-metrics", nargs="*", default=[], help="name prefixes of metrics the change adds (left out of --after)"
    )
    args = p.parse_args()
    if "IWLAB_DATA" not in os.environ:
        p.error("set IWLAB_DATA to the folder holding mnist/, cifar10/, ptb/ and mrpc/")
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    out = args.out or Path(tempfile.mkdtemp(prefix="iwlab-exports-"))
    print(f"load average {os.getloadavg()[0]:.2f}; output under {out}", flush=True)
    after = run_tree(args.after, out / "after", runs)
    if args.only_run:
        return 0
    if args.baseline:
        keys = {f"{n}-{pr}" for n, pr in runs}
        before = {p.stem: p for p in args.baseline.glob("*.csv") if p.stem in keys}
    elif args.before:
        before = run_tree(args.before, out / "before", runs)
    else:
        p.error("give --before TREE, --baseline DIR or --only-run")
    return 1 if compare(before, after, tuple(args.new_metrics)) else 0


if __name__ == "__main__":
    sys.exit(main())
