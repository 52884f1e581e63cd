#!/usr/bin/env bash
# hooks_op_count.sh PLAIN_EXE HOOKED_EXE [N]: the hooks' cost per read that
# does not wait, in instructions counted by callgrind (deterministic; the
# kernel's share is not counted) for the build without the hooks and the
# build with them, and the difference; then the wall time per read of each
# build, run natively (noisy: a figure to read, not to compare closely).
# Skipped (exit 77) when valgrind is not installed.
set -euo pipefail

plain=$1
hooked=$2
n=${3:-100000}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "hooks_op_count: valgrind is not installed; skipping (apt-get install valgrind)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() {  # count EXE OP: instructions per operation
  local tag
  tag=$(basename "$1")-$2
  valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out/$tag.out" \
    "$1" "$2" "$n" >/dev/null 2>"$out/$tag.err" || { cat "$out/$tag.err" >&2; return 1; }
  awk -v n="$n" '/^summary:/ { printf "%.0f\n", $2 / n }' "$out/$tag.out"
}

wall() {  # wall EXE OP: nanoseconds per operation, natively (the best of three)
  local best="" ns
  for _ in 1 2 3; do
    ns=$("$1" "$2" "$n" | awk '{ print $4 }')
    best=$(awk -v a="$ns" -v b="${best:-$ns}" 'BEGIN { print (a < b ? a : b) }')
  done
  echo "$best"
}

printf '%-31s %10s %10s %8s   %9s %9s\n' operation plain hooked +hooks "plain ns" "hooked ns"
for op in $("$plain" --list); do
  p=$(count "$plain" "$op")
  h=$(count "$hooked" "$op")
  printf '%-31s %10s %10s %8s   %9s %9s\n' "$op" "$p" "$h" "$((h - p))" \
    "$(wall "$plain" "$op")" "$(wall "$hooked" "$op")"
done
echo "(instructions per read under callgrind; ns per read natively, best of 3 runs of $n)"
