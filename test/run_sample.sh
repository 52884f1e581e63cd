#!/usr/bin/env bash
# usage: run_sample.sh <exe> <expected-stdout-file>
# Runs <exe> (20 s timeout) and compares its stdout byte-for-byte with the
# expected file. Exits 0 on match, 1 otherwise (diff / reason on stderr).
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 <exe> <expected-file>" >&2
  exit 1
fi
exe=$1
expected=$2

if [[ ! -f "$expected" ]]; then
  echo "run_sample.sh: expected-output file not found: $expected" >&2
  exit 1
fi

actual=$(mktemp)
trap 'rm -f "$actual"' EXIT

status=0
timeout -k 5 20 "$exe" >"$actual" || status=$?

if ((status == 124 || status == 137)); then
  echo "run_sample.sh: $exe timed out after 20 s" >&2
  exit 1
fi
if ((status != 0)); then
  echo "run_sample.sh: $exe exited with status $status" >&2
  exit 1
fi

if ! cmp -s "$expected" "$actual"; then
  echo "run_sample.sh: stdout of $exe differs from $expected:" >&2
  diff -u --label expected --label actual "$expected" "$actual" >&2 || true
  exit 1
fi
exit 0
