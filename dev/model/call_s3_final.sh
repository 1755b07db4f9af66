#!/usr/bin/env bash
# Session 3 (attention + glue) final device call, run from the device copy's root (main) with the
# branch mirrored in .wt-attn and the data in .gpu-data: the model test and the training speed
# against the PyTorch QAT baseline (dev/model/gpu_model.sh test speed), the CUDA op tests and
# compute-sanitizer (dev/cuda/gpu_run.sh test memcheck), then, as time allows, a per-kernel
# profile of two steps and main's CLI (built in the background, niced) as the same-call baseline.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
mkdir -p .wt-attn/data && cp .gpu-data/tinyshakespeare.txt .wt-attn/data/
ln -sfn ../.deps .wt-attn/.deps
( nice -n 19 cmake -S . -B build-base -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release &&
  nice -n 19 cmake --build build-base -j4 --target arbitor_cli ) >"$out/base-build.log" 2>&1 &
base=$!
cd .wt-attn
bash dev/model/gpu_model.sh test speed 2>&1 | tee "$out/final-model.log" | tail -32
echo "[t=$SECONDS s]"
bash dev/cuda/gpu_run.sh test memcheck 2>&1 | tee "$out/final-cuda.log" | tail -14
echo "[t=$SECONDS s]"
if [ $SECONDS -lt ${ARB_PROF_BEFORE:-150} ]; then
  bash dev/model/gpu_model.sh prof 2>&1 | tail -24 | tee "$out/final-prof.txt"
  echo "[t=$SECONDS s]"
fi
if [ $SECONDS -lt ${ARB_BASE_BEFORE:-178} ] && kill -0 $base 2>/dev/null; then sleep 1; fi
if [ $SECONDS -lt ${ARB_BASE_BEFORE:-178} ] && ! kill -0 $base 2>/dev/null && [ -x ../build-base/arbitor ]; then
  echo "== main (the device copy's root), same call:"
  timeout 20 ../build-base/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 60 \
    --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed-base 2>&1 | tr '\r' '\n' | tail -1
else
  echo "== main baseline skipped (t=$SECONDS s, build done: $(kill -0 $base 2>/dev/null && echo no || echo yes))"
fi
kill $base 2>/dev/null
echo "[t=$SECONDS s]"
