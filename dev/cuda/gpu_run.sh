#!/usr/bin/env bash
# One device call: build with CUDA on the GPU machine (no Debian -dev packages there: the carried
# .deps from scripts/carry-deps.sh), then the CUDA tests, the bench, and compute-sanitizer.
#   dev/cuda/gpu_run.sh [test] [bench] [quick] [memcheck] [ctest]   (default: test bench memcheck)
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
rc=0
for w in $what; do
  case $w in
    test) timeout 200 build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test.log" | tail -25; r=${PIPESTATUS[0]}; echo "test_cuda_ops rc=$r"; [ $r = 0 ] || rc=1 ;;
    testmma) ARB_CUDA_GEMM=mma timeout 200 build-cuda/tests/test_cuda_ops 2>&1 | tee "$out/test-mma.log" | tail -3; r=${PIPESTATUS[0]}; echo "test_cuda_ops (mma.sync path) rc=$r"; [ $r = 0 ] || rc=1 ;;
    benchmma) ARB_CUDA_GEMM=mma timeout 300 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench-mma.log" ;;
    ncu) timeout 300 ncu -k regex:k_gemm_wg --launch-skip 30 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats build-cuda/arbitor bench kernels --device cuda >"$out/ncu.log" 2>&1
      grep -vE "^ *-+ *$|^\s*$" "$out/ncu.log" | grep -A400 "k_gemm_wg" | grep -E "Duration|Throughput|Pipe|Busy|Stall|Warp Cycles|Issued|L2 |Shared|Bank|Registers|Theoretical|Achieved|Eligible|Hit" | head -60 ;;
    prof) timeout 300 ncu --metrics gpu__time_duration.sum build-cuda/arbitor bench kernels --device cuda --shape ${ARB_PROF_SHAPE:-16384x2048x2048} >"$out/prof.log" 2>&1
      python3 dev/cuda/prof_summary.py "$out/prof.log" | head -30 ;;
    ctest) (cd build-cuda && timeout 300 ctest -j8 --output-on-failure 2>&1 | tail -25) ;;
    bench) timeout 300 build-cuda/arbitor bench kernels --device cuda 2>&1 | tee "$out/bench.log"; [ ${PIPESTATUS[0]} = 0 ] || rc=1 ;;
    quick) timeout 120 build-cuda/arbitor bench kernels --device cuda --quick 2>&1 | tee "$out/bench-quick.log" ;;
    memcheck) timeout 280 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
      r=$?; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid|error" "$out/memcheck.log" | head -12; echo "memcheck rc=$r"; [ $r = 0 ] || rc=1 ;;
  esac
done
exit $rc
