#!/usr/bin/env bash
# Integrator's probe (session 3): main vs the bwdq-next candidate (.wt-bwdqn) in one call —
# build both, the candidate's CUDA tests, training speed of both back to back, PyTorch QAT twice,
# a kernel profile of main's step.
set -uo pipefail
out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
mkdir -p data && cp .gpu-data/tinyshakespeare.txt data/
cfg() { cmake -S "$1" -B "$1/build-cuda" -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$1/build-cuda" -j8 --target arbitor_cli test_cuda_ops test_cuda_model >"$out/build-$2.log" 2>&1 || echo "build $2 failed"; }
cfg . main & cfg .wt-bwdqn cand & wait; echo "build [t=$SECONDS s]"
(cd .wt-bwdqn && timeout 60 build-cuda/tests/test_cuda_ops 2>&1 | grep -E "PASSED|FAILED|ERROR" | head -5
 ARB_CUDA_SYNC_CHECK=1 timeout 60 build-cuda/tests/test_cuda_model 2>&1 | grep -E "PASSED|FAILED|ERROR" | head -5)
echo "tests [t=$SECONDS s]"
sp() { timeout 40 $1/build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt --steps 80 \
        --eval-windows 64 --eval-every 100000 --log-every 20 --out /tmp/sp-$2 2>&1 | tr '\r' '\n' | grep TRAIN; }
for r in 1 2; do echo "main:"; sp . main; echo "cand:"; sp .wt-bwdqn cand; done
echo "speed [t=$SECONDS s]"
for r in 1 2; do PYTHONUNBUFFERED=1 timeout 100 python3 bench/torch_qat_baseline.py --data data/tinyshakespeare.txt --iters 60 --warmup 15 --profile 10 2>&1 | grep -E "QAT_BASELINE|profile"; done
echo "torch [t=$SECONDS s]"
for t in .wt-bwdqn; do timeout 60 ncu --metrics gpu__time_duration.sum $t/build-cuda/arbitor train --config shakespeare --device cuda --data data/tinyshakespeare.txt \
   --steps 2 --eval-windows 1 --eval-every 100000 --out /tmp/prof >"$out/prof-$(basename $t).log" 2>&1
 python3 dev/cuda/prof_summary.py "$out/prof-$(basename $t).log" | head -14; done
echo "[t=$SECONDS s]"
