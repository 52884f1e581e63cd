#!/usr/bin/env bash
# usage: redis_sample_test.sh REDIS_TASKS
# Runs samples/redis_tasks (hiredis's blocking API in fiberloop tasks, made
# concurrent by libfiberloop-hooks) against a redis-server of its own on
# 127.0.0.1, and checks what it reports: every INCR counted once, no task
# failed, and many tasks inside a redis call at the same moment. Skips
# (exit 77) without redis-server. Every wait is bounded.
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 REDIS_TASKS" >&2
  exit 1
fi
sample=$1
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis_sample_test: skipping: redis-server not installed (apt-get install redis-server)"
  exit 77
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "redis_sample_test: $*" >&2
  for f in "$tmp"/*.out "$tmp"/*.log; do
    [[ -f "$f" ]] || continue
    echo "--- $f" >&2
    cat "$f" >&2
  done
  exit 1
}

# free_port: a loopback port nobody listens on now (python3 when there is
# one, else a random high port); another process may take it first, so
# start_redis tries again with another.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 30000))
  fi
}

# start_redis: a redis-server on 127.0.0.1 that persists nothing; sets $pid
# and $port once its log says it accepts connections (5 s at most a try).
start_redis() {
  for _ in 1 2 3; do
    port=$(free_port)
    : >"$tmp/redis.log"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" >"$tmp/redis.out" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
      grep -q "Ready to accept connections" "$tmp/redis.log" && return 0
      kill -0 "$pid" 2>/dev/null || break  # exited: the port was taken
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  done
  fail "redis-server did not start"
}

start_redis

# The usage errors come first: they need no server.
status=0
"$sample" >"$tmp/usage.out" 2>&1 || status=$?
((status == 2)) || fail "no arguments: exit status $status, want 2"
grep -q "usage: redis_tasks HOST PORT" "$tmp/usage.out" || fail "no usage message"

tasks=50
status=0
timeout 60 "$sample" 127.0.0.1 "$port" "$tasks" >"$tmp/sample.out" 2>&1 || status=$?
((status == 0)) || fail "redis_tasks exited with status $status"
out=$(cat "$tmp/sample.out")
grep -q "^redis_tasks: $tasks tasks, 15000 commands in [0-9.]* s on one thread$" <<<"$out" ||
  fail "no summary line"
grep -q "^counter: 5000 (expected 5000)$" <<<"$out" || fail "the counter is wrong"
grep -q "^tasks failed: 0$" <<<"$out" || fail "some tasks failed"
most=$(sed -n 's/^most tasks inside a redis call at once: \([0-9]*\)$/\1/p' <<<"$out")
[[ -n "$most" ]] || fail "no concurrency line"
# Without the hooks the calls would run one at a time: 1. All 50 tasks
# wait on Redis together, once connected; half of them is a safe floor.
((most >= tasks / 2)) || fail "only $most tasks inside a redis call at once"
waits=$(sed -n 's/^waits on the loop instead of blocking: \([0-9]*\)$/\1/p' <<<"$out")
((${waits:-0} > 0)) || fail "the hooks made no waits"
if command -v redis-cli >/dev/null 2>&1; then
  # What Redis itself holds: the counter the sample reported.
  got=$(timeout 10 redis-cli -p "$port" GET redis_tasks:counter 2>&1) || true
  [[ "$got" == "5000" ]] || fail "redis-cli GET redis_tasks:counter: got '$got'"
fi
echo "redis_sample_test: $(head -1 "$tmp/sample.out"); $most at once"

# Nobody listening: it says so and exits 1, without hanging.
{
  kill -KILL "$pid"
  wait "$pid"
} 2>/dev/null || true  # bash's "Killed" job notice is no failure
pid=""
status=0
timeout 30 "$sample" 127.0.0.1 "$port" 3 >"$tmp/refused.out" 2>&1 || status=$?
((status == 1)) || fail "with no server: exit status $status, want 1"
grep -q "cannot connect to 127.0.0.1:$port" "$tmp/refused.out" || fail "with no server: no message"
echo "redis_sample_test: all good"
