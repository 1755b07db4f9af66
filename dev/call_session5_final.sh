#!/usr/bin/env bash
# Integrator's final device call of session 5, run from the device copy's root with .deps and
# .gpu-data carried: build everything, the sidecar test and its memcheck, the core and model CUDA
# tests, the kernel bench, the sidecar bench against PyTorch bf16 eager (same run).
#   dev/call_session5_final.sh [sctest] [scmemcheck] [tests] [kbench] [scbench]   (default: all)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/cuda/device_build.sh"
arb_device_build . all || exit 1
echo "build: $((SECONDS - t0)) s"
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
for part in ${*:-sctest scmemcheck tests kbench scbench}; do
  case $part in
    sctest) timeout 120 build-cuda/tests/test_cuda_sidecars >"$out/test_sc.log" 2>&1; echo "test_cuda_sidecars rc=$?"
            grep -E "PASSED|FAILED|GELU|ROWGEMM=15 vs 0 " "$out/test_sc.log" | head -8 ;;
    scmemcheck) timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck_sc.log" 2>&1
            echo "test_cuda_sidecars memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$out/memcheck_sc.log" | head -4 ;;
    tests) timeout 150 build-cuda/tests/test_cuda_ops >"$out/test_ops.log" 2>&1; echo "test_cuda_ops rc=$?"; grep -E "PASSED|FAILED" "$out/test_ops.log"
           ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; echo "test_cuda_model rc=$?"
           grep -E "PASSED|FAILED" "$out/test_model.log" ;;
    kbench) timeout 120 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log" | tail -n +3 ;;
    scbench) timeout 200 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench_sc.log" | grep -vE "writing synthetic|Loading weights" ;;
  esac
  echo "[$part done, t=$SECONDS s]"
done
