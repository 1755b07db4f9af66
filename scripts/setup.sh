#!/usr/bin/env bash
# Installs what the build, the tests and the benchmarks need on Debian 12 (run as root).
#   scripts/setup.sh            Debian packages (build + tests)
#   scripts/setup.sh --python   also the PyPI packages used as independent references/baselines
set -euo pipefail
want_python=0
for a in "$@"; do
  case "$a" in
    --python) want_python=1 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$a'" >&2; exit 2 ;;
  esac
done
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev libomp-dev
      libcjson-dev libcmocka-dev libpng-dev libjpeg-dev libsndfile1-dev libsamplerate0-dev
      fortunes-min fortunes)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup.sh: need root to install: ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ $want_python = 1 ]; then
  python3 -c 'import torch' 2>/dev/null || pip install -q --index-url https://download.pytorch.org/whl/cpu torch || pip install -q torch
  pip install -q numpy pillow safetensors transformers diffusers optimum-quanto
fi
