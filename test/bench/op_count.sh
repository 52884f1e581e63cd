#!/usr/bin/env bash
# op_count.sh OP_COUNT_EXE [N]: instructions per hot-path operation, counted
# by callgrind (deterministic: machine noise does not enter), each also as a
# multiple of the raw boost::context::fiber round trip counted in the same
# build. Skipped (exit 77) when valgrind is not installed.
set -euo pipefail

exe=$1
n=${2:-100000}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "op_count: valgrind is not installed; skipping (apt-get install valgrind)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Targets from issue 7, as multiples of the raw round trip.
declare -A target=([sleep0]=5 [await_call_soon]=8 [spawn_await]=15 [spawn_await_eager]=6
                   [call_soon_run]=2 [call_later_fire]=6)

count() {  # count OP: instructions per operation
  valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out/$1.out" \
    "$exe" "$1" "$n" >/dev/null 2>"$out/$1.err" || { cat "$out/$1.err" >&2; return 1; }
  awk -v n="$n" '/^summary:/ { printf "%.0f\n", $2 / n }' "$out/$1.out"
}

base=$(count fiber_round_trip)
printf '%-22s %12s %10s %8s\n' operation instr/op "x round" target
for op in $("$exe" --list); do
  ir=$(count "$op")
  ratio=$(awk -v a="$ir" -v b="$base" 'BEGIN { printf "%.1f", a / b }')
  printf '%-22s %12s %10s %8s\n' "$op" "$ir" "$ratio" "${target[$op]:--}"
done
