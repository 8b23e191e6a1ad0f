"""Many-model CNN training throughput: a plain per-model loop against :class:`EnsembleTrainer`'s func backend.

The workload is one cell of Byrd & Lipton's (2019) Fig. 4 grid: their CNN (:class:`~iwlab.models.ByrdLiptonCNN`,
one logit), batch 16, weighted logistic loss (class weights 2^-8 .. 2^8 on class 1, times seeds), plain SGD; an
epoch is 625 steps (10,000 images). Random images, so only the speed is measured. Ways, in one process:

* ``plain loop``: one model as a user writes it: ``nn.Module``, ``torch.optim.SGD``, a shuffled index loop,
  :func:`~iwlab.functional.weighted_binary_cross_entropy`, backward, step (float32). Its s/epoch is per model;
  sequential training of M models takes M times as long.
* ``ensemble``: ``EnsembleTrainer(..., batch_size=16, backend="func", **options).fit(...)`` at each M, for each
  combination of the step options (:mod:`iwlab.train.precision`): ``fp32`` (today's step), ``tf32``, ``bf16``,
  ``+cl`` (``channels_last``), ``+grouped`` (``conv_impl="grouped"``), ``+compile``.

Each way trains a short epoch of ``--steps`` steps first (warm-up; with ``compile`` it compiles, reported as
"first epoch"), then ``--epochs`` more such epochs are timed (CUDA synchronised) and the time per step is
extrapolated to 625 steps. Printed per row: s/epoch (of all M models), model-epochs/s, the ratio to sequential
plain training (model-epochs/s over the plain loop's), the projected hours of the full grid (153 models x 1000
epochs, in packs of M one after another) and peak memory (``torch.cuda.max_memory_allocated`` on CUDA; the
process's peak RSS so far on a CPU, which only grows). The header prints versions and the load average.

``--device cpu`` runs a reduced size (width 1/4, 16x16 images, M = 4 and 17, 16-step epochs; printed) in about
1-3 minutes on 2 cores; ``--device cuda`` the paper's size (width 1, 32x32, M = 17, 51, 153) in about 4 minutes
on an H200 (``--budget`` skips what would run past it, and says so). ``compile`` variants run at the largest M
only (``--compile-M``), their compile time being minutes.

Usage:
    python benchmarks/bench_ensemble_cnn.py --device cpu
    python benchmarks/bench_ensemble_cnn.py --device cuda --json out/bench_cnn.json
    python benchmarks/bench_ensemble_cnn.py --device cuda --M 153 --variants fp32,bf16+cl+grouped
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import time

import torch

from iwlab.functional import weighted_binary_cross_entropy
from iwlab.models import ByrdLiptonCNN
from iwlab.train import EnsembleTrainer, Member

BATCH, EPOCH_STEPS, GRID_MODELS, GRID_EPOCHS, LR = 16, 625, 153, 1000, 0.01
WEIGHTS = [2.0**k for k in range(-8, 9)]  # the paper's 17 weights
VARIANTS = {  # name -> EnsembleTrainer options
    "fp32": {},
    "tf32": {"precision": "tf32"},
    "bf16": {"precision": "bf16"},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
    "bf16+cl+grouped": {"precision": "bf16", "channels_last": True, "conv_impl": "grouped"},
    "fp32+cl+grouped": {"channels_last": True, "conv_impl": "grouped"},
    "bf16+cl+compile": {"precision": "bf16", "channels_last": True, "compile": True},
    "bf16+cl+grouped+compile": {"precision": "bf16", "channels_last": True, "conv_impl": "grouped", "compile": True},
}
SIZES = {  # device -> (width, image size, M values, steps per timed epoch, timed epochs, budget s)
    "cuda": (1.0, 32, (17, 51, 153), 10, 2, 210.0),
    "cpu": (0.25, 16, (4, 17), 16, 2, 150.0),
}
_CACHE: dict[tuple, torch.nn.Module] = {}  # built models by (width, size, seed): each M reuses the larger's


def model_fn(width: float, size: int):
    def build(g: torch.Generator) -> torch.nn.Module:
        key = (width, size, g.initial_seed())
        if key not in _CACHE:  # building 153 full-width CNNs on the CPU takes seconds; stacking copies them
            _CACHE[key] = ByrdLiptonCNN(width=width, image_size=size, generator=g)
        return _CACHE[key]

    return build


def members(M: int) -> list[Member]:
    """The first M of weights x seeds (seed-major: 17 weights of seed 0, then seed 1, ...)."""
    n_seeds = math.ceil(M / len(WEIGHTS))
    grid = [Member(seed=s, class_weight=(1.0, w), lr=LR) for s in range(n_seeds) for w in WEIGHTS]
    return grid[:M]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> float:
    """GiB: the CUDA peak since the last reset, or the process's peak RSS (Linux: KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def random_data(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)  # (N, 3, H, W) like scaled pixels
    return x.to(device), torch.randint(0, 2, (n,), generator=g).to(device)


def bench_plain(width: float, size: int, steps: int, epochs: int, device: torch.device) -> dict:
    """One model, the way a user writes it; seconds per step over ``epochs`` x ``steps`` after one warm-up epoch."""
    g = torch.Generator().manual_seed(0)
    model = ByrdLiptonCNN(width=width, image_size=size, generator=g).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    cw = torch.tensor([1.0, 0.25], device=device)
    x, y = random_data(steps * BATCH, size, device)
    reset_memory(device)

    def epoch() -> None:
        perm = torch.randperm(x.shape[0], generator=g).to(device)
        for s in range(steps):
            idx = perm[s * BATCH : (s + 1) * BATCH]
            z = model(x[idx]).squeeze(-1)
            loss = weighted_binary_cross_entropy(z, y[idx], class_weight=cw, validate=False)
            opt.zero_grad()
            loss.backward()
            opt.step()

    t0 = time.perf_counter()
    epoch()
    sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    sync(device)
    per_step = (time.perf_counter() - t0) / (epochs * steps)
    return {"M": 1, "first_epoch_s": first, "s_per_step": per_step, "peak_gib": peak_memory(device)}


def bench_ensemble(M: int, opts: dict, width: float, size: int, steps: int, epochs: int, device: torch.device) -> dict:
    """``M`` CNNs as one ensemble; seconds per step of all M over ``epochs`` x ``steps`` after one warm-up epoch."""
    x, y = random_data(steps * BATCH, size, device)
    reset_memory(device)
    trainer = EnsembleTrainer(
        model_fn(width, size), members(M), batch_size=BATCH, device=device, backend="func", **opts
    )
    t0 = time.perf_counter()
    trainer.fit(x, y, epochs=1, eval_epochs=[], progress=False)
    sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.fit(x, y, epochs=1 + epochs, eval_epochs=[], progress=False)  # continues the same trainer
    sync(device)
    per_step = (time.perf_counter() - t0) / (epochs * steps)
    finite = int(trainer.finite().sum())
    peak = peak_memory(device)
    del trainer
    reset_memory(device)
    return {"M": M, "first_epoch_s": first, "s_per_step": per_step, "peak_gib": peak, "finite_members": finite}


def _loadavg() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--M", help="comma-separated ensemble sizes (cuda: 17,51,153; cpu: 4,17)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--compile-M", type=int, help="run compile variants at this M only (default: the largest)")
    p.add_argument("--width", type=float, help="channel multiplier (cuda 1.0, cpu 0.25)")
    p.add_argument("--size", type=int, help="image size (cuda 32, cpu 16)")
    p.add_argument("--steps", type=int, help="steps per (short) epoch (cuda 10, cpu 16)")
    p.add_argument("--epochs", type=int, help="timed epochs after the warm-up one (2)")
    p.add_argument("--budget", type=float, help="skip what starts after this many seconds (cuda 210, cpu 150)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    width, size, ms, steps, epochs, budget = SIZES[args.device]
    args.M = [int(m) for m in args.M.split(",")] if args.M else list(ms)
    args.width, args.size = args.width or width, args.size or size
    args.steps, args.epochs, args.budget = args.steps or steps, args.epochs or epochs, args.budget or budget
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
    if min(args.M) < 1 or args.steps < 1 or args.epochs < 1 or args.size % 4:
        p.error("--M, --steps and --epochs must be >= 1 and --size divisible by 4")
    args.compile_M = args.compile_M or max(args.M)
    return args


def derive(row: dict, plain_s_per_step: float) -> dict:
    """Add s/epoch, model-epochs/s, the ratio to sequential plain training and the projected grid hours."""
    if "error" in row:
        return row
    row["s_per_epoch"] = row["s_per_step"] * EPOCH_STEPS
    row["model_epochs_per_s"] = row["M"] / row["s_per_epoch"]
    row["x_sequential"] = row["model_epochs_per_s"] * plain_s_per_step * EPOCH_STEPS
    packs = math.ceil(GRID_MODELS / row["M"])  # the grid in packs of M, one after another (plain: 153 x 1)
    row["grid_hours"] = packs * row["s_per_epoch"] * GRID_EPOCHS / 3600
    return row


def print_table(rows: list[dict], device: torch.device) -> None:
    mem = "peak GiB (CUDA alloc)" if device.type == "cuda" else "peak RSS GiB (process, so far)"
    head = ("way", "M", "variant", "s/epoch", "model-ep/s", "x seq", "grid h", mem, "1st epoch s")
    table = [head]
    for r in sorted(rows, key=lambda r: (r["M"], list(VARIANTS).index(r["variant"]))):
        if "error" in r:
            table.append((r["way"], str(r["M"]), r["variant"], "FAILED", r["error"][:40], "", "", "", ""))
            continue
        table.append(
            (
                r["way"],
                str(r["M"]),
                r["variant"],
                f"{r['s_per_epoch']:.2f}",
                f"{r['model_epochs_per_s']:.2f}",
                f"{r['x_sequential']:.1f}x",
                f"{r['grid_hours']:.2f}",
                f"{r['peak_gib']:.2f}",
                f"{r['first_epoch_s']:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    print()
    for k, row in enumerate(table):
        cells = [f"{c:<{w}}" if i < 3 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path: str | None, args: argparse.Namespace, env: dict, rows: list, skipped: list, done: bool) -> None:
    """The numbers so far (rewritten after every configuration, so a run cut short keeps what it measured)."""
    if not path:
        return
    config = {k: getattr(args, k) for k in ("device", "width", "size", "steps", "epochs", "M", "compile_M")}
    config.update(
        batch=BATCH, lr=LR, epoch_steps_extrapolated=EPOCH_STEPS, variants={v: VARIANTS[v] for v in args.variants}
    )
    config["reduced"] = not (args.width == 1.0 and args.size == 32)
    payload = {"env": env, "config": config, "results": rows, "skipped": skipped, "complete": done}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device visible", file=sys.stderr)
        return 2
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": _loadavg(),
    }
    print(
        f"torch {env['torch']} (CUDA {env['cuda']}), python {env['python']}, {env['threads']} torch threads, "
        f"{env['cpu_count']} CPUs, load average {env['loadavg_start']}" + (f", {env['gpu']}" if env["gpu"] else "")
    )
    paper = args.width == 1.0 and args.size == 32
    print(
        f"workload: ByrdLiptonCNN width {args.width:g}, {args.size}x{args.size}, batch {BATCH}, SGD lr {LR}, "
        f"weighted BCE; epochs of {args.steps} steps (1 warm-up + {args.epochs} timed) extrapolated to "
        f"{EPOCH_STEPS} steps = 10,000 images; M = {args.M}; compile variants at M = {args.compile_M}"
        + ("" if paper else " [REDUCED from the paper's width 1, 32x32, M = 17, 51, 153]"),
        flush=True,
    )
    start = time.perf_counter()
    plain = bench_plain(args.width, args.size, args.steps, args.epochs, device)
    plain.update(way="plain loop (1 model)", variant="fp32")
    rows, skipped = [derive(plain, plain["s_per_step"])], []
    print(f"  plain loop: {plain['s_per_epoch']:.2f} s/epoch per model", flush=True)
    # the largest M first (the target), compile variants last (minutes of compiling) and at one M only
    plan = [(M, v) for M in sorted(args.M, reverse=True) for v in args.variants if not VARIANTS[v].get("compile")]
    plan += [(args.compile_M, v) for v in args.variants if VARIANTS[v].get("compile")]
    for M, name in plan:
        if time.perf_counter() - start > args.budget:
            skipped.append(f"M={M} {name}")
            continue
        try:
            r = bench_ensemble(M, VARIANTS[name], args.width, args.size, args.steps, args.epochs, device)
            r.update(way="ensemble", variant=name)
            print(f"  M={M} {name}: {derive(r, plain['s_per_step'])['s_per_epoch']:.2f} s/epoch", flush=True)
        except Exception as err:  # e.g. out of memory, or compile unsupported: report and go on
            msg = (str(err).strip().splitlines() or [""])[0][:160]
            print(f"  M={M} {name}: FAILED {type(err).__name__}: {msg}", flush=True)
            r = {"way": "ensemble", "variant": name, "M": M, "error": f"{type(err).__name__}: {msg}"}
            reset_memory(device)
        rows.append(r)
        write_json(args.json, args, env, rows, skipped, done=False)
    env["loadavg_end"] = _loadavg()
    print_table(rows, device)
    print(
        f"\nx seq: model-epochs/s over sequential plain training ({plain['s_per_epoch']:.2f} s/epoch per model); "
        f"grid h: {GRID_MODELS} models x {GRID_EPOCHS} epochs in packs of M"
        + (f"; skipped past the {args.budget:g} s budget: {', '.join(skipped)}" if skipped else "")
    )
    print(f"load average at the end: {env['loadavg_end']}; wall {time.perf_counter() - start:.0f} s")
    write_json(args.json, args, env, rows, skipped, done=True)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
