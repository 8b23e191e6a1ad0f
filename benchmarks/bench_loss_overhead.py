"""What iwlab's checked, exact weighted losses cost next to torch's own, side by side in one process.

``weighted_cross_entropy`` validates its inputs (with ``validate=True``: labels, weights, overflow,
one device sync) and rescales the weights by exact powers of two so that extreme weights neither
overflow nor underflow. This prints microseconds per forward + backward call for:

* ``F.cross_entropy(reduction="none")`` weighted by hand, ``(w * l).mean()``: the unchecked baseline;
* ``weighted_cross_entropy`` without weights;
* ``weighted_cross_entropy(sample_weight=w)`` with ``validate=False`` (the hot-loop setting) and
  ``validate=True``;

and each one's ratio to the baseline, for a few (B, C). Load average first: the machine is shared.

Usage:
    python benchmarks/bench_loss_overhead.py [--device cpu|cuda] [--calls 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from iwlab.functional.losses import weighted_cross_entropy


def _time(fn, calls: int, device: torch.device) -> float:
    for _ in range(max(20, calls // 20)):  # warm-up
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def _runs(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> dict:
    """The calls to time, as closures over one problem."""
    return {
        "F.cross_entropy, (w * l).mean()": lambda: (w * F.cross_entropy(logits, y, reduction="none")).mean().backward(),
        "weighted_cross_entropy, no weights": lambda: weighted_cross_entropy(logits, y).backward(),
        "  sample_weight, validate=False": lambda: weighted_cross_entropy(
            logits, y, sample_weight=w, validate=False
        ).backward(),
        "  sample_weight, validate=True": lambda: weighted_cross_entropy(logits, y, sample_weight=w).backward(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"load average {os.getloadavg()}, device {dev}, torch {torch.__version__}, threads {args.threads}")
    print(f"{'B':>6} {'C':>6} {'method':<36} {'us/call':>9} {'x baseline':>10}")
    for B, C in ((128, 10), (128, 1000), (4096, 10)):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(B, C, generator=g).to(dev).requires_grad_()
        y = torch.randint(0, C, (B,), generator=g).to(dev)
        w = torch.rand(B, generator=g).to(dev)
        runs = _runs(logits, y, w)
        base = None
        for name, fn in runs.items():
            us = _time(fn, args.calls, dev)
            base = base or us
            print(f"{B:>6} {C:>6} {name:<36} {us:>9.0f} {us / base:>10.2f}")


if __name__ == "__main__":
    main()
