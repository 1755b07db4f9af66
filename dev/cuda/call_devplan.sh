#!/usr/bin/env bash
# The devplan session's device call (update without host round trips), run from the device
# copy's root (main) with the branch mirrored in .wt-devplan and the data in .gpu-data:
#   dev/cuda/call_devplan.sh [memcheck] [torch]
# CUDA op tests, the model test and training speed, the kernel bench (BENCH line), then main's
# CLI (built in the background, niced) for the same-call before/after, as time allows.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
mkdir -p .wt-devplan/data && cp .gpu-data/tinyshakespeare.txt .wt-devplan/data/
ln -sfn ../.deps .wt-devplan/.deps
( nice -n 19 cmake -S . -B build-base -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release &&
  nice -n 19 cmake --build build-base -j4 --target arbitor_cli ) >"$out/base-build.log" 2>&1 &
base=$!
mc=; torch=0
for a in "$@"; do case $a in memcheck) mc=memcheck ;; torch) torch=1 ;; esac; done
cd .wt-devplan
bash dev/cuda/gpu_run.sh test $mc 2>&1 | tee "$out/dp-cuda.log" | tail -32
echo "[t=$SECONDS s]"
ARB_TORCH_RUNS=$torch bash dev/model/gpu_model.sh test speed 2>&1 | tee "$out/dp-model.log" | tail -30
echo "[t=$SECONDS s]"
bash dev/cuda/gpu_run.sh bench 2>&1 | tee "$out/dp-bench.log" | tail -14
echo "[t=$SECONDS s]"
if ! kill -0 $base 2>/dev/null && [ -x ../build-base/arbitor ]; then
  echo "== main (the device copy's root, before this branch), same call:"
  timeout 25 ../build-base/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 60 \
    --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed-base 2>&1 | tr '\r' '\n' | tail -1
  echo "per 20 steps: $(grep -o '"tokens_per_s":[0-9.]*' /tmp/speed-base/log.jsonl | cut -d: -f2 | tr '\n' ' ')"
  [ $SECONDS -lt 150 ] && timeout 25 ../build-base/arbitor bench kernels --device cuda 2>&1 | grep -E "BENCH|fused dX" | tee "$out/base-bench.log"
else
  echo "== main's CLI not built in time"; tail -3 "$out/base-build.log"
fi
echo "[t=$SECONDS s]"
