#!/usr/bin/env bash
# preload_test.sh PRELOAD_TARGET HOOKS_LIB: the hooks turned on in a program
# that was not linked with them, by LD_PRELOAD. preload_target's tasks each
# std::this_thread::sleep_for(100ms): preloaded, 200 of them take about one
# sleep's time (0.1 s, not 20 s); without the preload, 5 of them take at
# least 5 sleeps' (0.5 s), one after another.
set -euo pipefail

# Absolute: a preloaded name without a slash would be searched for on the
# library path instead of taken as the file.
target=$(realpath "$1")
hooks=$(realpath "$2")
fail() {
  echo "preload_test: FAIL: $*" >&2
  exit 1
}

# A sanitizer's runtime must come first in the initial library list (ASan
# refuses to start otherwise): a preloaded library comes before everything
# the program links, so the runtime the program links is preloaded ahead
# of the hooks (whose own build is the same sanitized one).
preload=$hooks
runtime=$(ldd "$target" | awk '/lib(a|t)san\.so/ { print $3; exit }')
if [[ -n $runtime ]]; then
  echo "preload_test: sanitized build: preloading $runtime ahead of the hooks"
  preload=$runtime:$hooks
fi

# run ARGS...: preload_target's line "tasks N hooks yes|no elapsed S".
run() {
  local out
  out=$("$@") || fail "$* exited with status $?"
  echo "preload_test: $out" >&2
  [[ $out =~ ^tasks\ [0-9]+\ hooks\ (yes|no)\ elapsed\ ([0-9.]+)$ ]] || fail "unexpected output: $out"
  hooked=${BASH_REMATCH[1]}
  elapsed=${BASH_REMATCH[2]}
}
# at_least A B: whether A >= B (seconds, as decimals).
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

run env LD_PRELOAD="$preload" "$target" 200
[[ $hooked == yes ]] || fail "LD_PRELOAD=$preload did not load the hooks"
# 0.1 s of sleeping, plus 200 fibers' start-up; the bound is generous for a
# loaded machine and still a tenth of the 20 s the sleeps would add up to.
at_least "$elapsed" 0.1 || fail "200 sleeps of 0.1 s took $elapsed s: a sleep ended early"
at_least 2.0 "$elapsed" || fail "200 sleeps of 0.1 s took $elapsed s with the hooks: they did not overlap"
preloaded=$elapsed

run "$target" 5
[[ $hooked == no ]] || fail "the hooks are loaded without LD_PRELOAD: the target must not link them"
at_least "$elapsed" 0.5 || fail "5 sleeps of 0.1 s took $elapsed s without the hooks: they overlapped"

echo "preload_test: 200 tasks preloaded: $preloaded s; 5 tasks without the hooks: $elapsed s"
