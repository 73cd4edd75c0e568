#!/usr/bin/env bash
# The one prepared GPU run (issue: speed, GPU path). On a lent machine, from the repo root, with
# the PyAV wheel carried in .whl/ (`make gpu-wheels` here first):
#   bash benchmarks/gpu_check.sh            # results in $OUT (or ./work_dirs/bench_gpu)
# Installs the carried wheels into /tmp/site (the machine has no registry), then runs
# bench_gpu.py on ViT-B (env, peak, model, decode, e2e), ViT-S's model rows, and the feature
# extraction's windows/s with 0..W decode workers.
set -uo pipefail
out=${OUT:-work_dirs/bench_gpu}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,memory.used --format=csv \
  >"$out/nvidia-smi.csv" 2>&1
workers=$(( $(nproc) - 1 ))
timeout 420 python3 benchmarks/bench_gpu.py --model base --json "$out/gpu_base.json" \
  --nominal-tflops 989 --workers "4,8,$workers" --videos 16 --repeat 8 2>&1 | tee "$out/gpu_base.log"
timeout 60 python3 benchmarks/bench_gpu.py --model small --sections model \
  --json "$out/gpu_small.json" --nominal-tflops 989 2>&1 | tee "$out/gpu_small.log"
# feature extraction: can W decode processes keep a GPU busy (ViT-B bf16, 16 windows/forward)?
timeout 60 python3 benchmarks/bench_extract.py --model base --device cuda --batch-size 16 \
  --videos 8 --workers "0,4,$workers" --json "$out/extract_base.json" 2>&1 | tee "$out/extract.log"
