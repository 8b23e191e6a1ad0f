"""Throughput of many-model training: a plain per-model loop against :class:`EnsembleTrainer`.

The workload is the synthetic grid of Byrd & Lipton (2019): ``make_separable(512, seed=0)``
(N = 1024 points in 2-D), batch size 8 (128 steps per epoch), lr = ``1 / sigma_max(X)``, class
weights 1, 1/2, ..., 1/256 on class 1, times 9 seeds: M = 81 models. It is trained in one run
several ways and reported as *model-steps per second* = (models x SGD steps) / seconds:

* ``plain loop``: what a user would write: for each model an ``nn.Module``
  (``MLP(2, (64,), 1)`` or logistic regression ``MLP(2, (), 1)``), ``torch.optim.SGD``, a shuffled
  index loop over minibatches, ``weighted_binary_cross_entropy`` with the class weight, backward,
  step. Only ``--plain-models`` models (default 3, spread over the grid) are timed; the per-model
  step rate is the same for every model, so the throughput extrapolates to all M.
* ``ensemble eager``: ``EnsembleTrainer(model_fn, members, batch_size=8).fit(...)``.
* ``ensemble compiled``: the same with ``compile=True``. A 1-epoch fit on a throwaway trainer
  compiles first; its time is reported separately ("compile") and excluded from the throughput.
* ``... P procs x 1 thr``: the M members split into P parts trained at the same time by P spawned
  processes, each with ``torch.set_num_threads(1)``; throughput = all model-steps / wall time
  (first start to last end, the processes synchronised by a barrier before each timed fit).

The plain loop is slow, so it runs fewer epochs (``--plain-epochs``) than the ensemble
(``--epochs``); every method does the same work *per step*, so the step rates compare directly.
Other processes may share the CPU, so every measurement is repeated (``--repeats``) and the best
(fastest) repetition is reported.

Usage:
    python benchmarks/bench_ensemble.py
    python benchmarks/bench_ensemble.py --models mlp --epochs 20 --json bench.json
    python benchmarks/bench_ensemble.py --no-compile --no-procs
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback

import torch

from iwlab.data.synthetic import make_separable, sigma_max_lr
from iwlab.functional import weighted_binary_cross_entropy
from iwlab.models import MLP
from iwlab.train import EnsembleTrainer, Member

MODELS: dict[str, tuple[int, ...]] = {"mlp": (64,), "logreg": ()}
MODEL_NAMES = {"mlp": "MLP", "logreg": "logistic regression"}
REFERENCE = 745_000.0
REFERENCE_TEXT = "a whole run inside one compiled scan, one single-threaded process per core"
N_PER_CLASS, DATA_SEED, BATCH_SIZE = 512, 0, 8


# ----------------------------------------------------------------------------------------------
# Workload


def make_data():
    X, y = make_separable(N_PER_CLASS, seed=DATA_SEED)
    return X, y, sigma_max_lr(X)


def make_members(M: int, lr: float) -> list[Member]:
    """Class weights 2**-k (k = 0..8) on class 1 x seeds 0, 1, ...; the first M of the grid."""
    weights = [2.0**-k for k in range(9)]
    n_seeds = math.ceil(M / len(weights))
    grid = [Member(seed=s, class_weight=(1.0, w), lr=lr, labels={"weight": w}) for w in weights for s in range(n_seeds)]
    return grid[:M]


def model_fn(kind: str):
    hidden = MODELS[kind]

    def build(g: torch.Generator) -> MLP:
        return MLP(2, hidden, 1, generator=g)

    return build


def steps_per_epoch(n: int) -> int:
    return math.ceil(n / BATCH_SIZE)


# ----------------------------------------------------------------------------------------------
# Way 1: the plain per-model loop


def train_plain(kind: str, member: Member, X, y, epochs: int) -> torch.nn.Module:
    """One model, the way a user would write it (same random protocol as the ensemble)."""
    g = torch.Generator().manual_seed(member.seed)
    model = model_fn(kind)(g)
    opt = torch.optim.SGD(model.parameters(), lr=member.lr)
    cw = torch.tensor(member.class_weight, dtype=X.dtype)
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, BATCH_SIZE):
            idx = perm[s : s + BATCH_SIZE]
            xb, yb = X[idx], y[idx]
            loss = weighted_binary_cross_entropy(model(xb).squeeze(-1), yb, class_weight=cw, validate=False)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def best_of(fn, repeats: int, budget: float) -> tuple[float, int]:
    """Fastest of up to ``repeats`` calls of ``fn`` (which returns seconds).

    Stops early once the calls took ``budget`` seconds in all (a loaded machine).
    """
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        times.append(fn())
        if time.perf_counter() - start > budget:
            break
    return min(times), len(times)


def bench_plain(
    kind: str,
    members: list[Member],
    X,
    y,
    epochs: int,
    n_models: int,
    repeats: int,
    budget: float = math.inf,
):
    picks = sorted({round(i * (len(members) - 1) / max(n_models - 1, 1)) for i in range(n_models)})
    picks = picks[:n_models]
    steps = len(picks) * epochs * steps_per_epoch(X.shape[0])
    trained: list[torch.nn.Module] = []

    def once() -> float:
        t0 = time.perf_counter()
        models = [train_plain(kind, members[i], X, y, epochs) for i in picks]
        seconds = time.perf_counter() - t0
        if not trained:
            trained.extend(models)
        return seconds

    best, done = best_of(once, repeats, budget)
    # sanity check: the same work as the ensemble, member for member
    ens = EnsembleTrainer(model_fn(kind), [members[i] for i in picks], batch_size=BATCH_SIZE)
    ens.fit(X, y, epochs=epochs, eval_epochs=[], progress=False)
    diff = 0.0
    for j, model in enumerate(trained):
        ref = ens.member_module(j)
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            diff = max(diff, float((p.detach() - q.detach()).abs().max()))
    return {
        "seconds": best,
        "repeats": done,
        "model_steps": steps,
        "rate": steps / best,
        "models_timed": len(picks),
        "epochs": epochs,
        "max_param_diff_vs_ensemble": diff,
    }


# ----------------------------------------------------------------------------------------------
# Way 2: the ensemble trainer, in this process


def _fit_seconds(kind: str, members: list[Member], X, y, epochs: int, compile: bool) -> float:
    trainer = EnsembleTrainer(model_fn(kind), members, batch_size=BATCH_SIZE, compile=compile)
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=epochs, eval_epochs=[], progress=False)
    return time.perf_counter() - t0


def warm_up_compile(kind: str, members: list[Member], X, y) -> float:
    """Compile time: a 1-epoch fit on a throwaway compiled trainer (compile + one epoch)."""
    return _fit_seconds(kind, members, X, y, 1, compile=True)


def bench_ensemble(
    kind: str,
    members: list[Member],
    X,
    y,
    epochs: int,
    compile: bool,
    repeats: int,
    budget: float = math.inf,
):
    out = {}
    if compile:
        out["compile_seconds"] = warm_up_compile(kind, members, X, y)
    best, done = best_of(lambda: _fit_seconds(kind, members, X, y, epochs, compile), repeats, budget)
    steps = len(members) * epochs * steps_per_epoch(X.shape[0])
    out.update(seconds=best, repeats=done, model_steps=steps, rate=steps / best, epochs=epochs)
    return out


# ----------------------------------------------------------------------------------------------
# Way 2b: the ensemble split over P single-threaded processes


def _proc_worker(rank: int, cfg: dict, barrier, queue) -> None:
    try:
        torch.set_num_threads(1)
        X, y, lr = make_data()
        members = make_members(cfg["M"], lr)
        P = cfg["procs"]
        mine = members[rank::P]  # every P-th member: each part spans all class weights
        res: dict = {}
        for kind in cfg["models"]:
            for compile in cfg["variants"]:
                key = f"{kind}/{'compiled' if compile else 'eager'}"
                r = {"members": len(mine), "spans": []}
                if compile:
                    barrier.wait(timeout=900)
                    r["compile_seconds"] = warm_up_compile(kind, mine, X, y)
                for _ in range(cfg["repeats"]):
                    trainer = EnsembleTrainer(model_fn(kind), mine, batch_size=BATCH_SIZE, compile=compile)
                    barrier.wait(timeout=900)
                    t0 = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
                    trainer.fit(X, y, epochs=cfg["epochs"], eval_epochs=[], progress=False)
                    r["spans"].append((t0, time.monotonic()))
                res[key] = r
        queue.put((rank, res, None))
    except BaseException:
        barrier.abort()
        queue.put((rank, None, traceback.format_exc()))


def bench_procs(models: list[str], M: int, epochs: int, compile: bool, procs: int, repeats: int):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    cfg = {
        "models": models,
        "M": M,
        "epochs": epochs,
        "procs": procs,
        "repeats": repeats,
        "variants": [False, True] if compile else [False],
    }
    workers = [ctx.Process(target=_proc_worker, args=(r, cfg, barrier, queue)) for r in range(procs)]
    for w in workers:
        w.start()
    results, errors = {}, []
    for _ in workers:
        rank, res, err = queue.get()
        if err is not None:
            errors.append(f"process {rank}:\n{err}")
        else:
            results[rank] = res
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError("a benchmark process failed:\n" + "\n".join(errors))
    n_steps = steps_per_epoch(2 * N_PER_CLASS)
    out = {}
    for key in results[0]:
        parts = [results[r][key] for r in range(procs)]
        walls = [max(p["spans"][i][1] for p in parts) - min(p["spans"][i][0] for p in parts) for i in range(repeats)]
        steps = sum(p["members"] for p in parts) * epochs * n_steps
        best = min(walls)
        out[key] = {
            "seconds": best,
            "repeats": repeats,
            "model_steps": steps,
            "rate": steps / best,
            "epochs": epochs,
            "procs": procs,
            "members_per_proc": [p["members"] for p in parts],
        }
        if "compile_seconds" in parts[0]:
            out[key]["compile_seconds"] = max(p["compile_seconds"] for p in parts)
    return out


# ----------------------------------------------------------------------------------------------
# Report


def fmt_rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f}M"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k"
    return f"{r:.0f}"


def _loadavg() -> str | None:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (AttributeError, OSError):
        return None


def print_table(rows: list[dict]) -> None:
    head = ("model", "method", "model-steps/s", "x plain", "epochs", "best s", "rep", "notes")
    table = [head]
    for r in rows:
        table.append(
            (
                r["model"],
                r["method"],
                fmt_rate(r["rate"]),
                f"{r['ratio']:.1f}x" if r["ratio"] is not None else "-",
                str(r["epochs"]),
                f"{r['seconds']:.3f}",
                str(r["repeats"]),
                r.get("notes", ""),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    align = ["<", "<", ">", ">", ">", ">", ">", "<"]
    for k, row in enumerate(table):
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="mlp,logreg", help="comma-separated: mlp, logreg")
    p.add_argument("--M", type=int, default=81, help="number of models (default 81 = 9 x 9)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per ensemble fit (default 10)")
    p.add_argument("--plain-epochs", type=int, default=2, help="epochs of the plain loop (2)")
    p.add_argument("--plain-models", type=int, default=3, help="models timed in the plain loop")
    p.add_argument("--repeats", type=int, default=3, help="repetitions; the best is reported")
    p.add_argument(
        "--budget",
        type=float,
        default=6.0,
        help="stop repeating a measurement once its repetitions took this many seconds (6)",
    )
    p.add_argument("--procs", type=int, default=2, help="processes of the multi-process variant")
    p.add_argument("--threads", type=int, default=None, help="torch threads in this process")
    p.add_argument("--no-compile", action="store_true", help="skip the compile=True variants")
    p.add_argument("--no-procs", action="store_true", help="skip the multi-process variants")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    for name in ("M", "epochs", "plain_epochs", "plain_models", "repeats", "procs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.procs > args.M:
        p.error("--procs must not exceed --M")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }
    X, y, lr = make_data()
    members = make_members(args.M, lr)
    spe = steps_per_epoch(X.shape[0])
    print(
        f"torch {env['torch']}, python {env['python']}, {threads} torch threads, "
        f"{env['cpu_count']} CPUs (affinity {env['affinity']}), "
        f"load average {env['loadavg_start']} (other processes slow every method down)"
    )
    print(
        f"workload: make_separable({N_PER_CLASS}, seed={DATA_SEED}) N={X.shape[0]}, "
        f"batch {BATCH_SIZE} ({spe} steps/epoch), lr={lr:.4f}, M={len(members)} models "
        f"(weights 1..1/256 x seeds); best of {args.repeats} (fewer once a measurement "
        f"passes {args.budget:g} s; see 'rep')"
    )
    print(
        f"epochs: plain loop {args.plain_epochs} ({args.plain_models} models timed), "
        f"ensemble {args.epochs}; throughput is per step, so the epoch counts may differ; "
        f"'x plain' is relative to the faster plain-loop row\n",
        flush=True,
    )

    rows: list[dict] = []
    plain_rate: dict[str, float] = {}
    for kind in args.models:
        # the plain loop with this process's threads and with 1 thread (tiny ops gain nothing
        # from a second thread, and under CPU contention OpenMP threads can slow it badly)
        for th in sorted({threads, 1}, reverse=True):
            torch.set_num_threads(th)
            try:
                t = bench_plain(
                    kind,
                    members,
                    X,
                    y,
                    args.plain_epochs,
                    args.plain_models,
                    args.repeats,
                    args.budget,
                )
            finally:
                torch.set_num_threads(threads)
            plain_rate[kind] = max(plain_rate.get(kind, 0.0), t["rate"])
            est = len(members) * args.epochs * spe / t["rate"]
            diff = t["max_param_diff_vs_ensemble"]
            rows.append(
                {
                    "model": kind,
                    "method": f"plain loop, nn.Module + SGD ({th} thr)",
                    **t,
                    "threads": th,
                    "notes": f"{t['models_timed']} models timed; all {len(members)} x "
                    f"{args.epochs} ep ~ {est:.0f} s; max|dparam| vs ensemble {diff:.1e}",
                }
            )
            rate = fmt_rate(t["rate"])
            print(f"  {kind}: plain loop ({th} thr) {rate} model-steps/s", flush=True)
        for compile in [False] if args.no_compile else [False, True]:
            t = bench_ensemble(kind, members, X, y, args.epochs, compile, args.repeats, args.budget)
            name = "compiled" if compile else "eager"
            rows.append(
                {
                    "model": kind,
                    "method": f"ensemble {name} ({threads} thr)",
                    **t,
                    "notes": f"compile {t['compile_seconds']:.1f} s (excluded)" if compile else "",
                }
            )
            print(f"  {kind}: ensemble {name} {fmt_rate(t['rate'])} model-steps/s", flush=True)

    if not args.no_procs:
        print(f"  {args.procs} processes x 1 thread ...", flush=True)
        res = bench_procs(args.models, len(members), args.epochs, not args.no_compile, args.procs, args.repeats)
        for key, t in res.items():
            kind, name = key.split("/")
            notes = f"members/proc {t['members_per_proc']}"
            if "compile_seconds" in t:
                notes += f"; compile {t['compile_seconds']:.1f} s (excluded)"
            row = {
                "model": kind,
                "method": f"ensemble {name}, {args.procs} procs x 1 thr",
                **t,
                "notes": notes,
            }
            # keep the rows grouped by model
            last = max(i for i, r in enumerate(rows) if r["model"] == kind)
            rows.insert(last + 1, row)

    for r in rows:
        r["ratio"] = r["rate"] / plain_rate[r["model"]]

    print()
    print_table(rows)
    print()
    summary = {}
    for kind in args.models:
        ens = [r for r in rows if r["model"] == kind and r["method"].startswith("ensemble")]
        best = max(ens, key=lambda r: r["rate"])
        frac = best["rate"] / REFERENCE
        summary[kind] = {"method": best["method"], "rate": best["rate"], "of_reference": frac}
        print(
            f"best {MODEL_NAMES[kind]}: {fmt_rate(best['rate'])} model-steps/s "
            f"({best['method']}) = {frac:.2f}x of the {REFERENCE / 1e3:.0f}k reference "
            f"({best['ratio']:.0f}x the plain loop)"
        )
    print(f'reference ({REFERENCE / 1e3:.0f}k model-steps/s): "{REFERENCE_TEXT}" (design doc)')
    env["loadavg_end"] = _loadavg()
    print(f"load average at the end: {env['loadavg_end']}")

    if args.json:
        payload = {
            "env": env,
            "config": {
                "n_per_class": N_PER_CLASS,
                "data_seed": DATA_SEED,
                "batch_size": BATCH_SIZE,
                "lr": lr,
                "M": len(members),
                "epochs": args.epochs,
                "plain_epochs": args.plain_epochs,
                "plain_models": args.plain_models,
                "repeats": args.repeats,
                "budget_seconds": args.budget,
                "procs": None if args.no_procs else args.procs,
                "compile": not args.no_compile,
                "models": args.models,
            },
            "reference": {"rate": REFERENCE, "what": REFERENCE_TEXT},
            "results": rows,
            "best": summary,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
