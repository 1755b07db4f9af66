#!/usr/bin/env bash
# The main job (README): install what is needed, build Release in build/, then train the default
# model (config cpu-small) on the built-in corpus (Debian's fortunes) for a few minutes.
#   bash scripts/run.sh [more `arbitor train` options, e.g. --data FILE --config NAME]
#   ARB_TIME_BUDGET   minutes of training (default 5)
#   ARB_BUILD_DIR     build directory (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir=${ARB_BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$dir" --target arbitor_cli -j"$(nproc)"
out="runs/default-$(date +%Y%m%d-%H%M%S)"
echo "training for ${ARB_TIME_BUDGET:-5} minutes; outputs go to $out/" >&2
"$dir/arbitor" train --time-budget "${ARB_TIME_BUDGET:-5}" --out "$out" "$@"
cat >&2 <<MSG

outputs: $out/checkpoint.safetensors  (continue to 10 minutes in all: $dir/arbitor train --resume $out/checkpoint.safetensors --time-budget 10 --out $out)
         $out/log.jsonl               (per step interval: loss, validation, per-layer flip rate and zero fraction)
         $out/loss.png                (train and validation loss)
sample:  $dir/arbitor generate --ckpt $out/checkpoint.safetensors --prompt 'The '
audit:   $dir/arbitor audit --ckpt $out/checkpoint.safetensors
MSG
