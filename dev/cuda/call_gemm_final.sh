#!/usr/bin/env bash
# Session 3 `gemm` branch: the final device call, run from the device copy's root (main) with the
# branch mirrored in .wt-gemm and the data in .gpu-data. Required checks first (CUDA tests,
# compute-sanitizer, the bench, the model test), then same-call comparisons with the previous
# defaults (register-only GEMM epilogue: ARB_CUDA_GEMM_TMASTORE=0; update rule in the dW GEMM's
# epilogue: ARB_CUDA_UPD=fused) and the tests with the register-only epilogue.
# Kept as run at commit 0d11c4e (log: results/v14-final-h100.log). Since then the half-tile store
# epilogue is the default only for float outputs (forward, dX), no longer for int32.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
cp -r .deps .wt-gemm/ && mkdir -p .wt-gemm/data && cp .gpu-data/tinyshakespeare.txt .wt-gemm/data/
cd .wt-gemm
ARB_TEST_TIMEOUT=60 ARB_MEMCHECK_TIMEOUT=90 bash dev/cuda/gpu_run.sh test memcheck bench 2>&1 | tee "$out/final-cuda.log" | grep -vE "^\[ +(RUN|OK) +\]"
echo "[t=$SECONDS s]"
bash dev/model/gpu_model.sh test 2>&1 | tee "$out/final-model.log" | tail -6
echo "[t=$SECONDS s]"
echo "== full bench with ARB_CUDA_GEMM_TMASTORE=0 (register-only GEMM epilogue, same call)"
ARB_CUDA_GEMM_TMASTORE=0 timeout 60 build-cuda/arbitor bench kernels --device cuda 2>&1 | tail -n +3 | tee "$out/bench-ts0.log"
echo "== 16384x2048x2048, ARB_CUDA_UPD=fused (same call)"
ARB_CUDA_UPD=fused timeout 30 build-cuda/arbitor bench kernels --device cuda --shape 16384x2048x2048 2>&1 | tail -n 1
echo "[t=$SECONDS s]"
bash dev/cuda/gpu_run.sh testts0 2>&1 | tail -2
echo "[t=$SECONDS s]"
if [ $SECONDS -lt 150 ]; then bash dev/cuda/gpu_run.sh prof 2>&1 | tail -16; fi
echo "[t=$SECONDS s]"
