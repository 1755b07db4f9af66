#!/usr/bin/env bash
# A/B of the VAE mid-block attention GEMMs in TF32 vs fp32 (session 4): test with TF32, bench both.
set -uo pipefail
export ARB_SHARED_DIR=$PWD/.gpu-data
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
[ -d build-cuda ] || cmake -S . -B build-cuda -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release > /tmp/c.log 2>&1 || { tail -20 /tmp/c.log; exit 1; }
cmake --build build-cuda -j16 --target arbitor_cli test_cuda_sidecars > /tmp/b.log 2>&1 || { grep -E "error" /tmp/b.log | head; exit 1; }
ARB_SIDECAR_VAE_ATT_TF32=1 timeout 100 build-cuda/tests/test_cuda_sidecars > $OUT/t1.log 2>&1; echo "test tf32 rc=$?"; grep -E "vae|PASSED|FAILED" $OUT/t1.log | grep -v "item" | head -20
ARB_SIDECAR_VAE_ATT_TF32=1 timeout 150 build-cuda/arbitor bench sidecars --device cuda 2>&1 | grep -E "^(dinov2|moonshine|vae_decode) |BENCH"
echo "== fp32 attention (current default), same call:"
timeout 150 build-cuda/arbitor bench sidecars --device cuda 2>&1 | grep -E "^vae_decode |BENCH"
