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

# echo_server + echo_client, then SIGTERM.
launch echo "$echo_server" 0
out=$(timeout 30 "$echo_client" "$port" 20 200) || fail "echo_client failed: $out"
[[ "$out" == "echo_client: 4000 of 4000 echoes correct" ]] || fail "echo_client said: $out"
kill -TERM "$pid"
finish "$pid" echo

# echo_server --loops 2: both loops listen before the line is printed, the
# kernel spreads 20 connections over them, SIGTERM stops every loop.
launch echo_loops "$echo_server" 0 --loops 2
out=$(timeout 30 "$echo_client" "$port" 20 200) || fail "echo_client (2 loops) failed: $out"
[[ "$out" == "echo_client: 4000 of 4000 echoes correct" ]] || fail "echo_client (2 loops) said: $out"
kill -TERM "$pid"
finish "$pid" echo_loops
a0=$(sed -n 's/^echo_server: loop 0 accepted \([0-9]*\) connections$/\1/p' "$tmp/echo_loops.out")
a1=$(sed -n 's/^echo_server: loop 1 accepted \([0-9]*\) connections$/\1/p' "$tmp/echo_loops.out")
[[ -n "$a0" && -n "$a1" ]] && ((a0 + a1 == 20)) || fail "loops accepted '$a0' + '$a1', not 20"

# Ctrl-C stops a group too: every loop's main task is cancelled. (A
# background job starts with SIGINT ignored; env gives it the default back.)
launch echo_loops_int env --default-signal=INT "$echo_server" 0 --loops 2
kill -INT "$pid"
finish "$pid" echo_loops_int
grep -q "interrupted" "$tmp/echo_loops_int.out" || fail "SIGINT did not interrupt the group"

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

# The replies byte for byte, and whether the connection stays open after
# each (a second request on the same socket gets its answer) or closes
# (reading returns end of stream). HTTP/1.0 keeps alive only with
# "Connection: keep-alive" (what `ab -k` sends), HTTP/1.1 unless "Connection:
# close"; bodies are read and dropped; errors are answered and close. Every
# socket wait is bounded (5 s), and the whole exchange too (60 s).
if command -v python3 >/dev/null 2>&1; then
  out=$(timeout 60 python3 - "$port" 2>&1 <<'PY'
import socket, sys
port = int(sys.argv[1])
LIMIT = 64 * 1024  # the stream's default limit: the longest request head

def hello(keep_alive, head=False):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
            b"Connection: " + (b"keep-alive" if keep_alive else b"close") + b"\r\n\r\n" +
            (b"" if head else b"Hello, world\n"))

def refused(status):
    body = status + b"\n"
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

def read_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data

# check sends request on a new connection and expects exactly reply, then
# the connection open (stays_open) or closed. reset_ok: the server closes
# with some of the request still unread, which makes the kernel reset the
# connection after the reply instead of ending it.
def check(name, request, reply, stays_open, reset_ok=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            if not reset_ok:
                raise
        got = read_exactly(s, len(reply))
        if got != reply:
            sys.exit("%s: got %r, expected %r" % (name, got[:300], reply))
        if stays_open:
            s.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
            got = read_exactly(s, len(hello(True)))
            if got != hello(True):
                sys.exit("%s: the connection did not stay open: %r" % (name, got))
        else:
            try:
                extra = s.recv(4096)
            except ConnectionResetError:
                if not reset_ok:
                    raise
                extra = b""
            if extra:
                sys.exit("%s: bytes after the reply: %r" % (name, extra))
    except socket.timeout:
        sys.exit("%s: timed out (5 s)" % name)
    finally:
        s.close()

def get(version, *headers, method=b"GET", body=b""):
    return (method + b" / " + version + b"\r\nHost: t\r\n" +
            b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)

H10, H11 = b"HTTP/1.0", b"HTTP/1.1"
check("1.0 keep-alive", get(H10, b"Connection: keep-alive"), hello(True), True)
check("1.0 token list", get(H10, b"connection: Upgrade, KEEP-ALIVE"), hello(True), True)
check("1.0 plain", get(H10), hello(False), False)
check("1.0 keep-alive, close", get(H10, b"Connection: keep-alive, close"), hello(False), False)
check("1.1 plain", get(H11), hello(True), True)
check("1.1 close", get(H11, b"Connection: close"), hello(False), False)
check("1.1 token list", get(H11, b"Connection: Upgrade,  Close "), hello(False), False)
check("1.1 HEAD", get(H11, method=b"HEAD"), hello(True, head=True), True)
check("1.0 HEAD", get(H10, b"Connection: keep-alive", method=b"HEAD"), hello(True, head=True), True)
check("bare LF", b"GET / HTTP/1.1\nHost: t\n\n", hello(True), True)
# Pipelined: three requests in one send, three replies.
check("pipelined", b"".join(get(H10, b"Connection: Keep-Alive", method=m) for m in (b"GET", b"HEAD", b"GET")),
      hello(True) + hello(True, head=True) + hello(True), True)
# A body is read and dropped, however large; the next request follows it.
check("GET with body", get(H11, b"Content-Length: 5", body=b"hello"), hello(True), True)
check("1 MiB body", get(H11, b"Content-Length: %d" % (1 << 20), body=b"x" * (1 << 20)), hello(True), True)
check("POST with body", get(H11, b"Content-Length: 11", b"Content-Type: text/plain", method=b"POST",
                            body=b"hello=world"), refused(b"405 Method Not Allowed"), False)
check("PUT", get(H10, b"Connection: keep-alive", method=b"PUT"), refused(b"405 Method Not Allowed"), False)
# Heads over the limit: many lines (all of it read, so the close is clean),
# and one line longer than the limit (the rest of it is unread at close).
long_head = b"GET / HTTP/1.1\r\n"
while len(long_head) <= LIMIT:
    long_head += b"X-Fill: " + b"a" * 990 + b"\r\n"
check("431 many lines", long_head, refused(b"431 Request Header Fields Too Large"), False)
check("431 one line", get(H11, b"X-Long: " + b"a" * (LIMIT + 5000)),
      refused(b"431 Request Header Fields Too Large"), False, reset_ok=True)
# Malformed: answered at once (even without the empty line that ends a head).
for name, request in (("no version", b"GET /\r\n"), ("garbage", b"GARBAGE\r\n\r\n"),
                      ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n"), ("empty target", b"GET  HTTP/1.1\r\n\r\n"),
                      ("no colon", get(H11, b"no colon here")),
                      ("length abc", get(H11, b"Content-Length: abc")),
                      ("length -1", get(H11, b"Content-Length: -1")),
                      ("length overflow", get(H11, b"Content-Length: 99999999999999999999999")),
                      ("two lengths", get(H11, b"Content-Length: 1", b"Content-Length: 1", body=b"x"))):
    check(name, request, refused(b"400 Bad Request"), False)
check("chunked", get(H11, b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), refused(b"501 Not Implemented"), False)
print("ok")
PY
  ) || fail "HTTP exchanges failed: $out"
  [[ "$out" == "ok" ]] || fail "HTTP exchanges said: $out"
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

# ab -k (ApacheBench, Debian's apache2-utils): HTTP/1.0 keep-alive, 10 at once.
if command -v ab >/dev/null 2>&1; then
  timeout 60 ab -k -q -n 2000 -c 10 -s 5 "http://127.0.0.1:$port/" >"$tmp/ab.out" 2>&1 ||
    fail "ab -k failed: $(cat "$tmp/ab.out")"
  grep -q "^Complete requests: *2000$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
  grep -q "^Failed requests: *0$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
  grep -q "^Keep-Alive requests: *2000$" "$tmp/ab.out" || fail "ab -k: $(cat "$tmp/ab.out")"
else
  echo "net_samples_test: ab (apache2-utils) not installed; skipping the ab -k check"
fi

# curl_twice NAME ARGS...: two GETs in one curl call; the body must come
# twice, and $tmp/NAME.err holds curl's account of the connections.
curl_twice() {
  local name=$1 body
  shift
  body=$(timeout 10 curl -sS -v --max-time 5 "$@" "http://127.0.0.1:$port/" "http://127.0.0.1:$port/x" \
    2>"$tmp/$name.err") || fail "curl $name failed: $(cat "$tmp/$name.err")"
  [[ "$body" == $'Hello, world\nHello, world' ]] || fail "curl $name got: $body"
}
reused() { grep -qi "re-using existing connection\|reusing existing connection" "$tmp/$1.err"; }
if command -v curl >/dev/null 2>&1; then
  curl_twice curl11
  reused curl11 || fail "curl (HTTP/1.1) did not keep the connection alive: $(cat "$tmp/curl11.err")"
  curl_twice curl10ka --http1.0 -H 'Connection: keep-alive'
  reused curl10ka || fail "curl --http1.0 keep-alive did not reuse the connection: $(cat "$tmp/curl10ka.err")"
  curl_twice curl10 --http1.0
  reused curl10 && fail "curl --http1.0 reused a connection the server should have closed: $(cat "$tmp/curl10.err")"
else
  echo "net_samples_test: curl not installed; raw socket check only"
fi
out=$(timeout 30 "$fetch_many" 30 5 5.0 "$port") || fail "fetch_many failed: $out"
grep -q "^ok: 30$" <<<"$out" || fail "fetch_many said: $out"
kill -INT "$pid"
finish "$pid" http
echo "net_samples_test: all good"
