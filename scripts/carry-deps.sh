#!/usr/bin/env bash
# Unpacks cJSON and cmocka (runtime + headers) from Debian .debs into .deps/, so a machine
# without Debian -dev packages (the GPU machine) can build with -DARB_DEPS_PREFIX=$PWD/.deps.
# pkgconf comes along for machines without pkg-config (export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf).
# Why .debs and not vendored source: the project depends on Debian packages only.
#   scripts/carry-deps.sh          download here (needs apt) and extract into .deps/
# Then on the other machine: cmake -DARB_DEPS_PREFIX=$PWD/.deps ... and at run time
#   export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; "") ;; *) echo "carry-deps.sh: unknown option '$1'" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
dest=$PWD/.deps
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libcjson1 libcjson-dev libcmocka0 libcmocka-dev pkgconf-bin libpkgconf3 >/dev/null)
rm -rf "$dest"
mkdir -p "$dest"
for f in "$tmp"/*.deb; do dpkg -x "$f" "$dest"; done
# The -dev packages' .so links are absolute-free (libfoo.so -> libfoo.so.N) so they survive the move.
ls "$dest"/usr/include/cjson/cJSON.h "$dest"/usr/include/cmocka.h >/dev/null
du -sh "$dest" | awk '{print "carry-deps: " $1 " in .deps"}'
