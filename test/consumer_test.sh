#!/usr/bin/env bash
# usage: consumer_test.sh <source-root> <work-dir>
# Builds test/consumer as a standalone meson project that pulls fiberloop in
# as a subproject (subprojects/fiberloop -> <source-root>) and checks that the
# resulting program prints exactly "consumer got 42", and that the hooks,
# pulled in with dependency('fiberloop-hooks'), are in effect in another.
# $MESON may name the meson executable to use (default: meson).
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 <source-root> <work-dir>" >&2
  exit 1
fi

die() {
  echo "consumer_test.sh: $*" >&2
  exit 1
}

src=$(realpath -- "$1") || die "bad source root: $1"
[[ -f "$src/meson.build" && -d "$src/test/consumer" ]] ||
  die "$src does not look like the fiberloop source root"
work=$(realpath -m -- "$2")
case "$work" in
  / | "$src") die "refusing to use $work as work dir" ;;
esac

meson=${MESON:-meson}

rm -rf -- "$work"
mkdir -p -- "$work"
cp -R -- "$src/test/consumer" "$work/consumer"
rm -rf -- "$work/consumer/subprojects"
mkdir -p -- "$work/consumer/subprojects"
ln -s -- "$src" "$work/consumer/subprojects/fiberloop"

# --force-fallback-for: use the subproject even if an installed fiberloop exists.
$meson setup --force-fallback-for=fiberloop "$work/build" "$work/consumer" ||
  die "meson setup failed"
$meson compile -C "$work/build" || die "meson compile failed"

status=0
out=$(timeout -k 5 20 "$work/build/consumer") || status=$?
((status == 0)) || die "consumer exited with status $status (stdout: '$out')"
[[ "$out" == "consumer got 42" ]] ||
  die "unexpected output: '$out' (expected 'consumer got 42')"
plain_out=$out
out=$(timeout -k 5 20 "$work/build/consumer_hooked") || status=$?
((status == 0)) || die "consumer_hooked exited with status $status (stdout: '$out')"
[[ "$out" == "consumer_hooked: 100 sleeps overlapped" ]] ||
  die "unexpected output of consumer_hooked: '$out'"
echo "consumer_test.sh: OK ($plain_out; $out)"
