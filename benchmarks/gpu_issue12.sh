#!/usr/bin/env bash
# Issue 12's GPU acceptance as one prepared script (at most 10 minutes on one H200), in the issue's order;
# each step is cut by its own timeout so the later ones still run. Run from the repository root on the
# device machine, where iwlab is not installed:
#
#   IWLAB_DATA=/path/to/data PYTHONPATH=src bash benchmarks/gpu_issue12.sh "$OUT"
#
# Writes every step's output under the folder given (default ./gpu-issue12).
set -u
out="${1:-gpu-issue12}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-src}"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
uptime > "$out/load.txt"
# 1. per-iteration overhead of every sampler at the MNIST paper settings (target: approx/uniform <= 1.3)
timeout 90 python benchmarks/bench_sampler_overhead.py --device cuda --rounds 5 --iterations 20 \
  --json "$out/overhead_mnist.json" > "$out/overhead_mnist.txt" 2>&1
# 2. time to accuracy at the paper profile (targets: approx k=0.5 <= 0.8x uniform, oracle k=0.5 <= 0.75x)
timeout 200 python benchmarks/bench_time_to_accuracy.py --profile paper --device cuda --seeds 1 \
  --out "$out/tta" > "$out/tta.txt" 2>&1
# 3. the MNIST paper profile, 3 seeds, in parallel workers sharing the GPU; Table 1 beside the paper's
timeout 330 python -m iwlab.cli run importance_sampling_mnist --profile paper --device cuda --workers 6 \
  --set seeds=3 --out "$out/mnist-paper" > "$out/mnist-paper.txt" 2>&1
# 4. per-iteration cost at the CIFAR-10 and PTB paper settings, with the projected full-table time
timeout 60 python benchmarks/bench_sampler_overhead.py --device cuda --experiment importance_sampling_cifar10 \
  --rounds 2 --iterations 10 > "$out/overhead_cifar10.txt" 2>&1
timeout 60 python benchmarks/bench_sampler_overhead.py --device cuda --experiment importance_sampling_ptb \
  --rounds 2 --iterations 10 > "$out/overhead_ptb.txt" 2>&1
tail -n 3 "$out"/*.txt
