#!/usr/bin/env bash
# compile_fail.sh SNIPPET EXPECTED -- COMPILER ARGS...: passes when compiling
# SNIPPET fails and the diagnostics contain EXPECTED (a fixed string).
set -uo pipefail
snippet=$1 expected=$2
shift 2
[[ $1 == -- ]] && shift
out=$("$@" -fsyntax-only "$snippet" 2>&1)
status=$?
if ((status == 0)); then
  echo "compile_fail: $snippet compiled, but must not" >&2
  exit 1
fi
if ! grep -qF -- "$expected" <<<"$out"; then
  echo "compile_fail: $snippet failed without the expected message: $expected" >&2
  echo "$out" | head -40 >&2
  exit 1
fi
echo "compile_fail: $snippet refused with: $expected"
