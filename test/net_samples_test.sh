#!/usr/bin/env bash
# usage: net_samples_test.sh ECHO_SERVER ECHO_CLIENT HTTP_HELLO FETCH_MANY
# Runs the networking samples against each other on 127.0.0.1 (port 0: the
# servers pick a free port and print it). Every wait is bounded.
set -euo pipefail

if (($# != 4)); then
  echo "usage: $0 ECHO_SERVER ECHO_CLIENT HTTP_HELLO FETCH_MANY" >&2
  exit 1
fi
echo_server=$1 echo_client=$2 http_hello=$3 fetch_many=$4
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "net_samples_test: $*" >&2
  for f in "$tmp"/*.out; do echo "--- $f" >&2; cat "$f" >&2; done
  exit 1
}

# launch NAME EXE ARGS...: starts a server in the background and waits (5 s
# at most) for its "listening on" line; sets $pid and $port.
launch() {
  local name=$1
  shift
  "$@" >"$tmp/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do
    grep -q "listening on" "$tmp/$name.out" && break
    sleep 0.1
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.out")
  [[ -n "$port" ]] || fail "$name did not start listening"
}

# finish PID NAME: waits (10 s at most) for it to exit; it must exit 0.
finish() {
  local pid=$1 name=$2 status=0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "$name did not exit"
  wait "$pid" || status=$?
  ((status == 0)) || fail "$name exited with status $status"
  grep -q "stopped" "$tmp/$name.out" || fail "$name did not report stopping"
}

# echo_server + echo_client, then SIGTERM.
launch echo "$echo_server" 0
out=$(timeout 30 "$echo_client" "$port" 20 200) || fail "echo_client failed: $out"
[[ "$out" == "echo_client: 4000 of 4000 echoes correct" ]] || fail "echo_client said: $out"
kill -TERM "$pid"
finish "$pid" echo

# echo_server SECONDS stops by itself.
launch echo_timed "$echo_server" 0 0.3
finish "$pid" echo_timed

# http_hello: keep-alive over a raw socket (two requests, one connection),
# then curl if installed, then fetch_many against it, then SIGINT.
launch http "$http_hello" 0
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /again HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
raw=$(timeout 5 cat <&3) || fail "raw HTTP exchange did not end"
exec 3<&-
n=$(grep -c "HTTP/1.1 200 OK" <<<"$raw" || true)
((n == 2)) || fail "expected 2 responses on one connection, got: $raw"
grep -q "Hello, world" <<<"$raw" || fail "no body in: $raw"
if command -v curl >/dev/null 2>&1; then
  body=$(timeout 10 curl -sS -v --max-time 5 "http://127.0.0.1:$port/" "http://127.0.0.1:$port/x" 2>"$tmp/curl.err") ||
    fail "curl failed: $(cat "$tmp/curl.err")"
  [[ "$body" == $'Hello, world\nHello, world' ]] || fail "curl got: $body"
  grep -qi "re-using existing connection\|reusing existing connection" "$tmp/curl.err" ||
    fail "curl did not keep the connection alive: $(cat "$tmp/curl.err")"
else
  echo "net_samples_test: curl not installed; raw socket check only"
fi
out=$(timeout 30 "$fetch_many" 30 5 5.0 "$port") || fail "fetch_many failed: $out"
grep -q "^ok: 30$" <<<"$out" || fail "fetch_many said: $out"
kill -INT "$pid"
finish "$pid" http
echo "net_samples_test: all good"
