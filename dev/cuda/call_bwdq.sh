#!/usr/bin/env bash
# The bwdq session's final device call (backward preprocessing kernels), from the device copy's
# .wt-bwdq: one build, then the correctness runs side by side (test_cuda_ops, test_cuda_model),
# then the measurements alone on the GPU (ncu at 16384x2048x2048, ncu of two training steps, the
# kernel bench, training tokens/s), then compute-sanitizer on test_cuda_ops with the time left.
# Everything under one caller-side `timeout 180`; each step says where it stopped.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
bash dev/cuda/gpu_run.sh build-only >"$out/build-step.log" 2>&1; head -4 "$out/build-step.log"
echo "[t=$SECONDS s] built"
timeout 60 build-cuda/tests/test_cuda_ops >"$out/test.log" 2>&1 & a=$!
ARB_CUDA_SYNC_CHECK=1 timeout 60 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
tail -4 "$out/test.log"; echo "test_cuda_ops rc=$ra"
grep -vE "^\[ (RUN|       OK) |^  |^head dim|loss cpu" "$out/test_model.log" | tail -12; echo "test_cuda_model rc=$rb"
echo "[t=$SECONDS s] tests"
timeout 40 ncu --metrics gpu__time_duration.sum build-cuda/arbitor bench kernels --device cuda --shape 16384x2048x2048 >"$out/prof.log" 2>&1
python3 dev/cuda/prof_summary.py "$out/prof.log" | grep -E "bwd|transpose|k_upd|<2, 0, 1, 0>"
echo "[t=$SECONDS s] ncu 16384x2048x2048"
timeout 40 ncu --metrics gpu__time_duration.sum build-cuda/arbitor train --config shakespeare --device cuda \
  --data data/tinyshakespeare.txt --steps 2 --eval-windows 1 --eval-every 100000 --out /tmp/prof >"$out/prof-model.log" 2>&1
python3 dev/cuda/prof_summary.py "$out/prof-model.log" | head -14
echo "[t=$SECONDS s] ncu model"
timeout 20 build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 40 \
  --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed 2>&1 | tr '\r' '\n' | tail -1 | tee "$out/speed.log"
echo "[t=$SECONDS s] speed"
timeout 45 build-cuda/arbitor bench kernels --device cuda >"$out/bench.log" 2>&1; echo "bench rc=$?"
grep -E "^BENCH|bwd|backward" "$out/bench.log" | tail -8
echo "[t=$SECONDS s] bench"
left=$((170 - SECONDS)); [ $left -gt 5 ] || left=5
timeout $left compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1
echo "memcheck rc=$? (124: cut at ${left} s)"; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$out/memcheck.log" | head -6
echo "[t=$SECONDS s] end"
