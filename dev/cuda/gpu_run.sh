#!/usr/bin/env bash
# One device call: build with CUDA on the GPU machine (no Debian -dev packages there: the carried
# .deps from scripts/carry-deps.sh), then the CUDA tests, the bench, and compute-sanitizer.
#   dev/cuda/gpu_run.sh [test] [testts0] [testts1] [testmma] [testws1] [testws2] [testwg] [bench] [quick] [memcheck] [ctest] [prof] [ncu]
#                       [shapes]   (default: test bench memcheck)
# ARB_SHAPES_CORES (default "ws1 wg"), ARB_NCU_SHAPE, ARB_PROF_SHAPE pick what shapes/ncu/prof run;
# ARB_TEST_TIMEOUT / ARB_MEMCHECK_TIMEOUT (150 / 280 s) cap the test and sanitizer steps;
# ARB_CUDA_GEMM_TMASTORE=0|1: the half-tile bulk-tensor-store epilogue never | for every kind and K (default: float
# outputs with K <= 4096); `testts0` / `testts1` run the tests so. ARB_CUDA_UPD=fused: the rule in the dW GEMM's epilogue.
# ARB_CUDA_GEMM=ws (default: clusters per GEMM) | ws1 | ws2 | wg | mma picks the GEMM core; `shapes` times 8192^3 and the
# training shapes on ws1 and wg next to the default (one process per core).
# Logs go to $OUT (the device tool's folder) or /tmp/arb-gpu.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/arb-gpu}
mkdir -p "$out"
what=${*:-test bench memcheck}
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build-cuda -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 ||
  { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-cuda -j16 -- -k >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -20; }
echo "build: $(($(date +%s) - t0)) s"
grep -E "C75[0-9][0-9]|warning" "$out/build.log" | head -5
rc=0
for w in $what; do
  case $w in
    test) timeout ${ARB_TEST_TIMEOUT:-150} build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test.log" | tail -25; r=${PIPESTATUS[0]}; echo "test_cuda_ops rc=$r"; [ $r = 0 ] || rc=1 ;;
    testts0|testts1) ARB_CUDA_GEMM_TMASTORE=${w#testts} timeout 120 build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test-$w.log" | tail -3; r=${PIPESTATUS[0]}; echo "test_cuda_ops (TMASTORE=${w#testts}) rc=$r"; [ $r = 0 ] || rc=1 ;;
    testws1|testws2|testwg) ARB_CUDA_GEMM=${w#test} timeout 120 build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test-${w#test}.log" | tail -3; r=${PIPESTATUS[0]}; echo "test_cuda_ops (${w#test} core) rc=$r"; [ $r = 0 ] || rc=1 ;;
    shapes) for c in ${ARB_SHAPES_CORES:-ws1 wg}; do for sh in 8192x8192x8192 16384x2048x2048; do echo "== $c $sh"; ARB_CUDA_GEMM=$c timeout 60 build-cuda/arbitor bench kernels --device cuda --shape $sh 2>&1 | tail -n +3 | tee -a "$out/shapes.log"; done; done ;;
    testmma) ARB_CUDA_GEMM=mma timeout 200 build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test-mma.log" | tail -3; r=${PIPESTATUS[0]}; echo "test_cuda_ops (mma.sync path) rc=$r"; [ $r = 0 ] || rc=1 ;;
    benchmma) ARB_CUDA_GEMM=mma timeout 300 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench-mma.log" ;;
    ncu) timeout 150 ncu -k regex:k_gemm_w --launch-skip 8 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats build-cuda/arbitor bench kernels --device cuda --shape ${ARB_NCU_SHAPE:-8192x8192x8192} >"$out/ncu.log" 2>&1
      grep -vE "^ *-+ *$|^\s*$" "$out/ncu.log" | grep -A400 "k_gemm_w" | grep -E "Duration|Throughput|Pipe|pipeline|Busy|Warp Cycles|Issued|L2 Hit|Eligible|Grid Size" | head -30 ;;
    ncuupd) timeout 150 ncu --kernel-name-base demangled -k "regex:k_gemm_ws<2, 3" --launch-skip 1 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SourceCounters --section ComputeWorkloadAnalysis --print-details all build-cuda/arbitor bench kernels --device cuda --shape 16384x2048x2048 >"$out/ncu-upd.log" 2>&1
      grep -E "Duration|Stall|stall|Issued|Pipe|Eligible" "$out/ncu-upd.log" | head -30 ;;
    prof) timeout 120 ncu --metrics gpu__time_duration.sum build-cuda/arbitor bench kernels --device cuda --shape ${ARB_PROF_SHAPE:-16384x2048x2048} >"$out/prof.log" 2>&1
      python3 dev/cuda/prof_summary.py "$out/prof.log" | head -30 ;;
    ctest) (cd build-cuda && timeout 300 ctest -j8 --output-on-failure 2>&1 | tail -25) ;;
    bench) timeout 300 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log"; [ ${PIPESTATUS[0]} = 0 ] || rc=1 ;;
    quick) timeout 120 build-cuda/arbitor bench kernels --device cuda --quick 2>&1 | tee "$out/bench-quick.log" ;;
    memcheck) timeout ${ARB_MEMCHECK_TIMEOUT:-280} compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
      r=$?; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid|error" "$out/memcheck.log" | head -12; echo "memcheck rc=$r"; [ $r = 0 ] || rc=1 ;;
  esac
done
exit $rc
