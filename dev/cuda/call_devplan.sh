#!/usr/bin/env bash
# The devplan session's device call (update without host round trips), run from the device
# copy's root (main) with the branch mirrored in .wt-devplan and the data in .gpu-data:
#   timeout 180 bash .wt-devplan/dev/cuda/call_devplan.sh [memcheck] [torch]
# CUDA op tests (+ compute-sanitizer), the kernel bench (BENCH line), the model test and training
# speed (+ the PyTorch baseline), then as time allows: the speed with the one-thread-per-word
# update pass (ARB_CUDA_UPD_DENSE=16) and with the finishes not overlapped (ARB_CUDA_UPD_OVERLAP=0), dev/cuda/upd_roundtrip.c (immediate vs deferred updates),
# and main's CLI (built in the background, niced) for the same-call before/after.
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
ARB_MEMCHECK_TIMEOUT=${ARB_MEMCHECK_TIMEOUT:-100} bash dev/cuda/gpu_run.sh test $mc bench 2>&1 | tee "$out/dp-cuda.log" | tail -40
echo "[t=$SECONDS s]"
ARB_TORCH_RUNS=$torch ARB_TORCH_ITERS=${ARB_TORCH_ITERS:-40} bash dev/model/gpu_model.sh test speed 2>&1 | tee "$out/dp-model.log" | tail -14
echo "[t=$SECONDS s]"
echo "== the same speed with the one-thread-per-word update pass (ARB_CUDA_UPD_DENSE=16):"
ARB_CUDA_UPD_DENSE=16 timeout 25 build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt \
  --steps 60 --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed16 2>&1 | tr '\r' '\n' | tail -1
echo "per 20 steps: $(grep -o '"tokens_per_s":[0-9.]*' /tmp/speed16/log.jsonl | cut -d: -f2 | tr '\n' ' ')"
echo "== the same speed with the finishes on the current stream (ARB_CUDA_UPD_OVERLAP=0):"
ARB_CUDA_UPD_OVERLAP=0 timeout 25 build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt \
  --steps 60 --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed-ov0 2>&1 | tr '\r' '\n' | tail -1
echo "per 20 steps: $(grep -o '"tokens_per_s":[0-9.]*' /tmp/speed-ov0/log.jsonl | cut -d: -f2 | tr '\n' ' ')"
echo "[t=$SECONDS s]"
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ $SECONDS -lt 150 ] && timeout 40 "$nvcc" -O2 dev/cuda/upd_roundtrip.c -Iinclude -o build-cuda/upd_roundtrip build-cuda/libarbitor.a \
     -L../.deps/usr/lib/x86_64-linux-gnu -lcublasLt -lcublas -lcjson -lgomp -lm >"$out/roundtrip-build.log" 2>&1; then
  timeout 20 build-cuda/upd_roundtrip 2>&1 | tee "$out/roundtrip.log"
else
  echo "upd_roundtrip skipped or not built"; tail -3 "$out/roundtrip-build.log" 2>/dev/null
fi
echo "[t=$SECONDS s]"
if ! kill -0 $base 2>/dev/null && [ -x ../build-base/arbitor ] && [ $SECONDS -lt 168 ]; then
  echo "== main (the device copy's root, before this branch), same call:"
  timeout 10 ../build-base/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 60 \
    --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/speed-base 2>&1 | tr '\r' '\n' | tail -1
  echo "per 20 steps: $(grep -o '"tokens_per_s":[0-9.]*' /tmp/speed-base/log.jsonl | cut -d: -f2 | tr '\n' ' ')"
else
  echo "== main's CLI: no time or not built"; tail -2 "$out/base-build.log"
fi
echo "[t=$SECONDS s]"
