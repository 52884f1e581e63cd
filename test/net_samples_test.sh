#!/usr/bin/env bash
# usage: net_samples_test.sh ECHO_SERVER ECHO_CLIENT HTTP_HELLO FETCH_MANY
# Runs the networking samples against each other on 127.0.0.1 (port 0: the
# servers pick a free port and print it). Every wait is bounded.
set -euo pipefail
source "$(dirname "$0")/listening.sh"

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
  wait_listening "$name"
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

# HTTP/1.0 keep-alive (what `ab -k` sends): each reply says "Connection:
# keep-alive" with a Content-Length, and the connection stays open for the
# next request; HEAD gets the headers only. Every socket wait is bounded
# (5 s), and the whole exchange too (20 s).
if command -v python3 >/dev/null 2>&1; then
  out=$(timeout 20 python3 - "$port" 2>&1 <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
buf = b""
def reply():
    global buf
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed before a reply: %r" % buf)
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    n = int(headers.get("content-length", "-1"))
    return lines[0], headers, n
for method in ("GET", "HEAD", "GET"):
    s.sendall(("%s / HTTP/1.0\r\nHost: t\r\nConnection: Keep-Alive\r\n\r\n" % method).encode())
    status, headers, n = reply()
    if not status.endswith(" 200 OK"):
        sys.exit("status: " + status)
    if headers.get("connection", "").lower() != "keep-alive" or n < 0:
        sys.exit("not a keep-alive reply: %r" % headers)
    if method == "GET":
        while len(buf) < n:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("closed inside the body")
            buf += chunk
        body, buf = buf[:n], buf[n:]
        if body != b"Hello, world\n":
            sys.exit("body: %r" % body)
# HTTP/1.0 without keep-alive, and HTTP/1.1 with "Connection: close": the
# server closes after the reply.
for request in ("GET / HTTP/1.0\r\nHost: t\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"):
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(request.encode())
    data = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    if not data.startswith(b"HTTP/1.1 200 OK") or not data.endswith(b"Hello, world\n"):
        sys.exit("reply: %r" % data)
    c.close()
print("ok")
PY
  ) || fail "HTTP/1.0 keep-alive exchange failed: $out"
  [[ "$out" == "ok" ]] || fail "HTTP/1.0 keep-alive exchange said: $out"
else
  # Without python3: two HTTP/1.0 keep-alive requests on one connection.
  exec 4<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' >&4
  IFS= read -r -t 5 line <&4 || fail "no reply to an HTTP/1.0 keep-alive request"
  [[ "$line" == "HTTP/1.1 200 OK"$'\r' ]] || fail "HTTP/1.0 keep-alive reply: $line"
  printf 'GET / HTTP/1.0\r\n\r\n' >&4
  raw=$(timeout 5 cat <&4) || fail "HTTP/1.0 keep-alive connection did not serve a second request"
  exec 4<&-
  grep -q "HTTP/1.1 200 OK" <<<"$raw" || fail "no second reply on the HTTP/1.0 connection: $raw"
fi

# ab -k (ApacheBench, Debian's apache2-utils): HTTP/1.0 keep-alive, 4 at once.
if command -v ab >/dev/null 2>&1; then
  timeout 60 ab -k -q -n 200 -c 4 -s 5 "http://127.0.0.1:$port/" >"$tmp/ab.out" 2>&1 ||
    fail "ab -k failed: $(cat "$tmp/ab.out")"
  grep -q "^Complete requests: *200$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
  grep -q "^Failed requests: *0$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
  grep -q "^Keep-Alive requests: *200$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
else
  echo "net_samples_test: ab (apache2-utils) not installed; skipping the ab -k check"
fi

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
