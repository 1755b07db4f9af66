#!/usr/bin/env bash
# Integrator's final device call of session 3, run from the device copy's root with .deps and
# .gpu-data (tinyshakespeare.txt, fixtures/) carried: every CUDA test (ops, model, sidecars) and
# memcheck, the kernel bench, the model's speed against PyTorch QAT in the same call, the 82M-token
# shakespeare accuracy run, and the sidecar bench against PyTorch bf16 eager.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
export ARB_SHARED_DIR=$PWD/.gpu-data
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
bash dev/cuda/gpu_run.sh test memcheck 2>&1 | grep -E "build:|PASSED|FAILED|rc=|ERROR SUMMARY" ; echo "[t=$SECONDS s]"
ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; echo "test_cuda_model rc=$?"
grep -E "PASSED|FAILED" "$out/test_model.log"
timeout 120 build-cuda/tests/test_cuda_sidecars >"$out/test_sc.log" 2>&1; echo "test_cuda_sidecars rc=$?"
grep -E "PASSED|FAILED|rel L2" "$out/test_sc.log" | head -12; echo "[t=$SECONDS s]"
timeout 120 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log" | tail -n +3; echo "[t=$SECONDS s]"
bash dev/model/gpu_model.sh speed 2>&1 | grep -E "TRAIN|per 20|QAT_BASELINE|ms/step|profile"; echo "[t=$SECONDS s]"
ARB_ACC_MIN=${ARB_ACC_MIN:-2} bash dev/model/gpu_model.sh accuracy shakespeare 2>&1 | tail -3; echo "[t=$SECONDS s]"
timeout 200 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench_sc.log" | grep -vE "writing synthetic"; echo "[t=$SECONDS s]"
