#!/usr/bin/env bash
# CPU check of the backward's gradient-quantization kernels against a base revision and the CPU
# rule (see emu_bwd_quant.cpp). Needs a CUDA build of the library in build/ (for the link).
#   dev/cuda/emu_bwd_quant.sh [BASE_REV]   (default: a7f12fa, the kernels before the session-3 rewrite)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-a7f12fa}; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cut_new() { awk '/^\/\* Both passes give each thread 4 consecutive columns/{f=1} /^\/\* Launch lines of linear_backward/{f=0} f'; }
cut_old() { awk '/^\/\* Row maxima \(dX\) and column maxima/{f=1} /^\/\* xqᵀ \(cols_pad/{f=0} f'; }
cut_new <src/cuda/linear.cu >"$tmp/new_k.inc"
git show "$base:src/cuda/linear.cu" | cut_old >"$tmp/old_k.inc"
cp dev/cuda/emu_bwd_quant.cpp "$tmp/"
cuda=${CUDA_HOME:-/usr/local/cuda}
g++ -std=c++17 -O1 -frounding-math -ffp-contract=off -Iinclude -Isrc -I"$tmp" -Wno-unused -o "$tmp/emu" "$tmp/emu_bwd_quant.cpp" \
  build/libarbitor.a -L"$cuda/lib64" -L"$cuda/targets/x86_64-linux/lib/stubs" -lcudart -lcublasLt -lcublas -lcuda -lnccl \
  -lcjson -lpng -ljpeg -lsndfile -lsamplerate -lopus -lm -lpthread -fopenmp -ldl -lrt
LD_LIBRARY_PATH=$cuda/lib64:${LD_LIBRARY_PATH:-} "$tmp/emu"
