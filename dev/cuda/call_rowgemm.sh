#!/usr/bin/env bash
# One device call for DINOv2's row GEMMs (sc_rowgemm.cu), run from the device copy's root with
# .deps and .gpu-data carried: build, the sidecar test, our times with the row GEMMs on and off
# (no PyTorch), the eager per-part profile, the real bench against PyTorch, memcheck.
#   bash dev/cuda/call_rowgemm.sh [test] [ab] [drv] [ncu] [prof] [bench] [memcheck]
# drv: dev/cuda/vae_drv.c on the synthetic DINOv2 (batches DRV_B, default 1 32; ARB_SIDECAR_ROWGEMM masks DRV_MASKS); ncu: one layer's 4 row GEMMs at b32.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
arb_device_build . arbitor_cli test_cuda_sidecars || exit 1
(cd build-cuda && gcc -O2 -std=c17 -I../include -I../src -c ../dev/cuda/vae_drv.c -o vae_drv.o &&
  sed -e 's#@CMakeFiles/arbitor_cli.dir/objects1[^ ]*#vae_drv.o#' -e 's# -o arbitor # -o vae_drv #' \
    CMakeFiles/arbitor_cli.dir/link.txt >vae_drv_link.sh && bash vae_drv_link.sh) >"$out/drv.log" 2>&1 ||
  { tail -5 "$out/drv.log"; }
drv=build-cuda/vae_drv; dd=/tmp/arbitor-sidecars/dinov2
echo "build: $((SECONDS - t0)) s"
rc=0
for w in ${*:-test ab}; do
  case $w in
    test) timeout 120 build-cuda/tests/test_cuda_sidecars 2>&1 | tee "$out/test.log" | grep -E "differ|rel|PASSED|FAILED|ERROR|error" | tail -40
          r=${PIPESTATUS[0]}; echo "test_cuda_sidecars rc=$r [t=$SECONDS s]"; [ $r = 0 ] || rc=1 ;;
    ab) for v in 0 1 0 1; do
          ARB_SIDECAR_ROWGEMM=$v timeout 60 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/ab$v.log" 2>&1
          echo "== ARB_SIDECAR_ROWGEMM=$v:"; grep -E "CUDA int8" "$out/ab$v.log" | grep -i dino
        done; echo "[t=$SECONDS s]" ;;
    drv) for b in ${DRV_B:-1 32}; do for v in ${DRV_MASKS:-0 15 0 15}; do echo -n "ROWGEMM=$v "; ARB_SIDECAR_ROWGEMM=$v timeout 60 $drv $b 20 $dd 2>&1 | tail -1; done; done
         echo "[t=$SECONDS s]" ;;
    ncu) timeout 200 ncu --kernel-name regex:k_rowgemm --launch-skip 96 --launch-count 4 --section SpeedOfLight \
           --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats $drv 32 2 $dd >"$out/ncu.log" 2>&1
         echo "ncu rc=$?"; grep -E "k_rowgemm|Duration|Throughput|Stall|L2 Hit|Registers|Warp Cycles|Issued" "$out/ncu.log" | head -80
         echo "[t=$SECONDS s]" ;;
    prof) ARB_SIDECAR_PROFILE=1 timeout 60 build-cuda/arbitor bench sidecars --device cuda --no-torch >"$out/prof.log" 2>&1
          grep -E "^profile|CUDA int8" "$out/prof.log" | head -12; echo "[t=$SECONDS s]" ;;
    bench) timeout 200 build-cuda/arbitor bench sidecars --device cuda 2>&1 | tee "$out/bench.log" | grep -vE "writing synthetic|Loading weights"
          [ ${PIPESTATUS[0]} = 0 ] || rc=1; echo "[t=$SECONDS s]" ;;
    memcheck) timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/test_cuda_sidecars >"$out/memcheck.log" 2>&1
          r=$?; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$out/memcheck.log" | head -8; echo "memcheck rc=$r [t=$SECONDS s]" ;;
  esac
done
exit $rc
