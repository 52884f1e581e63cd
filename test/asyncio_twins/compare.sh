#!/usr/bin/env bash
# usage: compare.sh <twins-exe> <scenario.py> <scenario>
# Runs the Python scenario with python3 and its C++ twin, and compares what
# they print. Exits 77 (skipped) without python3 >= 3.11 (asyncio.timeout,
# TaskGroup), 0 when both print the same, 1 otherwise (diff on stderr).
set -euo pipefail
if (($# != 3)); then
  echo "usage: $0 <twins-exe> <scenario.py> <scenario>" >&2
  exit 1
fi
exe=$1 script=$2 scenario=$3
if ! command -v python3 >/dev/null 2>&1 ||
  ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "compare.sh: python3 >= 3.11 not found; skipping" >&2
  exit 77
fi
expected=$(mktemp)
actual=$(mktemp)
trap 'rm -f "$expected" "$actual"' EXIT
timeout -k 5 30 python3 "$script" >"$expected"
timeout -k 5 30 "$exe" "$scenario" >"$actual"
if ! cmp -s "$expected" "$actual"; then
  echo "compare.sh: $scenario differs from asyncio ($script):" >&2
  diff -u --label asyncio --label fiberloop "$expected" "$actual" >&2 || true
  exit 1
fi
echo "$scenario: $(wc -l <"$actual") lines, the same as asyncio"
