#!/usr/bin/env bash
# One device call for the sidecar speed work (run from the device copy's root with the branch
# mirrored in .wt-scfast and the fixtures in .gpu-data/fixtures): build, the sidecar test, a
# per-kernel profile (eager, no PyTorch), then the real bench against PyTorch.
#   bash .wt-scfast/dev/cuda/call_scfast.sh [test] [testold] [prof] [bench] [abrow] [abconv] [abatt] [memcheck]
# testold: the test with the previous kernels (shared-memory row kernel, one-row conv tile, WMMA
# attention); ab*: our own times (no PyTorch) with one of them switched back, for A/B in one call.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
arb_device_build .wt-scfast arbitor_cli test_cuda_sidecars || exit 1
echo "build: $((SECONDS - t0)) s"
rc=0
for w in ${*:-test prof bench}; do
  case $w in
    test) timeout 90 build-cuda/tests/test_cuda_sidecars 2>&1 | tee "$out/test.log" | grep -vE "^\s*$" | tail -40
          r=${PIPESTATUS[0]}; echo "test_cuda_sidecars rc=$r [t=$SECONDS s]"; [ $r = 0 ] || rc=1 ;;
    testold) ARB_SIDECAR_ROW_SMEM=1 ARB_SIDECAR_CONV_TILE1=1 ARB_SIDECAR_ATT_WMMA=1 timeout 60 build-cuda/tests/test_cuda_sidecars >"$out/test-old.log" 2>&1
          r=$?; grep -E "item 0 alone|PASSED|FAILED|ERROR" "$out/test-old.log" | head -12; echo "test_cuda_sidecars (previous kernels) rc=$r [t=$SECONDS s]" ;;
    abrow|abconv|abatt) v=ARB_SIDECAR_ROW_SMEM; [ $w = abconv ] && v=ARB_SIDECAR_CONV_TILE1; [ $w = abatt ] && v=ARB_SIDECAR_ATT_WMMA
          env $v=1 timeout 40 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/$w.log" 2>&1
          echo "== $v=1:"; grep -E "CUDA int8" "$out/$w.log"; echo "[t=$SECONDS s]" ;;
    prof) ARB_SIDECAR_PROFILE=1 timeout 60 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/prof.log" 2>&1
          grep -E "^profile|CUDA int8" "$out/prof.log"; echo "[t=$SECONDS s]" ;;
    bench) timeout 150 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench.log" | grep -vE "writing synthetic"
          [ ${PIPESTATUS[0]} = 0 ] || rc=1; echo "[t=$SECONDS s]" ;;
    memcheck) timeout 45 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck.log" 2>&1
          r=$?; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$out/memcheck.log" | head -8; echo "memcheck rc=$r [t=$SECONDS s]" ;;
  esac
done
exit $rc
