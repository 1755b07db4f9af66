#!/usr/bin/env bash
# A/B of the training trajectory: this tree, $1 (another tree), and main (the root), built in parallel.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
for t in .wt-speed "$1" .; do
  ( cd $t && cmake -S . -B build-ab -DARB_CUDA=ON -DARB_DEPS_PREFIX="$OLDPWD/.deps" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build build-ab -j6 --target arbitor_cli >"$out/build-$(basename $PWD).log" 2>&1 || echo "build $t failed" ) &
done
wait
echo "[built t=$SECONDS s]"
for t in .wt-speed "$1" .; do
  echo "== $t"
  timeout 60 $t/build-ab/arbitor train --config shakespeare --device cuda --data .gpu-data/tinyshakespeare.txt --steps ${STEPS:-200} \
    --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/ab 2>&1 | tr '\r' '\n' | tail -1
  echo "train per 20: $(grep -o '"train_nats_per_byte":[0-9.]*' /tmp/ab/log.jsonl | cut -d: -f2 | tr '\n' ' ')"
  rm -rf /tmp/ab
done
echo "[t=$SECONDS s]"
