#!/usr/bin/env bash
# Issue 17's GPU acceptance as one prepared script (at most 9 minutes on one H200); each step is cut by its own
# timeout, and a step that fails or times out does not stop the next. Run from the repository root on the device
# machine, where iwlab is not installed:
#
#   IWLAB_DATA=/path/to/data PYTHONPATH=src bash benchmarks/gpu_issue17.sh "$OUT"
#
# Writes every step's output under the folder given (default ./gpu-issue17); steps.txt has each step's exit
# status (124: timed out) and wall time.
set -u
out="${1:-gpu-issue17}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-src}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
uptime > "$out/load.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$out/load.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: run under timeout, log its status and wall time, never fail the script
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc wall=$((SECONDS - t0))s limit=${limit}s" | tee -a "$out/steps.txt"
}

# 1. the many-model CNN step: plain loop vs the ensemble at M = 17, 51, 153, per option (target: M=153 >= 40x
#    sequential, full grid <= 1.5 H200-hours); the benchmark stops starting configurations after 210 s
step bench_cnn 240 python benchmarks/bench_ensemble_cnn.py --device cuda --json "$out/bench_cnn.json"
# 2. the cifar_binary slice profile end to end, data from $IWLAB_DATA (it may stop early: that is fine); run as
#    `python -m iwlab.cli`, like gpu_issue12.sh (the package has no __main__)
step slice 270 python -m iwlab.cli run cifar_binary --profile slice --device cuda --out "$out/slice" --no-progress
tail -n 25 "$out/bench_cnn.txt"
tail -n 5 "$out/slice.txt"
cat "$out/steps.txt"
