# Sourced by the device-call scripts: the common start of a call on the GPU machine.
#   arb_device_build DIR TARGET...   (run from the device copy's root)
# Enters DIR (a mirrored worktree such as .wt-vae2, or . for the checkout itself), takes the carried
# .deps (cJSON, cmocka: the machine has no -dev packages), points ARB_SHARED_DIR at the carried
# .gpu-data, prints the card, configures build-cuda (Release, CUDA on) and builds TARGETs into it.
# Sets `out` ($OUT, or /tmp/arb-gpu), `root` (the copy's root) and `t0`; returns 1 with the log's
# tail on a configure or build error.
arb_device_build() {
  out=${OUT:-/tmp/arb-gpu}; mkdir -p "$out"
  root=$PWD
  cd "$1" || return 1
  shift
  [ -d .deps ] || cp -r "$root/.deps" .
  export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  command -v pkg-config >/dev/null || export PKG_CONFIG=$PWD/.deps/usr/bin/pkgconf
  export ARB_SHARED_DIR=$root/.gpu-data
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
  t0=$SECONDS
  cmake -S . -B build-cuda -DARB_CUDA=ON -DARB_DEPS_PREFIX="$PWD/.deps" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 ||
    { tail -30 "$out/cmake.log"; return 1; }
  cmake --build build-cuda -j16 --target "$@" >"$out/build.log" 2>&1 ||
    { grep -E "error|Error" "$out/build.log" | head -20; return 1; }
}
