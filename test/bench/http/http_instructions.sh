#!/usr/bin/env bash
# http_instructions.sh HTTP_HELLO [N] [ab|short]: instructions per request
# of samples/http_hello, counted by callgrind (deterministic: machine noise
# does not enter). The server runs under callgrind while a client sends N
# requests, one at a time on one connection, then once more with N/10:
#   ab     (the default) `ab -k -c 1`: HTTP/1.0 keep-alive, four headers
#          (Connection, Host, User-Agent, Accept)
#   short  a python3 client sending "GET / HTTP/1.1" and a Host header only,
#          as wrk does
# It prints
#   total      all the server's instructions / N (start-up and shutdown included)
#   marginal   (Ir(N) - Ir(N/10)) / (N - N/10): the cost of one more request
#   serve      inclusive Ir of serve() / N: the connection's task, as callgrind
#              attributes it across fiber switches
# and the marginal figure split by object (the executable, libfiberloop,
# libc, libstdc++: self Ir, what the compiler inlined counts where it went).
# Kernel time (the syscalls) is not counted by callgrind. Needs valgrind and
# ab or python3 (Debian: valgrind, apache2-utils); skipped (exit 77) without.
# Example, a release build: test/bench/http/http_instructions.sh build-h/samples/http_hello 20000
set -euo pipefail

exe=$1
n=${2:-20000}
n0=$((n / 10))
client=${3:-ab}
case $client in
  ab) need=ab ;;
  short) need=python3 ;;
  *) echo "usage: $0 HTTP_HELLO [N] [ab|short]" >&2; exit 2 ;;
esac
for tool in valgrind callgrind_annotate $need; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "http_instructions: $tool is not installed; skipping (apt-get install valgrind apache2-utils)"
    exit 77
  fi
done
tmp=$(mktemp -d)
pid=
cleanup() {
  [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "http_instructions: $*" >&2
  exit 1
}

# count K: runs the server under callgrind for K requests; leaves $tmp/K.cg.
count() {
  local k=$1 port=
  : >"$tmp/$k.out"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/$k.cg" "$exe" 0 >"$tmp/$k.out" 2>"$tmp/$k.err" &
  pid=$!
  for _ in $(seq 300); do  # 30 s at most: valgrind starts slowly
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$k.out")
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || fail "server exited: $(cat "$tmp/$k.err")"
    sleep 0.1
  done
  [[ -n "$port" ]] || fail "server did not start listening"
  if [[ $client == ab ]]; then
    timeout 600 ab -k -q -n "$k" -c 1 -s 30 "http://127.0.0.1:$port/" >"$tmp/ab.$k" 2>&1 ||
      fail "ab failed: $(cat "$tmp/ab.$k")"
    grep -q "^Complete requests: *$k$" "$tmp/ab.$k" || fail "ab: $(cat "$tmp/ab.$k")"
    grep -q "^Failed requests: *0$" "$tmp/ab.$k" || fail "ab: $(cat "$tmp/ab.$k")"
    grep -q "^Keep-Alive requests: *$k$" "$tmp/ab.$k" || fail "ab: $(cat "$tmp/ab.$k")"
  else
    timeout 600 python3 - "$port" "$k" <<'PY' || fail "the short client failed"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
reply = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
         b"Connection: keep-alive\r\n\r\nHello, world\n")
for _ in range(n):
    s.sendall(request)
    got = b""
    while len(got) < len(reply):
        chunk = s.recv(len(reply) - len(got))
        if not chunk:
            sys.exit("closed")
        got += chunk
    if got != reply:
        sys.exit("reply: %r" % got)
PY
  fi
  kill -TERM "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "server did not stop"
  wait "$pid" || fail "server exited with status $?: $(cat "$tmp/$k.err")"
  pid=
}
total() { awk '/^(summary|totals):/ && !done { print $2; done = 1 }' "$tmp/$1.cg"; }

count "$n0"
count "$n"
ir=$(total "$n")
ir0=$(total "$n0")
# Inclusive Ir of serve (http_serve::serve, samples/http_serve.hpp: the task of each connection).
serve=$(callgrind_annotate --inclusive=yes --threshold=100 "$tmp/$n.cg" 2>/dev/null |
  awk '/serve\(fiberloop::net::StreamReader, fiberloop::net::StreamWriter\)/ && !done { gsub(",", "", $1); print $1; done = 1 }')
# Self Ir per object (the lines of callgrind_annotate end in [object path]),
# marginal as above: (Ir(N) - Ir(N/10)) / (N - N/10).
by_object() {
  callgrind_annotate --threshold=100 "$tmp/$1.cg" 2>/dev/null |
    awk '$NF ~ /^\[.*\]$/ { o = $NF; sub(/^\[.*\//, "", o); sub(/\]$/, "", o); sub(/\.so.*/, "", o)
                             gsub(",", "", $1); s[o] += $1 }
         END { for (o in s) print o, s[o] }'
}
objects=$(join <(by_object "$n" | sort) <(by_object "$n0" | sort) |
  awk -v client="$client" -v n="$n" -v n0="$n0" '{ d = ($2 - $3) / (n - n0); if (d >= 1) printf "  %-22s %6.0f\n", $1, d }' | sort -k2 -nr)
awk -v client="$client" -v n="$n" -v n0="$n0" -v ir="$ir" -v ir0="$ir0" -v serve="${serve:-0}" 'BEGIN {
  printf "requests   %d (and %d for the marginal figure), client %s\n", n, n0, client
  printf "total      %.0f Ir/request\n", ir / n
  printf "marginal   %.0f Ir/request\n", (ir - ir0) / (n - n0)
  printf "serve      %.0f Ir/request (inclusive)\n", serve / n
}'
echo "marginal Ir/request by object (self):"
echo "$objects"
