#!/usr/bin/env bash
# The speed session's final device call, run from the device copy's root (main) with the branch
# mirrored in .wt-speed: main's CLI built beside ours as the same-call baseline, then
# dev/cuda/gpu_run.sh test memcheck bench and dev/model/gpu_model.sh test speed on the branch,
# main's training speed, and a kernel profile of two steps if time is left.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
( cmake -S . -B build-base -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build build-base -j8 --target arbitor_cli ) >"$out/base-build.log" 2>&1 &
base=$!
cd .wt-speed
bash dev/cuda/gpu_run.sh test memcheck bench 2>&1 | tee "$out/final-cuda.log" | tail -45
bash dev/model/gpu_model.sh test speed 2>&1 | tee "$out/final-model.log" | tail -22
wait $base || tail -5 "$out/base-build.log"
echo "== main (before this branch), same call:"
timeout 60 ../build-base/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 60 \
  --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed-base 2>&1 | tr '\r' '\n' | tail -1
echo "[t=$SECONDS s]"
if [ $SECONDS -lt ${ARB_PROF_BEFORE:-190} ]; then bash dev/model/gpu_model.sh prof 2>&1 | tail -26; fi
echo "[t=$SECONDS s]"
