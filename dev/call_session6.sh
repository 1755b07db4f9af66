#!/usr/bin/env bash
# Session 6's device calls (the backward's row pass, v18), run from the device copy's root with
# .deps and .gpu-data carried:
#   dev/call_session6.sh [tests] [memcheck] [ab] [kbench] [speed] [ncu] [ncu2] [ncusrc] [abepi] [sctest]   (default: tests ab kbench)
# tests: test_cuda_ops + test_cuda_model; memcheck: test_cuda_ops under compute-sanitizer;
# ab: the fused backward at both training shapes, row pass against the two-pass order
# (ARB_CUDA_BWD_ROWQ=0), alternating processes, with the per-stage trace; kbench: the full kernel
# bench (BENCH line); speed: model training tokens/s, both orders; sctest: the sidecar test.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/cuda/device_build.sh"
arb_device_build . all || exit 1
echo "build: $((SECONDS - t0)) s"
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
# ab_runs VAR "V1 V2" SHAPES...: --shape bench runs with VAR set to each value in turn, twice,
# alternating processes (the GEMM row and the forward/backward line of each)
ab_runs() {
  local var=$1 vals=$2 shp rep v; shift 2
  for shp in "$@"; do
    for rep in 1 2; do
      for v in $vals; do
        echo "== $shp $var=$v rep $rep"
        env "$var=$v" timeout 60 build-cuda/arbitor bench kernels --device cuda --no-torch --shape $shp 2>&1 | grep -E "forward|TOP/s" | tail -2
      done
    done
  done
}
for part in ${*:-tests ab kbench}; do
  case $part in
    tests) timeout 200 build-cuda/tests/test_cuda_ops >"$out/test_ops.log" 2>&1; echo "test_cuda_ops rc=$?"
           grep -E "PASSED|FAILED|ERROR|LINE" "$out/test_ops.log" | head -12
           ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; echo "test_cuda_model rc=$?"
           grep -E "PASSED|FAILED" "$out/test_model.log" ;;
    memcheck) timeout 280 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
           echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$out/memcheck.log" | head -6 ;;
    ab) for shp in ${ARB_AB_SHAPES:-16384x2048x2048 16384x2048x8192}; do
          ab_runs ARB_CUDA_BWD_ROWQ "0 1" $shp
          for v in 0 1; do
            ARB_CUDA_BWD_ROWQ=$v ARB_CUDA_BWD_TRACE=1 timeout 60 build-cuda/arbitor bench kernels --device cuda --no-torch --shape $shp 2>&1 |
              grep "BWDTRACE fused-deferred" | tail -1 | sed "s/^/ROWQ=$v /"
          done
        done 2>&1 | tee "$out/ab.log" ;;
    kbench) timeout 150 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log" | tail -n +3 ;;
    speed) for v in 1 0; do
             ARB_CUDA_BWD_ROWQ=$v timeout 100 build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt \
               --steps 60 --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed$v 2>&1 | tr '\r' '\n' | tail -1 | sed "s/^/ROWQ=$v /"
           done 2>&1 | tee "$out/speed.log" ;;
    ncu) # the backward's small kernels at 16384x2048x2048 (boost clocks): speed of light, launch,
         # occupancy, warp states; ARB_NCU_KERNELS picks them (a regex)
         # (default: the fused backward's row pass and hqT quantization: 17 dX-only and 17 update-only
         # calls come first in a --shape run)
         timeout 200 ncu --clock-control none -k "regex:${ARB_NCU_KERNELS:-k_bwd_rowq|k_bwd_quant}" \
           --launch-skip ${ARB_NCU_SKIP:-34} --launch-count ${ARB_NCU_COUNT:-2} --section SpeedOfLight --section LaunchStats \
           --section Occupancy --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
           build-cuda/arbitor bench kernels --device cuda --no-torch --shape 16384x2048x2048 >"$out/ncu.txt" 2>&1
         echo "ncu rc=$?"
         grep -E "^  [a-z(].*k_|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Waves Per SM|Grid Size|Block Size|Stall|Warp Cycles Per Issued|Issued Warp|No Eligible|Active Warps|Eligible Warps|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth" "$out/ncu.txt" | head -120
         sed -n '/Section: Warp State Statistics/,/Section:/p' "$out/ncu.txt" | head -60 ;;
    ncu2) # where the fused backward's row pass and the update pass spend their issue slots: source
          # counters (top stall sites, SASS) and instruction mix of one launch each
          for kk in "k_bwd_rowq 17" "k_upd_dense4 5"; do set -- $kk
            timeout 120 ncu --clock-control none -k "regex:$1" --launch-skip $2 --launch-count 1 --section SpeedOfLight \
              --section WarpStateStats --section SourceCounters --section InstructionStats --print-details all \
              build-cuda/arbitor bench kernels --device cuda --no-torch --shape 16384x2048x2048 >"$out/ncu2-$1.txt" 2>&1
            echo "== $1 rc=$?"; grep -E "Duration|Executed Instructions|Issued Instructions|Warp Cycles Per Issued|Stall|stall_|Branch|smsp__pcsamp|Source|0x" "$out/ncu2-$1.txt" | head -60
          done ;;
    ncusrc) # where the ternary GEMM's warps stall, per SASS instruction (ncu source counters): the
            # int32 GEMM at a training shape (3rd k_gemm_ws launch of a --shape run: after 2 warm-ups)
            # and at 8192^3 for comparison
            for shp in ${ARB_SRC_SHAPES:-16384x2048x2048 8192x8192x8192}; do
              timeout 150 ncu --clock-control none -k regex:k_gemm_ws --launch-skip 2 --launch-count 1 \
                --section SourceCounters --page source --print-source sass --csv \
                build-cuda/arbitor bench kernels --device cuda --no-torch --shape $shp >"$out/src-$shp.csv" 2>"$out/src-$shp.err"
              echo "== $shp rc=$?"; python3 dev/cuda/ncu_sass_hot.py "$out/src-$shp.csv" 25 || tail -5 "$out/src-$shp.err"
            done ;;
    abepi) # the GEMM epilogue's whole-block path against the bounds-checked one (ARB_CUDA_EPI_GENERAL=1),
           # alternating processes: GEMM rows and forward/backward lines of --shape runs
           ab_runs ARB_CUDA_EPI_GENERAL "1 0" ${ARB_AB_SHAPES:-16384x2048x2048 16384x2048x8192 8192x8192x8192} 2>&1 |
             tee "$out/abepi.log" ;;
    sctest) timeout 120 build-cuda/tests/test_cuda_sidecars >"$out/test_sc.log" 2>&1; echo "test_cuda_sidecars rc=$?"
            grep -E "PASSED|FAILED" "$out/test_sc.log" | head -4 ;;
  esac
  echo "[$part done, t=$SECONDS s]"
done
