#!/usr/bin/env bash
# stuck_tasks_test.sh STUCK_TASKS: the task dump sample. Without arguments it
# prints a dump of its waiting tasks and ends well; with --hang it stays
# stuck in a cycle, dumps on SIGQUIT (naming the cycle) without ending, and
# ends with 130 on SIGINT.
set -euo pipefail
exe=$1
work=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "stuck_tasks_test: $*" >&2
  for f in "$work"/*; do echo "--- $f" >&2; cat "$f" >&2; done
  exit 1
}
expect() {  # expect FILE TEXT
  grep -qF -- "$2" "$1" || fail "'$2' not in $1"
}
# wait_for FILE TEXT: up to 10 s for TEXT to appear in FILE.
wait_for() {
  for _ in $(seq 100); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "'$2' did not appear in $1 within 10 s"
}

timeout 20 "$exe" >"$work/plain.out" 2>"$work/plain.err" || fail "plain run failed ($?)"
expect "$work/plain.out" 'fiberloop: 8 tasks at loop time'
expect "$work/plain.out" '"updater": waiting'
expect "$work/plain.out" 'on lock, in Lock.acquire()'
expect "$work/plain.out" '"client": waiting'
expect "$work/plain.out" 'readable (peer 127.0.0.1:'
expect "$work/plain.out" '"worker 0": waiting'
expect "$work/plain.out" 'in Queue.get() at ../samples/stuck_tasks.cpp'
expect "$work/plain.out" 'hold_lock_while_slow'
expect "$work/plain.out" 'no cycles of tasks awaiting each other'
expect "$work/plain.out" 'all done: 4 jobs, shared = 1'

# env gives SIGINT back its default disposition: a background job of a
# script starts with it ignored, and run() leaves an ignored SIGINT alone.
env --default-signal=INT "$exe" --hang >"$work/hang.out" 2>"$work/hang.err" &
pid=$!
wait_for "$work/hang.out" 'stuck on purpose'
kill -QUIT "$pid"
wait_for "$work/hang.err" 'cycle: Task'
expect "$work/hang.err" '"left half": waiting'
expect "$work/hang.err" 'on Task'
kill -0 "$pid" 2>/dev/null || fail "the dump ended the program"
kill -QUIT "$pid"  # a second dump, as the first
for _ in $(seq 100); do
  [[ $(grep -c 'cycle: Task' "$work/hang.err") -ge 2 ]] && break
  sleep 0.1
done
[[ $(grep -c 'cycle: Task' "$work/hang.err") -ge 2 ]] || fail "no second dump"
kill -INT "$pid"
status=0
wait "$pid" || status=$?
pid=
[[ $status -eq 130 ]] || fail "Ctrl-C ended it with $status, not 130"
echo "stuck_tasks_test: ok"
