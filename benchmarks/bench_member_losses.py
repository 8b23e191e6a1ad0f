"""What per-member losses cost in the ensemble trainer's full-batch gradient descent, side by side in one process.

Two tables, load average first (the machine is shared):

1. microseconds per full-batch GD step of ``EnsembleTrainer(batch_size=None)`` for M bias-free linear models in
   float64 on N points: every member on cross-entropy (the hand-written fast path), every member on the
   exponential loss, half and half (two loss groups, slices), and every member on the binary logit-adjusted loss
   (the closed form of :mod:`iwlab.train.member_losses`);
2. microseconds per ``d loss / d logits`` call for the binary poly, LDAM, LA and VS losses: the closed forms the
   trainer uses against autograd through the functional losses (the reference the tests compare them with), and
   their ratio.

Usage:
    python benchmarks/bench_member_losses.py [--members 24] [--n 48] [--steps 20000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member
from iwlab.train import member_losses as ml


def _step_cost(losses: list[str], kwargs: dict, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    members = [Member(seed=i, lr=0.5, loss=loss, loss_kwargs=kwargs.get(loss, {})) for i, loss in enumerate(losses)]
    trainer = EnsembleTrainer(
        lambda g: MLP(x.shape[1], (), 1, generator=g, bias=False).double(),
        members,
        batch_size=None,
        steps_per_epoch=steps,
    )
    trainer.fit(x, y, epochs=1, progress=False)  # warm-up epoch
    t0 = time.perf_counter()
    trainer.fit(x, y, epochs=2, progress=False)
    return (time.perf_counter() - t0) / steps * 1e6


def _call_cost(fn, args: tuple, calls: int) -> float:
    for _ in range(max(20, calls // 20)):
        fn(*args)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=24)
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"load average {os.getloadavg()}; torch {torch.__version__}; {a.threads} thread(s)")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n, 2, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    M, half = a.members, a.members // 2
    counts = {"class_counts": [40, 8]}
    print(f"\n1. full-batch GD step, M={M} linear models, N={a.n} (us per step)")
    base = None
    for label, losses in (
        ("cross-entropy (fast path)", ["ce"] * M),
        ("exponential", ["exponential"] * M),
        ("half ce, half exponential", ["ce"] * half + ["exponential"] * (M - half)),
        ("logit-adjusted (closed form)", ["logit_adjusted"] * M),
    ):
        us = _step_cost(losses, {"logit_adjusted": counts}, x, y, a.steps)
        base = base or us
        print(f"  {label:32s} {us:8.1f}   x{us / base:.2f}")
    print(f"\n2. d loss / d logits, binary, (M, N) = ({M}, {a.n}) (us per call)")
    z = torch.randn(M, a.n, 1, generator=g, dtype=torch.float64) * 3
    yy = y.double().expand(M, a.n)
    gw = torch.full((M, a.n), 1.0 / a.n, dtype=torch.float64)
    cases = [
        ("poly logit, alpha 1", "poly", {"alpha": 1.0, "kind": "logit"}),
        ("LDAM", "ldam", {**counts, "scale": 5.0}),
        ("LA", "logit_adjusted", counts),
        ("VS", "vs", counts),
    ]
    for label, loss, kw in cases:
        if loss == "poly":
            closed = ml._poly_binary_grads(torch.full((M,), kw["alpha"], dtype=torch.float64), kw["kind"])
        else:
            params = torch.tensor([ml._adjusted_logistic_params(loss, kw)] * M, dtype=torch.float64)
            closed = ml._adjusted_logistic_grads(params)
        auto = ml._autograd_grads(ml._BINARY[loss], kw, True)
        assert torch.allclose(closed(z, yy, gw), auto(z, yy, gw), rtol=1e-9, atol=1e-15), label  # same numbers
        c, r = _call_cost(closed, (z, yy, gw), a.calls), _call_cost(auto, (z, yy, gw), a.calls)
        print(f"  {label:22s} closed form {c:7.1f}   autograd {r:7.1f}   autograd / closed x{r / c:.1f}")
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
