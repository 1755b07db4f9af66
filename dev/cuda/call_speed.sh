#!/usr/bin/env bash
# One device call for the speed session: build + CUDA op tests, memcheck beside the model test,
# then (optionally) the kernel bench and the training speed against the PyTorch baseline.
#   dev/cuda/call_speed.sh [bench] [speed] [prof]
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
t0=$(date +%s); ts() { echo "[t=$(($(date +%s) - t0)) s] $*"; }
bash dev/cuda/gpu_run.sh test 2>&1 | tail -30; ts "build + test_cuda_ops"
( s=$(date +%s); timeout ${ARB_MC_LIMIT:-200} compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 \
    build-cuda/tests/test_cuda_ops >"$out/memcheck.log" 2>&1; r=$?
  echo "memcheck rc=$r ($(($(date +%s) - s)) s)" >"$out/memcheck.rc" ) &
mc=$!
bash dev/model/gpu_model.sh test 2>&1 | tail -25; ts "model test"
wait $mc; grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$out/memcheck.log" | head -12; cat "$out/memcheck.rc"; ts "memcheck"
for w in "$@"; do
  case $w in
    bench) bash dev/cuda/gpu_run.sh bench 2>&1 | grep -vE "^build:" | tail -40; ts bench ;;
    speed) bash dev/model/gpu_model.sh speed 2>&1 | tail -12; ts speed ;;
    prof) bash dev/model/gpu_model.sh prof 2>&1 | tail -28; ts prof ;;
  esac
done
