#!/usr/bin/env bash
# One device call for the CUDA model: build (CLI + the model test only), run the model test, time
# `arbitor train --config shakespeare --device cuda` against the PyTorch QAT baseline in the same
# call, and optionally a per-kernel profile (ncu) of two steps.
#   dev/model/gpu_model.sh [test] [speed] [prof] [accuracy CONFIG]...   (ARB_ACC_MIN caps each run;
#   ARB_TORCH_RUNS runs the PyTorch baseline that many times in the speed part)
# Data: data/tinyshakespeare.txt (copy ../shared/data/tinyshakespeare.txt there first: ../shared
# does not travel). Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/arb-gpu}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
data=data/tinyshakespeare.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
t0=$(date +%s)
cmake -S . -B build-cuda -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 ||
  { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-cuda -j16 --target arbitor_cli test_cuda_model >"$out/build.log" 2>&1 ||
  { grep -E "error|Error" "$out/build.log" | head -20; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
rc=0
while [ $# -gt 0 ]; do
  case $1 in
    test)
      ARB_CUDA_SYNC_CHECK=1 timeout 150 build-cuda/tests/test_cuda_model >"$out/test_model.log" 2>&1; r=$?
      grep -vE "^\[ (RUN|       OK) " "$out/test_model.log" | tail -40; echo "test_cuda_model rc=$r"
      # the failing checks themselves (they may sit above the tail)
      [ $r = 0 ] || grep -E "^ERROR|\[  ERROR|\[   LINE|^step " "$out/test_model.log" | head -12
      if [ $r != 0 ]; then rc=1
        timeout 150 compute-sanitizer --tool memcheck --report-api-errors no build-cuda/tests/test_cuda_model >"$out/memcheck.log" 2>&1
        grep -E "ERROR SUMMARY|Invalid|at 0x|by thread" "$out/memcheck.log" | head -12
      fi ;;
    speed)
      # tokens/s over all steps (the first one allocates), then per 20-step log window (log.jsonl)
      timeout 150 build-cuda/arbitor train --config shakespeare --device cuda --data $data --steps ${ARB_SPEED_STEPS:-60} \
        --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed 2>&1 | tr '\r' '\n' | tail -1 | tee "$out/speed.log"
      echo "per 20 steps: $(grep -o '"tokens_per_s":[0-9.]*' /tmp/speed/log.jsonl | cut -d: -f2 | tr '\n' ' ')" | tee -a "$out/speed.log"
      # the baseline ARB_TORCH_RUNS times (default 1) in this call, each a fresh process (compile
      # cache warm after the first), with per-window step times and a kernel-time profile
      for run in $(seq ${ARB_TORCH_RUNS:-1}); do
        nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader
        PYTHONUNBUFFERED=1 timeout 240 python3 bench/torch_qat_baseline.py --data $data --iters ${ARB_TORCH_ITERS:-60} \
          --warmup 15 --profile 10 2>&1 | grep -vE "UserWarning|_warn_once" | tail -6 | tee "$out/torch-$run.log"
      done ;;
    prof)
      timeout 200 ncu --metrics gpu__time_duration.sum build-cuda/arbitor train --config shakespeare --device cuda --data $data \
        --steps 2 --eval-windows 1 --eval-every 100000 --out /tmp/prof >"$out/prof.log" 2>&1
      python3 dev/cuda/prof_summary.py "$out/prof.log" | head -25 ;;
    accuracy)
      # the issue's budget: 5000 steps x 16384 tokens (82M); a time cap keeps the call inside its limit
      shift; cfg=$1; tag=$(basename "$cfg" .json)
      timeout $(( ${ARB_ACC_MIN:-3} * 60 + 90 )) build-cuda/arbitor train --config "$cfg" --device cuda --data $data \
        --steps 5000 --time-budget ${ARB_ACC_MIN:-3} --out "$out/acc-$tag" 2>&1 | tr '\r' '\n' | grep -vE "^\s*$" | tail -6 | tee "$out/accuracy-$tag.log"
      rm -f "$out/acc-$tag/checkpoint.safetensors" ;;
  esac
  shift
done
exit $rc
