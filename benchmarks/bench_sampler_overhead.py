"""Per-iteration cost of every importance sampler next to uniform, side by side in one process.

At an importance-sampling experiment's paper settings (Katharopoulos & Fleuret 2017, §4), by default
``importance_sampling_mnist`` (§4.1): the small VGG, Adam, batch 128, a pool of 3 x 128 examples, the
MNIST training set under ``IWLAB_DATA``. ``--experiment importance_sampling_cifar10`` or ``_ptb`` take
that experiment's paper model and data instead (CIFAR-10's augmentation is left out: it costs every
sampler the same). Each sampler trains through :func:`iwlab.train.sampled.train_sampled`, the loop
``iwlab run`` uses, so an iteration is everything a step costs: drawing, fetching, scoring (the
oracle's forward pass over the pool, the approx predictor's batched call), the training step, and the
sampler's update (the predictor's training step and the history scatter). Evaluation is not counted.

The samplers take turns: ``--rounds`` rounds, each timing ``--iterations`` iterations of every sampler
after a warm-up, so a change in the machine's load hits all of them alike; the median per-iteration time
over rounds is reported. The load average is printed first: the machine may be shared.

    IWLAB_DATA=/path/to/data python benchmarks/bench_sampler_overhead.py              # CPU
    IWLAB_DATA=/path/to/data python benchmarks/bench_sampler_overhead.py --device cuda
    IWLAB_DATA=/path/to/data python benchmarks/bench_sampler_overhead.py --experiment importance_sampling_ptb
    python benchmarks/bench_sampler_overhead.py --fixture --iterations 2 --rounds 1   # generated data, smoke test

It also prints the projected wall time of the experiment's full paper table: per-iteration time x the
profile's iterations x its seeds, summed over the methods (evaluation excluded, runs one after another).
The last line is ``approx/uniform per-iteration time ratio: X`` (approx k = 1).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from iwlab.experiments import make_config
from iwlab.experiments.findings import markdown_table
from iwlab.experiments.importance_sampling_common import sampler_kwargs
from iwlab.provenance import provenance
from iwlab.sampling import SamplerSpec, make_sampler
from iwlab.train.sampled import train_sampled


def _setup(method: str, exp: Any, cfg: Any, data: Any, ds: TensorDataset, device: torch.device) -> tuple:
    spec = SamplerSpec.parse(method)
    torch.manual_seed(0)
    model = exp.make_model(data, torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # the sampler exactly as an experiment cell builds it (pool, smoothing, score floor, rescaling)
    kw = sampler_kwargs(cfg, spec, data.num_classes, seed=0)
    return model, make_sampler(spec.strategy, ds, cfg.batch_size, **kw), opt


def _seconds_per_iteration(model, sampler, opt, iterations: int, device: torch.device) -> tuple[float, float]:
    """(seconds per iteration, scoring share) of ``iterations`` more steps of this run."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    rec = train_sampled(model, sampler, opt, iterations=iterations, steps_per_epoch=iterations)[-1]
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return wall / iterations, rec["time_scoring"] / max(rec["time_total"], 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--iterations", type=int, default=10, help="timed iterations per sampler per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations per sampler before the first round")
    ap.add_argument("--rounds", type=int, default=3)
    names = ["importance_sampling_mnist", "importance_sampling_cifar10", "importance_sampling_ptb"]
    ap.add_argument("--experiment", default=names[0], choices=names, help="whose paper settings, model and data")
    ap.add_argument(
        "--methods", nargs="+", default=None, help="default: the paper profile's methods, plus pcg_k1 if absent"
    )
    ap.add_argument("--fixture", action="store_true", help="generated stand-in data (no IWLAB_DATA needed)")
    ap.add_argument("--json", default=None, help="also write the table and provenance here")
    args = ap.parse_args()
    cfg = make_config(args.experiment, "paper", {"fixture": args.fixture})
    if args.methods is None:
        args.methods = list(dict.fromkeys([*cfg.methods, "pcg_k1"]))
    if "uniform" not in args.methods:
        ap.error("--methods must include uniform (the ratios are to it)")
    if args.rounds < 1 or args.iterations < 1 or args.warmup < 0:
        ap.error("--rounds and --iterations must be >= 1 and --warmup >= 0")

    device = torch.device(args.device)
    load = os.getloadavg()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores; {where}")
    exp = importlib.import_module(f"iwlab.experiments.{args.experiment}")
    data = exp.load_data(cfg)
    ds = TensorDataset(data.x_train.to(device), data.y_train.to(device))
    runs = {m: _setup(m, exp, cfg, data, ds, device) for m in args.methods}
    for run in runs.values() if args.warmup > 0 else ():  # warm-up: first calls, allocator, cuDNN choices
        _seconds_per_iteration(*run, args.warmup, device)
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    shares: dict[str, list[float]] = {m: [] for m in args.methods}
    for r in range(args.rounds):
        for m, run in runs.items():
            t, share = _seconds_per_iteration(*run, args.iterations, device)
            times[m].append(t)
            shares[m].append(share)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    base = statistics.median(times["uniform"])
    rows = [
        {
            "method": SamplerSpec.parse(m).label,
            "ms per iteration (median)": f"{1e3 * statistics.median(times[m]):.1f}",
            "min-max over rounds": f"{1e3 * min(times[m]):.1f}-{1e3 * max(times[m]):.1f}",
            "ratio to uniform": f"{statistics.median(times[m]) / base:.3f}",
            "scoring share": f"{100 * statistics.median(shares[m]):.1f}%",
        }
        for m in args.methods
    ]
    pool = round(cfg.presample * cfg.batch_size) if cfg.presample > 0 else len(ds)
    print(
        f"\n{args.experiment} paper settings: {len(ds)} training examples"
        f"{' (generated stand-in data)' if args.fixture else ''}, batch {cfg.batch_size}, pool {pool}; "
        f"{args.rounds} round(s) of {args.iterations} iterations per sampler"
    )
    print(markdown_table(pd.DataFrame(rows), index=False))
    # the paper profile's own methods (not the benchmark's extras, such as pcg)
    timed = [m for m in cfg.methods if m in times]
    total = sum(statistics.median(times[m]) * cfg.iterations for m in timed) * cfg.seeds
    missing = [m for m in cfg.methods if m not in times]
    print(
        f"projected paper table ({', '.join(timed)} x {cfg.seeds} seeds x {cfg.iterations} iterations, one run at "
        f"a time, evaluation excluded): {total / 3600:.2f} h"
        + (f"; not timed, so left out: {', '.join(missing)}" if missing else "")
    )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        rec = {
            "args": vars(args),
            "device": where,
            "load_average": load,
            "rows": rows,
            "projected_paper_table_hours": total / 3600,
            "provenance": provenance(args.device),
        }
        Path(args.json).write_text(json.dumps(rec, indent=2, default=str))
    if "approx_k1" in times:
        print(f"approx/uniform per-iteration time ratio: {statistics.median(times['approx_k1']) / base:.3f}")


if __name__ == "__main__":
    main()
