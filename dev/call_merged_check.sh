#!/usr/bin/env bash
# Integrator's quick device check of the merged main: CUDA op tests, model tests, sidecar tests.
# Run from the device copy's root with .deps and .gpu-data (tinyshakespeare.txt, fixtures/) carried.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
export ARB_SHARED_DIR=$PWD/.gpu-data
bash dev/cuda/gpu_run.sh test 2>&1 | tail -4
ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; echo "test_cuda_model rc=$?"
grep -E "FAIL|PASSED|rel|diff" "$out/test_model.log" | grep -vE "^\[ +OK" | tail -30
timeout 120 build-cuda/tests/test_cuda_sidecars >"$out/test_sc.log" 2>&1; echo "test_cuda_sidecars rc=$?"
tail -4 "$out/test_sc.log"
echo "[t=$SECONDS s]"
