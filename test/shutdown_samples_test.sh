#!/usr/bin/env bash
# usage: shutdown_samples_test.sh GRACEFUL_SHUTDOWN RUN_COMMANDS
# The signal and subprocess samples (issue 19): graceful_shutdown on
# 127.0.0.1 (port 0: it picks a free port and prints it) stopped by SIGTERM
# and SIGINT with a request in flight, within its deadline and past it; then
# run_commands with commands of our own. Every wait is bounded.
set -euo pipefail
source "$(dirname "$0")/listening.sh"

if (($# != 2)); then
  echo "usage: $0 GRACEFUL_SHUTDOWN RUN_COMMANDS" >&2
  exit 1
fi
graceful=$1 run_commands=$2
tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n "$pid" ]]; then kill -KILL -- "-$pid" "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "shutdown_samples_test: $*" >&2
  for f in "$tmp"/*.out; do
    [[ -e "$f" ]] || continue
    echo "--- $f" >&2
    cat "$f" >&2
  done
  exit 1
}

# launch NAME ARGS...: starts graceful_shutdown in the background and waits
# (5 s at most) for its "listening on" line; sets $pid and $port.
launch() {
  local name=$1
  shift
  "$graceful" 0 "$@" >"$tmp/$name.out" 2>&1 &
  pid=$!
  wait_listening "$name"
}

# wait_line NAME TEXT: waits (10 s at most) for TEXT in NAME's output.
wait_line() {
  for _ in $(seq 100); do
    grep -qF "$2" "$tmp/$1.out" && return
    sleep 0.1
  done
  fail "$1 never said: $2"
}

# finish NAME BOUND: it must exit 0 within BOUND tenths of a second.
finish() {
  local name=$1 status=0
  for _ in $(seq "$2"); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "$name did not exit within $(($2 / 10)) s"
  wait "$pid" || status=$?
  pid=
  ((status == 0)) || fail "$name exited with status $status"
}

# request FD SECONDS: sends a request on FD and waits (5 s) for "started".
request() {
  printf '%s\n' "$2" >&"$1"
  local line
  IFS= read -r -t 5 line <&"$1" || fail "no answer to request $2"
  [[ "$line" == "started $2" ]] || fail "request $2 answered: $line"
}

# refused: a new connection must fail now that the listener is closed.
refused() {
  if (exec 5<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "$1: a new connection was accepted after the signal"
  fi
}

# (a) SIGTERM with a request in flight and an idle connection: the request
# completes, the idle connection is told and closed, new ones are refused.
launch term
exec 3<>"/dev/tcp/127.0.0.1/$port" 4<>"/dev/tcp/127.0.0.1/$port"
request 3 0.01  # a request answered before the signal: this connection is idle now
IFS= read -r -t 5 line <&3 || fail "(a) no end to the first request"
[[ "$line" == "done 0.01" ]] || fail "(a) first request answered: $line"
request 4 1.5
kill -TERM "$pid"
wait_line term "signal 15, stopping: 1 request in flight"
refused "(a)"
rest=$(timeout 5 cat <&4) || fail "(a) the in-flight connection did not end"
[[ "$rest" == "done 1.5" ]] || fail "(a) the in-flight request ended with: $rest"
rest=$(timeout 5 cat <&3) || fail "(a) the idle connection was not closed"
[[ "$rest" == "bye: shutting down" ]] || fail "(a) the idle connection got: $rest"
exec 3<&- 4<&-
finish term 100
grep -qx "graceful_shutdown: all done" "$tmp/term.out" || fail "(a) no 'all done'"
grep -q "cancelled" "$tmp/term.out" && fail "(a) cancelled a request that had time"

# (b) A request that outlasts a short deadline is cancelled, and its client
# told; the process still exits 0, soon after the deadline.
launch deadline --deadline 0.5
exec 3<>"/dev/tcp/127.0.0.1/$port"
request 3 60
kill -TERM "$pid"
wait_line deadline "stopping: 1 request in flight"
refused "(b)"
rest=$(timeout 5 cat <&3) || fail "(b) the cancelled connection did not end"
[[ "$rest" == "cancelled: shutting down" ]] || fail "(b) the cancelled request ended with: $rest"
exec 3<&-
finish deadline 50
grep -qx "graceful_shutdown: deadline: cancelled 1 request" "$tmp/deadline.out" ||
  fail "(b) did not say it cancelled the request"

# (c) SIGINT: the same as SIGTERM (the sample's handler replaces run()'s
# Ctrl-C, which would end in status 130); nothing in flight here.
launch int
exec 3<>"/dev/tcp/127.0.0.1/$port"
kill -INT "$pid"
wait_line int "signal 2, stopping: 0 requests in flight"
refused "(c)"
rest=$(timeout 5 cat <&3) || fail "(c) the idle connection was not closed"
[[ "$rest" == "bye: shutting down" ]] || fail "(c) the idle connection got: $rest"
exec 3<&-
finish int 50
grep -qx "graceful_shutdown: all done" "$tmp/int.out" || fail "(c) no 'all done'"

# (d) run_commands -j 2: every line prefixed with its command, stderr in
# the same stream, each exit status reported, never more than 2 at once.
status=0
timeout 30 "$run_commands" -j 2 'echo one; echo oops >&2' 'exit 3' 'sleep 0.2; echo three' \
  'printf "no newline"' 'kill -TERM $$' >"$tmp/run.out" 2>&1 || status=$?
((status == 0)) || fail "(d) run_commands exited with status $status"
for want in '[cmd 1] $ echo one; echo oops >&2' '[cmd 1] one' '[cmd 1] oops' '[cmd 2] $ exit 3' \
  '[cmd 3] three' '[cmd 4] no newline' \
  '[cmd 1] exit status 0' '[cmd 2] exit status 3' '[cmd 3] exit status 0' \
  '[cmd 4] exit status 0' '[cmd 5] killed by signal 15' \
  '5 commands, at most 2 at a time, 2 failed'; do
  grep -qxF -- "$want" "$tmp/run.out" || fail "(d) run_commands did not print: $want"
done
# One command's lines stay in order; the report comes last.
[[ "$(grep -n '^\[cmd 1\]' "$tmp/run.out" | head -3 | cut -d: -f2-)" == \
  $'[cmd 1] $ echo one; echo oops >&2\n[cmd 1] one\n[cmd 1] oops' ]] || fail "(d) cmd 1's lines out of order"
[[ "$(tail -n 1 "$tmp/run.out")" == "5 commands, at most 2 at a time, 2 failed" ]] ||
  fail "(d) the summary is not last"

# -j 1 runs one at a time; -k prints a slow first command's lines before a
# fast second one's, although they ran at once.
timeout 30 "$run_commands" -j 1 'echo a' 'echo b' >"$tmp/serial.out" 2>&1 || fail "(d) -j 1 failed"
grep -qxF "2 commands, at most 1 at a time, 0 failed" "$tmp/serial.out" || fail "(d) -j 1 ran more at once"
timeout 30 "$run_commands" -k 'sleep 0.5; echo slow' 'echo fast' >"$tmp/keep.out" 2>&1 ||
  fail "(d) -k failed"
[[ "$(grep -v '^\[cmd .\] \$' "$tmp/keep.out" | head -2)" == $'[cmd 1] slow\n[cmd 2] fast' ]] ||
  fail "(d) -k did not keep the order"

# Ctrl-C ends run_commands with status 130, its commands too. A terminal's
# Ctrl-C is SIGINT to the whole foreground process group with SIGINT's
# default disposition: setsid makes run_commands a group of its own, env
# resets the disposition (a background job of a script ignores SIGINT).
if command -v setsid >/dev/null 2>&1 && env --default-signal=INT true 2>/dev/null; then
  setsid env --default-signal=INT "$run_commands" 'sleep 30' 'echo started; sleep 30' \
    >"$tmp/ctrlc.out" 2>&1 &
  pid=$!
  wait_line ctrlc "[cmd 2] started"
  kill -INT -- "-$pid"
  status=0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "(d) run_commands did not stop on SIGINT"
  wait "$pid" || status=$?
  ((status == 130)) || fail "(d) run_commands exited with $status after SIGINT, not 130"
  for _ in $(seq 50); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 -- "-$pid" 2>/dev/null && fail "(d) run_commands' commands outlived Ctrl-C"
  pid=
else
  echo "shutdown_samples_test: no setsid or env --default-signal; skipping run_commands' Ctrl-C check"
fi
echo "shutdown_samples_test: all good"
