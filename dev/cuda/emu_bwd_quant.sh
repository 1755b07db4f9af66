#!/usr/bin/env bash
# CPU check of the backward's gradient-quantization kernels: the two-pass order against the row
# pass and both against the CPU rules (see emu_bwd_quant.cpp). Needs a CUDA build of the library
# (for the link): BUILD (default build-cuda).
#   dev/cuda/emu_bwd_quant.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build-cuda}; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cut_new() { awk '/^\/\* Both passes give each thread 4 consecutive columns/{f=1} /^\/\* Launch lines of linear_backward/{f=0} f'; }
# the row pass's dynamic shared ring becomes a static array (one block runs at a time here)
cut_new <src/cuda/linear.cu | sed 's/extern __shared__ __align__(16) float4 bwd_rowq_ring\[\];/static float4 bwd_rowq_ring[RQ_RING_BYTES \/ 16];/' >"$tmp/new_k.inc"
cp dev/cuda/emu_bwd_quant.cpp "$tmp/"
cuda=${CUDA_HOME:-/usr/local/cuda}
g++ -std=c++17 -O1 -frounding-math -ffp-contract=off -Iinclude -Isrc -I"$tmp" -Wno-unused -o "$tmp/emu" "$tmp/emu_bwd_quant.cpp" \
  "$build/libarbitor.a" -L"$cuda/lib64" -L"$cuda/targets/x86_64-linux/lib/stubs" -lcudart -lcublasLt -lcublas -lcuda -lnccl \
  -lcjson -lpng -ljpeg -lsndfile -lsamplerate -lopus -lm -lpthread -fopenmp -ldl -lrt
LD_LIBRARY_PATH=$cuda/lib64:${LD_LIBRARY_PATH:-} "$tmp/emu"
