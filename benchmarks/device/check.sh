#!/usr/bin/env bash
# The GPU checks of the input pipeline, as ONE device call (run in the repo root there, with
# .whl carried: see wheels.sh). Writes everything to $OUT (or ./device-out):
#   1. the CUDA tests (tests/test_gpu.py: nvJPEG decode, the batch stage on the GPU, training
#      with bf16 / fp16 / compile / the device pipeline on a folder dataset);
#   2. benchmarks/gpu.py: compute-only vs loader-fed images/s at batch 64 and 256 for the
#      reference and device pipelines (4096 generated JPEGs, 4 epochs), then a 2-row suite of
#      the base recipe and its report, per-epoch images/s and loader share from the store.
# BUDGET (seconds, default 420) bounds the benchmark; the tests take about a minute.
#   device run: bash benchmarks/device/check.sh   (carry: [".whl"], timeout_s: 600)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-./device-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 3
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/machine.txt"
python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
python3 benchmarks/gpu.py --budget "${BUDGET:-420}" 2>&1 | tee "$OUT/gpu-benchmark.txt"
