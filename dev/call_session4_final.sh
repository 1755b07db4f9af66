#!/usr/bin/env bash
# Integrator's final device call of session 4, run from the device copy's root with .deps and
# .gpu-data (tinyshakespeare.txt, fixtures/) carried: every CUDA test (ops, model, sidecars) and
# memcheck, the kernel bench, the model's speed against PyTorch QAT in the same call, the 82M-token
# shakespeare accuracy run, and the sidecar bench against PyTorch bf16 eager.
#   dev/call_session4_final.sh [tests] [kbench] [speed] [accuracy] [scbench] [scmemcheck]   (default: all but scmemcheck)
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
export ARB_SHARED_DIR=$PWD/.gpu-data
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for part in ${*:-tests kbench speed accuracy scbench}; do
  case $part in
    tests)
      bash dev/cuda/gpu_run.sh test memcheck 2>&1 | grep -E "build:|PASSED|FAILED|rc=|ERROR SUMMARY"
      ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; echo "test_cuda_model rc=$?"
      grep -E "PASSED|FAILED" "$out/test_model.log"
      timeout 120 build-cuda/tests/test_cuda_sidecars >"$out/test_sc.log" 2>&1; echo "test_cuda_sidecars rc=$?"
      grep -E "PASSED|FAILED|rel L2" "$out/test_sc.log" | head -12 ;;
    kbench) timeout 120 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log" | tail -n +3 ;;
    speed) bash dev/model/gpu_model.sh speed 2>&1 | grep -E "TRAIN|per 20|QAT_BASELINE|ms/step|profile" ;;
    accuracy) ARB_ACC_MIN=${ARB_ACC_MIN:-2} bash dev/model/gpu_model.sh accuracy shakespeare 2>&1 | tail -3 ;;
    scbench) timeout 200 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench_sc.log" | grep -vE "writing synthetic|Loading weights" ;;
    scmemcheck) timeout $((280 - SECONDS)) compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck_sc.log" 2>&1
          echo "test_cuda_sidecars memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$out/memcheck_sc.log" | head -4 ;;
  esac
  echo "[$part done, t=$SECONDS s]"
done
