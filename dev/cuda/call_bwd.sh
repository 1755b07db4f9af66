#!/usr/bin/env bash
# Session 4 `bwd` branch device calls (the pipelined backward, v17), run from the device copy's
# root (main) with the branch mirrored in .wt-bwd and the data in .gpu-data.
#   call_bwd.sh explore : tests, then the backward at both training shapes with the chunk options
#                         (ARB_CUDA_BWD_CHUNKS / _DW; _CTAS existed at 7a85e94), the full bench
#                         (PyTorch columns), the model test, ncu of the int32 GEMM at
#                         16384x2048x2048 (stall reasons), memcheck with the rest.
#   call_bwd.sh trace   : tests, per-stage traces (ARB_CUDA_BWD_TRACE=1) serial and pipelined, the
#                         pipeline's ordering / priority / cap options (ORDER / PRIO / CTAS: code at
#                         a10c5cd, removed since; those variants now run as plain 4-chunk runs).
# Calls 1 and 2 also tried nsys timelines: nsys is not on the GPU machine (steps removed here).
# Logs: results/v17-call1-explore-h100.log, v17-call2-trace-h100.log, v17-final-h100.log.
#   call_bwd.sh final   : test_cuda_ops, compute-sanitizer memcheck, test_cuda_model, the kernel
#                         bench (the required checks), then same-call comparisons.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
mode=${1:-explore}
cp -r .deps .wt-bwd/ && mkdir -p .wt-bwd/data && cp .gpu-data/tinyshakespeare.txt .wt-bwd/data/
export ARB_SHARED_DIR=$PWD/.gpu-data
cd .wt-bwd
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
bash dev/cuda/gpu_run.sh build-only >"$out/build-step.log" 2>&1; head -4 "$out/build-step.log"
echo "[t=$SECONDS s] built"
B=build-cuda/arbitor
variants() { # shape, then the variants (space-separated VAR=value lists, comma between variants)
  local sh=$1; shift
  IFS=, read -ra vs <<<"$*"
  for v in "${vs[@]}"; do
    echo "== $sh $v"
    env $v timeout 30 $B bench kernels --device cuda --shape $sh --no-torch 2>&1 | grep -E "^train|^shape|forward" | sed 's/^/   /'
  done
}
if [ "$mode" = explore ]; then
  timeout 100 build-cuda/tests/test_cuda_ops >"$out/test.log" 2>&1; r=$?
  grep -E "PASSED|FAILED|ERROR|LINE|rel L2|cuda .* cpu" "$out/test.log" | head -12; echo "test_cuda_ops rc=$r"
  echo "[t=$SECONDS s] tests"
  variants 16384x2048x2048 "ARB_CUDA_BWD_CHUNKS=1,ARB_CUDA_BWD_CHUNKS=4,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_DW=whole,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_CTAS=116,ARB_CUDA_BWD_CHUNKS=2,ARB_CUDA_BWD_CHUNKS=8"
  variants 16384x2048x8192 "ARB_CUDA_BWD_CHUNKS=1,ARB_CUDA_BWD_CHUNKS=4,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_DW=whole"
  echo "[t=$SECONDS s] variants"
  timeout 90 $B bench kernels --device cuda >"$out/bench.log" 2>&1; echo "bench rc=$?"
  tail -n +3 "$out/bench.log"
  echo "[t=$SECONDS s] bench"
  ARB_CUDA_SYNC_CHECK=1 timeout 60 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; r=$?
  grep -E "PASSED|FAILED|ERROR" "$out/test_model.log" | head -5; echo "test_cuda_model rc=$r"
  echo "[t=$SECONDS s] model"
  if [ $SECONDS -lt 190 ]; then
    timeout 50 ncu -k regex:k_gemm_w --launch-skip 8 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section Occupancy --print-details all \
      $B bench kernels --device cuda --shape 16384x2048x2048 --no-torch >"$out/ncu-i32.log" 2>&1
    grep -E "Duration|Stall|stall|Throughput|Issued|Eligible" "$out/ncu-i32.log" | head -20
    echo "[t=$SECONDS s] ncu"
  fi
  left=$((262 - SECONDS)); [ $left -gt 5 ] || left=5
  timeout $left compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
  echo "memcheck rc=$? (124: cut at ${left} s)"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$out/memcheck.log" | head -6
  echo "[t=$SECONDS s] end"
  exit 0
fi
if [ "$mode" = trace ]; then
  timeout 100 build-cuda/tests/test_cuda_ops >"$out/test.log" 2>&1; r=$?
  grep -E "PASSED|FAILED|ERROR|LINE" "$out/test.log" | head -8; echo "test_cuda_ops rc=$r"
  echo "[t=$SECONDS s] tests"
  for v in "ARB_CUDA_BWD_CHUNKS=1" "ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1"; do
    echo "== trace 16384x2048x2048 $v (GPU us / host us since the call's start, at each stage's end)"
    env $v ARB_CUDA_BWD_TRACE=1 timeout 30 $B bench kernels --device cuda --shape 16384x2048x2048 --no-torch >"$out/trace.log" 2>&1
    grep "forward" "$out/trace.log"
    for k in "dx" "update" "fused" "fused-deferred"; do grep "^BWDTRACE $k " "$out/trace.log" | tail -2; done
  done
  echo "[t=$SECONDS s] traces"
  variants 16384x2048x2048 "ARB_CUDA_BWD_CHUNKS=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_PRIO=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_CTAS=112,ARB_CUDA_BWD_CHUNKS=2 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1 ARB_CUDA_BWD_DW=whole,ARB_CUDA_BWD_CHUNKS=1 ARB_CUDA_UPD_DENSE=16"
  variants 16384x2048x8192 "ARB_CUDA_BWD_CHUNKS=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_ORDER=1 ARB_CUDA_BWD_PRIO=1 ARB_CUDA_BWD_DW=whole"
  echo "[t=$SECONDS s] variants"
  echo "[t=$SECONDS s] end"
  exit 0
fi
# final: the required checks first, each verbatim in its log; main's build (the code before this
# branch) compiles in the background meanwhile for the same-call comparison at the end
( cd .. && OUT=$out/main bash dev/cuda/gpu_run.sh build-only >"$out/build-main.log" 2>&1 ) &
bm=$!
timeout 100 build-cuda/tests/test_cuda_ops >"$out/test.log" 2>&1; r=$?
grep -vE "^\[ +(RUN|OK) +\]|^BWDTRACE" "$out/test.log" | tail -30; echo "test_cuda_ops rc=$r"
echo "[t=$SECONDS s] tests"
timeout 120 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$out/memcheck.log" | head -6
echo "[t=$SECONDS s] memcheck"
ARB_CUDA_SYNC_CHECK=1 timeout 60 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; r=$?
grep -vE "^\[ +(RUN|OK) +\]|^  |^head dim|loss cpu" "$out/test_model.log" | tail -12; echo "test_cuda_model rc=$r"
echo "[t=$SECONDS s] model"
wait $bm; head -3 "$out/build-main.log"
timeout 90 $B bench kernels --device cuda >"$out/bench.log" 2>&1; echo "bench rc=$?"
cat "$out/bench.log"
echo "[t=$SECONDS s] bench"
echo "== same call: main (8fd6825) vs this branch, --shape runs alternating"
for sh in 16384x2048x2048 16384x2048x8192; do
  for k in 1 2; do
    echo "main   $sh: $(timeout 30 ../build-cuda/arbitor bench kernels --device cuda --shape $sh 2>&1 | grep forward)"
    echo "branch $sh: $(timeout 30 $B bench kernels --device cuda --shape $sh --no-torch 2>&1 | grep forward)"
  done
done
echo "[t=$SECONDS s] main vs branch"
variants 16384x2048x2048 "ARB_CUDA_BWD_XT=quant,ARB_CUDA_BWD_CHUNKS=4,ARB_CUDA_BWD_CHUNKS=4 ARB_CUDA_BWD_DW=whole"
variants 16384x2048x8192 "ARB_CUDA_BWD_XT=quant"
echo "== trace 16384x2048x2048, default (GPU us / host us since the call's start, at each stage's end)"
ARB_CUDA_BWD_TRACE=1 timeout 30 $B bench kernels --device cuda --shape 16384x2048x2048 --no-torch >"$out/trace.log" 2>&1
grep "forward" "$out/trace.log"
for k in "dx" "update" "fused" "fused-deferred"; do grep "^BWDTRACE $k " "$out/trace.log" | tail -2; done
echo "[t=$SECONDS s] end"
