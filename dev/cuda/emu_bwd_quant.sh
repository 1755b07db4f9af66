#!/usr/bin/env bash
# CPU check of the backward's gradient-quantization kernels against a base revision and the CPU
# rule (see emu_bwd_quant.cpp). Needs a CUDA build of the library in build/ (for the link).
#   dev/cuda/emu_bwd_quant.sh [BASE_REV]   (default: main)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-main}; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cut_k() { awk '/^\/\* Row maxima \(dX\) and column maxima/{f=1} /^\/\* xqᵀ \(cols_pad/{f=0} f'; }
cut_k <src/cuda/linear.cu >"$tmp/new_k.inc"
git show "$base:src/cuda/linear.cu" | cut_k >"$tmp/old_k.inc"
cp dev/cuda/emu_bwd_quant.cpp "$tmp/"
cuda=${CUDA_HOME:-/usr/local/cuda}
g++ -std=c++17 -O1 -frounding-math -ffp-contract=off -Iinclude -Isrc -I"$tmp" -Wno-unused -o "$tmp/emu" "$tmp/emu_bwd_quant.cpp" \
  build/libarbitor.a -L"$cuda/lib64" -L"$cuda/targets/x86_64-linux/lib/stubs" -lcudart -lcublasLt -lcublas -lcuda -lnccl \
  -lcjson -lpng -ljpeg -lsndfile -lsamplerate -lopus -lm -lpthread -fopenmp -ldl -lrt
LD_LIBRARY_PATH=$cuda/lib64:${LD_LIBRARY_PATH:-} "$tmp/emu"
