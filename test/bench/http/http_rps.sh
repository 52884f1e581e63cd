#!/usr/bin/env bash
# http_rps.sh HTTP_HELLO [SECONDS] [CONNECTIONS] [wrk|ab]: requests per
# second of server CPU time for samples/http_hello (user + system, from
# /proc/PID/stat), under wrk (keep-alive HTTP/1.1, a Host header only;
# Debian: wrk) or `ab -k` (HTTP/1.0 keep-alive, four headers); wrk when
# installed, unless told. The server is pinned to CPU 0 and the
# client to CPU 1. Wall-clock figures vary with what else runs on the
# machine; the per-CPU-second figure less so, but it is not deterministic:
# compare runs made one after the other. Skipped (exit 77) without a client.
# Example: test/bench/http/http_rps.sh build-h/samples/http_hello 5 10
set -euo pipefail

exe=$1
seconds=${2:-5}
conns=${3:-10}
client=${4:-}
if [[ -z $client ]]; then
  client=ab
  command -v wrk >/dev/null 2>&1 && client=wrk
fi
if ! command -v "$client" >/dev/null 2>&1; then
  echo "http_rps: $client is not installed; skipping (apt-get install wrk apache2-utils)"
  exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
  [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "http_rps: $*" >&2
  exit 1
}

: >"$tmp/server.out"
taskset -c 0 "$exe" 0 >"$tmp/server.out" 2>&1 &
pid=$!
for _ in $(seq 50); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.out")
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "${port:-}" ]] || fail "server did not start listening"
url="http://127.0.0.1:$port/"
ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }  # utime + stime, in ticks

before=$(cpu)
if [[ $client == wrk ]]; then
  timeout $((seconds + 30)) taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" "$url" >"$tmp/client.out" 2>&1 ||
    fail "wrk failed: $(cat "$tmp/client.out")"
  requests=$(awk '/requests in/ { print $1 }' "$tmp/client.out")
  if grep -q "Non-2xx\|Socket errors" "$tmp/client.out"; then fail "wrk saw errors: $(cat "$tmp/client.out")"; fi
else
  n=$((seconds * 40000))
  timeout $((seconds * 10 + 30)) taskset -c 1 ab -k -q -n "$n" -c "$conns" "$url" >"$tmp/client.out" 2>&1 ||
    fail "ab failed: $(cat "$tmp/client.out")"
  grep -q "^Failed requests: *0$" "$tmp/client.out" || fail "ab: $(cat "$tmp/client.out")"
  requests=$n
fi
after=$(cpu)
kill -TERM "$pid"
wait "$pid" || fail "server exited with status $?"
pid=
awk -v r="$requests" -v t=$((after - before)) -v hz="$ticks" -v c="$client" -v k="$conns" 'BEGIN {
  printf "%s, %d connections: %d requests, server CPU %.2f s, %.0f requests per server CPU-second\n",
    c, k, r, t / hz, (t > 0 ? r / (t / hz) : 0)
}'
