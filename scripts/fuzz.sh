#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for N seconds (default 60) on its seed
# corpus (fuzz/corpus/<target>/). Any crash fails.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DARB_FUZZ=ON -DARB_TESTS=OFF -DARB_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)"
shopt -s nullglob
for bin in build-fuzz/fuzz/fuzz_*; do
  name=$(basename "$bin")
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$work" 2>&1 | tail -n 3
  rm -rf "$work"
done
