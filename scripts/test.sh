#!/usr/bin/env bash
# Builds arbitor and runs every test (the README's test command).
#   ARB_BUILD_DIR (default build), ARB_CMAKE_ARGS (extra configure flags)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir=${ARB_BUILD_DIR:-build}
cmake -S . -B "$dir" ${ARB_CMAKE_ARGS:-} >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
