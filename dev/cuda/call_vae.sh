#!/usr/bin/env bash
# One device call for the VAE implicit-GEMM conv work (run from the device copy's root with the
# branch mirrored in .wt-vae and the fixtures in .gpu-data/fixtures): build, the sidecar test (if it
# fails, again with ARB_SIDECAR_CONV_PERSIST=0, which then stays set for the rest of the call), a
# per-part profile (eager, no PyTorch), A/B runs of our own times, then the real bench.
#   bash .wt-vae/dev/cuda/call_vae.sh [test] [prof] [profold] [abold] [abforce] [abgn] [abbn256] [abfma] [abnp] [bench] [memcheck]
# profold / abold: ARB_SIDECAR_CONV_IGEMM=0 (every conv through im2col + cuBLASLt, the previous
# path); abforce: ARB_SIDECAR_CONV_IGEMM=1 (the implicit-GEMM conv on every grid, batch 1 too);
# abgn: ARB_SIDECAR_GN_FUSED=0 (GroupNorm statistics from their own pass); abbn256:
# ARB_SIDECAR_CONV_BN=256 (256-channel blocks); abnp: ARB_SIDECAR_CONV_PERSIST=0 (one tile per
# block); abfma: ARB_SIDECAR_CONV_FMA=1 (quantize with
# one fused multiply-add: not the CPU's rounding, a measurement only).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
arb_device_build .wt-vae arbitor_cli test_cuda_sidecars || exit 1
echo "build: $((SECONDS - t0)) s"
rc=0
for w in ${*:-test prof bench}; do
  case $w in
    test) timeout 100 build-cuda/tests/test_cuda_sidecars 2>&1 | tee "$out/test.log" | grep -vE "^\s*$" | grep -vE "item [0-9]+ alone" | tail -45
          r=${PIPESTATUS[0]}; echo "test_cuda_sidecars rc=$r [t=$SECONDS s]"
          if [ $r != 0 ]; then rc=1; export ARB_SIDECAR_CONV_PERSIST=0 # fall back for the rest of the call
            timeout 100 build-cuda/tests/test_cuda_sidecars >"$out/test-np.log" 2>&1; r=$?
            grep -E "PASSED|FAILED|ERROR|implicit" "$out/test-np.log" | head; echo "test_cuda_sidecars ARB_SIDECAR_CONV_PERSIST=0 rc=$r [t=$SECONDS s]"; fi ;;
    prof|profold) v=; [ $w = profold ] && v=ARB_SIDECAR_CONV_IGEMM=0
          env $v ARB_SIDECAR_PROFILE=1 timeout 60 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/$w.log" 2>&1
          echo "== $w ${v:-default}:"; grep -E "^profile|CUDA int8" "$out/$w.log"; echo "[t=$SECONDS s]" ;;
    abold|abforce|abgn|abbn256|abfma|abnp) v=ARB_SIDECAR_CONV_IGEMM=0; [ $w = abforce ] && v=ARB_SIDECAR_CONV_IGEMM=1
          [ $w = abgn ] && v=ARB_SIDECAR_GN_FUSED=0; [ $w = abbn256 ] && v=ARB_SIDECAR_CONV_BN=256; [ $w = abfma ] && v=ARB_SIDECAR_CONV_FMA=1
          [ $w = abnp ] && v=ARB_SIDECAR_CONV_PERSIST=0
          env $v timeout 45 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/$w.log" 2>&1
          echo "== $v:"; grep -E "CUDA int8" "$out/$w.log"; echo "[t=$SECONDS s]" ;;
    bench) timeout 150 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench.log" | grep -vE "writing synthetic"
          [ ${PIPESTATUS[0]} = 0 ] || rc=1; echo "[t=$SECONDS s]" ;;
    memcheck) timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck.log" 2>&1
          r=$?; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$out/memcheck.log" | head -8; echo "memcheck rc=$r [t=$SECONDS s]" ;;
  esac
done
exit $rc
