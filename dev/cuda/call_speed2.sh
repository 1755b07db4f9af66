#!/usr/bin/env bash
# The speed2 session's device call, run from the device copy's root (main) with the branch
# mirrored in .wt-speed2 and the data in .gpu-data: main's CLI built beside ours as the
# same-call baseline; dev/cuda/gpu_run.sh test memcheck bench and dev/model/gpu_model.sh test
# speed on the branch; the training-shape bench of main and of the branch back to back; a
# two-step kernel profile of training if time is left.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
( cmake -S . -B build-base -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build build-base -j8 --target arbitor_cli ) >"$out/base-build.log" 2>&1 &
base=$!
cp -r .deps .wt-speed2/ && mkdir -p .wt-speed2/data && cp .gpu-data/tinyshakespeare.txt .wt-speed2/data/
cd .wt-speed2
bash dev/cuda/gpu_run.sh test memcheck bench 2>&1 | tee "$out/final-cuda.log" | tail -40
bash dev/model/gpu_model.sh test speed 2>&1 | tee "$out/final-model.log" | tail -20
wait $base || tail -5 "$out/base-build.log"
for b in ../build-base build-cuda; do
  echo "== $b: bench 16384x2048x2048 (same call)"
  timeout 40 $b/arbitor bench kernels --device cuda --shape 16384x2048x2048 2>&1 | tail -n +3 | grep -E "train|forward"
done
echo "[t=$SECONDS s]"
if [ $SECONDS -lt ${ARB_PROF_BEFORE:-175} ]; then bash dev/model/gpu_model.sh prof 2>&1 | tail -26; fi
echo "[t=$SECONDS s]"
