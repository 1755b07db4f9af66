#!/usr/bin/env bash
# (Kept as run. After the session the fused GEMM (ARB_SIDECAR_FUSED*), PDL (ARB_SIDECAR_PDL) and the
# 8-warp attention (ARB_SIDECAR_ATT_NW) were removed as measured slower; those modes now time the default.)
# One device call for the batch-32 sidecar work (branch scb; run from the device copy's root with
# the branch mirrored in .wt-scb and the fixtures in .gpu-data/fixtures): build, the sidecar test,
# a per-kernel profile (eager, no PyTorch), A/B runs with the previous kernels, the real bench.
#   bash .wt-scb/dev/cuda/call_scb.sh [safe|test] [prof] [fusedlog] [new] [abold] [abold4] [abpdl] [abf16]
#        [abfused] [abfe] [abforce] [bench] [memcheck]
# abold: our own times (no PyTorch) with ARB_SIDECAR_FUSED=0 ARB_SIDECAR_FE_STREAMS=1 (cuBLASLt +
# row kernels, per-item TF32 GEMMs one after another: the session-3 path); abfused / abfe: one of
# the two switched back. Logs land in $OUT.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
arb_device_build .wt-scb arbitor_cli test_cuda_sidecars || exit 1
echo "build: $((SECONDS - t0)) s"
rc=0
nt() { timeout 45 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/$1.log" 2>&1; grep -E "CUDA int8 (dinov2|moonshine)" "$out/$1.log"; echo "[t=$SECONDS s]"; }
# safe: if the test fails with the defaults, it is rerun with the newest switches off (the fp16
# front end, then also k_rowe); the first passing set is exported for every later step and printed.
for w in ${*:-test prof bench}; do
  case $w in
    safe) timeout 100 build-cuda/tests/test_cuda_sidecars >"$out/test.log" 2>&1; r=$?
          grep -vE "^\s*$" "$out/test.log" | grep -vE "^\[ +(RUN|OK) " | tail -34; echo "test_cuda_sidecars (defaults) rc=$r [t=$SECONDS s]"
          if [ $r != 0 ]; then
            for fb in "ARB_SIDECAR_FE_F16=0" "ARB_SIDECAR_FE_F16=0 ARB_SIDECAR_ROW_ELEM=0"; do
              env $fb timeout 100 build-cuda/tests/test_cuda_sidecars >"$out/test-fb.log" 2>&1; r=$?
              grep -E "FAILED|ERROR|differ|moonshine-tiny cuda" "$out/test-fb.log" | head -12
              echo "test_cuda_sidecars ($fb) rc=$r [t=$SECONDS s]"
              if [ $r = 0 ]; then export $fb; echo "FALLBACK: $fb for every later step"; break; fi
            done
            [ $r = 0 ] || rc=1
          fi ;;
    abpdl) echo "== ARB_SIDECAR_PDL=1:"; ARB_SIDECAR_PDL=1 nt abpdl ;;
    abf16) echo "== ARB_SIDECAR_FE_F16=0 (TF32 front end):"; ARB_SIDECAR_FE_F16=0 nt abf16 ;;
    abold4) echo "== session-3 path (FUSED=0 FE_STREAMS=1 FE_F16=0 PDL=0 ATT_NW=4 ROW_ELEM=0):"
          ARB_SIDECAR_FUSED=0 ARB_SIDECAR_FE_STREAMS=1 ARB_SIDECAR_FE_F16=0 ARB_SIDECAR_PDL=0 ARB_SIDECAR_ATT_NW=4 ARB_SIDECAR_ROW_ELEM=0 nt abold4 ;;
    test) timeout 100 build-cuda/tests/test_cuda_sidecars 2>&1 | tee "$out/test.log" | grep -vE "^\s*$" | grep -vE "^\[ +(RUN|OK) " | tail -30
          r=${PIPESTATUS[0]}; echo "test_cuda_sidecars rc=$r [t=$SECONDS s]"; [ $r = 0 ] || rc=1 ;;
    prof) ARB_SIDECAR_PROFILE=1 timeout 60 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/prof.log" 2>&1
          grep -E "^profile (dinov2|moonshine)" "$out/prof.log"; echo "[t=$SECONDS s]" ;;
    abold) echo "== ARB_SIDECAR_FUSED=0 ARB_SIDECAR_FE_STREAMS=1 (session-3 path):"; ARB_SIDECAR_FUSED=0 ARB_SIDECAR_FE_STREAMS=1 nt abold ;;
    abfused) echo "== ARB_SIDECAR_FUSED=0:"; ARB_SIDECAR_FUSED=0 nt abfused ;;
    abfe) echo "== ARB_SIDECAR_FE_STREAMS=1:"; ARB_SIDECAR_FE_STREAMS=1 nt abfe ;;
    new) echo "== default (new kernels), no PyTorch:"; nt new ;;
    fusedlog) echo "== default with ARB_SIDECAR_FUSED_LOG=1 (per-shape timing: fused vs cuBLASLt + row):"
          ARB_SIDECAR_FUSED_LOG=1 nt fusedlog; grep -E "^(fused|attention|row rows)" "$out/fusedlog.log" | head -60 ;;
    abforce) echo "== ARB_SIDECAR_FUSED=1 (fused wherever it fits):"; ARB_SIDECAR_FUSED=1 nt abforce ;;
    bench) timeout 150 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench.log" | grep -vE "writing synthetic|Loading weights"
          [ ${PIPESTATUS[0]} = 0 ] || rc=1; echo "[t=$SECONDS s]" ;;
    memcheck) timeout 50 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck.log" 2>&1
          r=$?; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$out/memcheck.log" | head -8; echo "memcheck rc=$r [t=$SECONDS s]" ;;
  esac
done
exit $rc
