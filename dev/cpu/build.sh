#!/bin/sh
# Lab build of core + ternary + cpu + one test/bench without the rest of the tree (which other
# helpers may have mid-edit). Usage: dev/cpu/build.sh OUT main.c [more.c...]
set -e
cd "$(dirname "$0")/../.."
OUT=$1; shift
OBJ=${OBJ:-/tmp/lb/obj}; mkdir -p $OBJ
CF="$XCF -I/tmp/lb/snap -Isrc/ternary -std=c17 ${OPT:--O3} -g -Wall -Wextra -Werror -D_GNU_SOURCE -fopenmp -Iinclude -Isrc -Itests -Icli -DARB_SHARED_DIR=\"/work/shared\" -DARB_SOURCE_DIR=\"/work/main\" -DARB_CLI_PATH=\"/tmp/lb/arbitor\""
A512="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512vbmi -mfma -mavx2 -mf16c"
A2="-mavx2 -mfma -mf16c"
objs=""
# ternary-core's files as committed (their working copy may be mid-edit)
mkdir -p /tmp/lb/snap
TSRC=""
for f in $(git ls-files src/ternary); do b=$(basename $f); git show HEAD:$f > /tmp/lb/snap/$b.new
  cmp -s /tmp/lb/snap/$b.new /tmp/lb/snap/$b || mv /tmp/lb/snap/$b.new /tmp/lb/snap/$b
  case $b in *.c) TSRC="$TSRC /tmp/lb/snap/$b";; esac; done
for f in src/core/*.c $TSRC src/cpu/*.c; do
  o=$OBJ/$(echo $f | tr / _).o
  fl=""
  case $f in *_avx512.c) fl=$A512;; *_avx2.c) fl=$A2;; esac
  if [ ! -f $o ] || [ $f -nt $o ] || [ src/cpu/linear_internal.h -nt $o ]; then ${CC:-gcc} $CF $fl -c $f -o $o; fi
  objs="$objs $o"
done
${CC:-gcc} $CF "$@" $objs -o $OUT -lcmocka -lm -lcjson
