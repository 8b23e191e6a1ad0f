"""Importance sampling through a DataLoader, side by side with a plain one, in one process.

On MNIST (``IWLAB_DATA``; ``--fixture`` for generated stand-in data), with the paper's small VGG, Adam
and batch 128 (Katharopoulos & Fleuret 2017, §4.1), three ways to feed the same training step, each
with 0 and 2 workers:

* ``plain``: uniform SGD, ``DataLoader(TensorDataset, batch_size=128, shuffle=True)``;
* ``batch_sampler``: ``ImportanceBatchSampler(ApproxSampler(...))`` (the LSTM predictor scores a pool of
  3 x 128 by index; the workers fetch the drawn items) with ``update`` every step;
* ``pool``: the pool pattern, ``OracleSampler.select`` on 3 x 128 pool batches of a plain shuffled
  ``DataLoader`` (a forward pass scores the pool: the oracle's price).

The configurations take turns: ``--rounds`` rounds, each timing ``--iterations`` steps of every one after
a warm-up (its iterator stays alive across rounds, so worker start-up is paid once), so a change in the
machine's load hits all alike; the median steps/s over rounds is reported with its ratio to the plain
DataLoader with the same number of workers. The load average is printed before and after.

    IWLAB_DATA=/path/to/data python benchmarks/bench_dataloader.py
    IWLAB_DATA=/path/to/data python benchmarks/bench_dataloader.py --staleness   # what prefetching costs
    python benchmarks/bench_dataloader.py --fixture --iterations 3 --rounds 1    # smoke test

``--staleness`` instead trains an MLP with the approx sampler (k = 1) for ``--steps`` steps through real
DataLoaders whose prefetch makes each batch 0 (no workers), 4 (2 workers x prefetch 2, the default) or
32 (2 x 16) updates stale, over ``--seeds`` seeds, and prints the test error and the training loss,
mean ± std over seeds (the std is the spread of the seeds, not a confidence interval).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from iwlab.experiments import make_config
from iwlab.models import MLP
from iwlab.provenance import provenance
from iwlab.sampling import ApproxSampler, ImportanceBatchSampler, IndexedDataset, OracleSampler

B, PRESAMPLE = 128, 3


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def _data(fixture: bool, n_train: int) -> Any:
    # n_train / n_test = 0: every example
    cfg = make_config("importance_sampling_mnist", "paper", {"fixture": fixture, "n_train": n_train, "n_test": 0})
    exp = importlib.import_module("iwlab.experiments.importance_sampling_mnist")
    return exp, cfg, exp.load_data(cfg)


class Runner:
    """One configuration: a model, its optimizer and a live iterator that yields ready (x, y, weights, after)."""

    def __init__(self, kind: str, workers: int, exp: Any, data: Any, seed: int = 0) -> None:
        self.kind, self.workers = kind, workers
        ds = TensorDataset(data.x_train, data.y_train)
        torch.manual_seed(seed)
        self.model = exp.make_model(data, torch.Generator().manual_seed(seed))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        kw = {"num_workers": workers, "persistent_workers": workers > 0}
        if kind == "plain":
            self.loader = DataLoader(ds, batch_size=B, shuffle=True, **kw)
        elif kind == "batch_sampler":
            self.bs = ImportanceBatchSampler(ApproxSampler(ds, batch_size=B, presample=PRESAMPLE, seed=seed))
            self.loader = self.bs.loader(**kw)
        else:
            self.sampler = OracleSampler(ds, batch_size=B, presample=PRESAMPLE, seed=seed)
            self.loader = DataLoader(IndexedDataset(ds), batch_size=B * PRESAMPLE, shuffle=True, **kw)
        self.it = iter(self.loader)

    def _next(self) -> Any:
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def step(self) -> None:
        got = self._next()
        if self.kind == "plain":
            (x, y), w = got, None
        elif self.kind == "batch_sampler":
            (x, y), w = got.data, got.weights
        else:
            pool, idx = got

            def score(xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(self.model(xp), yp, reduction="none")

            b = self.sampler.select(pool, indices=idx, score_fn=score)
            (x, y), w = b.data, b.weights
        losses = F.cross_entropy(self.model(x), y, reduction="none")  # (B,)
        (losses if w is None else w * losses).mean().backward()
        self.opt.step()
        self.opt.zero_grad()
        if self.kind == "batch_sampler":
            self.bs.update(got.indices, losses.detach())


def speed(args: argparse.Namespace) -> dict[str, Any]:
    print(f"load average {_load()}")
    if args.fixture:
        print("generated stand-in data (96 examples, fewer than a batch): a smoke test, not a measurement")
    exp, cfg, data = _data(args.fixture, args.n_train)
    runners = [Runner(k, w, exp, data) for w in (0, 2) for k in ("plain", "batch_sampler", "pool")]
    for r in runners:
        for _ in range(args.warmup):
            r.step()
    times: dict[tuple[str, int], list[float]] = {(r.kind, r.workers): [] for r in runners}
    for _ in range(args.rounds):
        for r in runners:
            t0 = time.perf_counter()
            for _ in range(args.iterations):
                r.step()
            times[(r.kind, r.workers)].append(args.iterations / (time.perf_counter() - t0))
    rows = []
    print(
        f"\nMNIST {len(data.y_train)} examples, small VGG, Adam, batch {B}, pool {PRESAMPLE} x {B}; "
        f"median steps/s of {args.rounds} rounds x {args.iterations} steps"
    )
    print(f"{'loader':<15}{'workers':>8}{'steps/s':>10}{'vs plain':>10}")
    for (kind, w), v in times.items():
        sps = statistics.median(v)
        ratio = sps / statistics.median(times[("plain", w)])
        rows.append({"loader": kind, "workers": w, "steps_per_s": sps, "ratio_to_plain": ratio})
        print(f"{kind:<15}{w:>8}{sps:>10.2f}{ratio:>10.3f}")
    print(f"load average after {_load()}")
    return {"speed": rows}


def staleness(args: argparse.Namespace) -> dict[str, Any]:
    print(f"load average {_load()}")
    if args.fixture or args.steps < 100:
        print(
            "generated data or few steps: a smoke test (with fewer steps than the prefetch, staleness changes nothing)"
        )
    _, _, data = _data(args.fixture, args.n_train)
    ds = TensorDataset(data.x_train, data.y_train)
    settings = {
        0: {"num_workers": 0},
        4: {"num_workers": 2, "prefetch_factor": 2},
        32: {"num_workers": 2, "prefetch_factor": 16},
    }
    rows = []
    for stale, kw in settings.items():
        errs, losses = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            # the package's MLP (784-256-10), initialized from the seed, behind a flatten of the images
            model = nn.Sequential(nn.Flatten(), MLP(784, (256,), 10, generator=torch.Generator().manual_seed(seed)))
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            bs = ImportanceBatchSampler(
                ApproxSampler(ds, batch_size=B, presample=PRESAMPLE, seed=seed), num_batches=args.steps
            )
            for b in bs.loader(**kw):
                x, y = b.data
                loss = F.cross_entropy(model(x), y, reduction="none")
                (b.weights * loss).mean().backward()
                opt.step()
                opt.zero_grad()
                bs.update(b.indices, loss.detach())
            with torch.no_grad():
                errs.append(float((model(data.x_test).argmax(1) != data.y_test).float().mean()))
                losses.append(float(F.cross_entropy(model(data.x_train[:10_000]), data.y_train[:10_000])))
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        rows.append({"stale_updates": stale, **kw, "test_error": errs, "train_loss": losses})
        print(
            f"staleness {stale:>2} ({kw}): test error {100 * statistics.mean(errs):.2f} ± {100 * sd(errs):.2f} %, "
            f"train loss {statistics.mean(losses):.4f} ± {sd(losses):.4f} (mean ± std over {args.seeds} seeds)"
        )
    print(f"load average after {_load()}")
    return {"staleness": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", action="store_true", help="generated stand-in data (no IWLAB_DATA needed)")
    ap.add_argument("--n-train", type=int, default=0, help="training examples (default 0: all)")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--staleness", action="store_true", help="measure what prefetch staleness costs instead")
    ap.add_argument("--steps", type=int, default=500, help="--staleness: training steps per run")
    ap.add_argument("--seeds", type=int, default=3, help="--staleness: seeds per setting")
    ap.add_argument("--json", default=None, help="also write the results and provenance here")
    args = ap.parse_args()
    out = staleness(args) if args.staleness else speed(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**out, "args": vars(args), "provenance": provenance("cpu")}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
