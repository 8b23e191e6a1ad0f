"""Time-to-accuracy of importance sampling vs uniform, scoring overhead included, side by side in one run.

Every method of an ``importance_sampling_*`` experiment trains in this one process, one after another on the same
device (no concurrent runs to share it), through the same path as ``iwlab run``. For each method it
prints the wall-clock seconds (sampling + scoring + training, evaluation excluded) to first reach
uniform's final test error (or perplexity), and the ratio to uniform's time. Below 1 means importance
sampling pays for its scoring.

    python benchmarks/bench_time_to_accuracy.py                         # importance_sampling_mnist quick, CPU
    python benchmarks/bench_time_to_accuracy.py --profile paper --device cuda --seeds 1
    python benchmarks/bench_time_to_accuracy.py --experiment importance_sampling_ptb --set iterations=800

Needs the dataset under IWLAB_DATA (or ~/.cache/iwlab); ``--set fixture=true`` uses generated data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from iwlab.experiments import make_config
from iwlab.experiments.findings import markdown_table
from iwlab.experiments.importance_sampling_summary import time_to_accuracy
from iwlab.provenance import provenance
from iwlab.results import load
from iwlab.runner import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["importance_sampling_mnist", "importance_sampling_cifar10", "importance_sampling_ptb"]
    # the old names (is_mnist, ...) are aliases: get_experiment resolves them
    ap.add_argument("--experiment", default=names[0], choices=[*names, "is_mnist", "is_cifar10", "is_ptb"])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="run directory (default: benchmarks/out/tta-EXPERIMENT-PROFILE)")
    args = ap.parse_args()

    overrides = [f"seeds={args.seeds}", *args.overrides]
    cfg = make_config(args.experiment, args.profile, overrides)
    out = Path(args.out or f"benchmarks/out/tta-{args.experiment}-{args.profile}")
    t0 = time.perf_counter()
    # workers=1: cells run in this process, sequentially, so no two runs share the device
    run_experiment(args.experiment, cfg=cfg, out=out, device=args.device, workers=1, progress=True, report=False)
    wall = time.perf_counter() - t0
    table = time_to_accuracy(load(out), cfg)
    ppl = cfg.METRIC == "perplexity"
    metric = "perplexity" if ppl else "test error (%)"
    target = table.attrs["target"] * (1 if ppl else 100)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\n{args.experiment} {args.profile}: {cfg.iterations} iterations of batch {cfg.batch_size}, "
        f"{args.seeds} seed(s), on {dev}; target = uniform's final {metric} = {target:.3g}"
    )
    print(markdown_table(table, index=False))
    print(f"(benchmark wall time {wall:.0f} s, evaluation included)")
    rec = {
        "experiment": args.experiment,
        "profile": args.profile,
        "overrides": overrides,
        "device": dev,
        "target": target,
        "table": table.to_dict(orient="records"),
        "provenance": provenance(args.device),
    }
    (out / "time_to_accuracy.json").write_text(json.dumps(rec, indent=2, default=str))


if __name__ == "__main__":
    main()
