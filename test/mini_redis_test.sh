#!/usr/bin/env bash
# usage: mini_redis_test.sh MINI_REDIS
# Talks RESP to samples/mini_redis on 127.0.0.1 (port 0: it picks a free
# port and prints it), in both modes (StreamReader's views, and --batch): first
# with a python3 client of its own (commands, errors, pipelining, requests
# split across sends, malformed requests that must close only their own
# connection), then with redis-cli when it is installed. Every wait is bounded.
set -euo pipefail
source "$(dirname "$0")/listening.sh"

if (($# != 1)); then
  echo "usage: $0 MINI_REDIS" >&2
  exit 1
fi
mini_redis=$1
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "mini_redis_test: $*" >&2
  for f in "$tmp"/*.out; do
    [[ -f "$f" ]] || continue
    echo "--- $f" >&2
    cat "$f" >&2
  done
  exit 1
}

# launch NAME ARGS...: starts the server in the background and waits (5 s at
# most) for its "listening on" line; sets $pid and $port.
launch() {
  local name=$1
  shift
  "$mini_redis" "$@" >"$tmp/$name.out" 2>&1 &
  pid=$!
  wait_listening "$name"
}

# finish NAME: SIGTERM, then (10 s at most) it must exit 0 saying "stopped".
finish() {
  local name=$1 status=0
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "$name did not exit on SIGTERM"
  wait "$pid" || status=$?
  pid=""
  ((status == 0)) || fail "$name exited with status $status"
  grep -q "stopped" "$tmp/$name.out" || fail "$name did not report stopping"
}

command -v python3 >/dev/null 2>&1 || fail "python3 is needed for the RESP client"

cat >"$tmp/client.py" <<'PY'
import socket, sys, time

port = int(sys.argv[1])

class Err(str):
    pass

def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
    def more(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed; unparsed: %r" % self.buf[:200])
        self.buf += chunk
    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line
    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return Err(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.more()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError("not a RESP reply: %r" % line)
    def call(self, *args):
        self.s.sendall(enc(args))
        return self.reply()
    def closed(self):
        # True once the server closed the connection (after any bytes left);
        # a close with our bytes unread is a reset.
        try:
            while True:
                chunk = self.s.recv(4096)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

def check(got, want, what):
    if got != want or type(got) is not type(want):
        sys.exit("%s: got %r, want %r" % (what, got, want))

a = Conn()
check(a.call("PING"), "PONG", "PING")
check(a.call("ping", "hi"), b"hi", "PING with a message")
a.s.sendall(b"PING\r\n")  # inline, as redis-benchmark's PING_INLINE
check(a.reply(), "PONG", "inline PING")
a.s.sendall(b"  set   inl  v1 \r\nGET inl\n")  # spaces, and a bare \n
check(a.reply(), "OK", "inline SET")
check(a.reply(), b"v1", "inline GET")
check(a.call("ECHO", b"a\r\nb\x00c"), b"a\r\nb\x00c", "ECHO of binary")
check(a.call("SET", "k", "v"), "OK", "SET")
check(a.call("GET", "k"), b"v", "GET")
check(a.call("GET", "missing"), None, "GET of a missing key")
check(a.call("SET", "k", ""), "OK", "SET of an empty value")
check(a.call("GET", "k"), b"", "GET of an empty value")
check(a.call("INCR", "n"), 1, "INCR of a new key")
check(a.call("INCR", "n"), 2, "INCR")
check(a.call("SET", "n", "-7"), "OK", "SET -7")
check(a.call("INCR", "n"), -6, "INCR of a negative")
check(a.call("SET", "s", "x1"), "OK", "SET x1")
check(a.call("INCR", "s"), Err("ERR value is not an integer or out of range"), "INCR of x1")
check(a.call("SET", "big", "9223372036854775807"), "OK", "SET max")
check(a.call("INCR", "big"), Err("ERR increment or decrement would overflow"), "INCR overflow")
check(a.call("EXISTS", "k", "n", "nope", "k"), 3, "EXISTS counts repeats")
check(a.call("DEL", "k", "n", "nope"), 2, "DEL")
check(a.call("EXISTS", "k"), 0, "EXISTS after DEL")
check(a.call("RPUSH", "l", "b", "c"), 2, "RPUSH")
check(a.call("LPUSH", "l", "a", "z"), 4, "LPUSH")  # z a b c
check(a.call("LRANGE", "l", 0, -1), [b"z", b"a", b"b", b"c"], "LRANGE 0 -1")
check(a.call("LRANGE", "l", -2, -1), [b"b", b"c"], "LRANGE -2 -1")
check(a.call("LRANGE", "l", 1, 100), [b"a", b"b", b"c"], "LRANGE past the end")
check(a.call("LRANGE", "l", -100, 0), [b"z"], "LRANGE before the start")
check(a.call("LRANGE", "l", 3, 1), [], "LRANGE empty")
check(a.call("LRANGE", "nolist", 0, -1), [], "LRANGE of a missing key")
check(a.call("LRANGE", "l", "x", 1), Err("ERR value is not an integer or out of range"), "LRANGE x")
check(a.call("LLEN", "l"), 4, "LLEN")
check(a.call("LPOP", "l"), b"z", "LPOP")
check(a.call("RPOP", "l"), b"c", "RPOP")
check(a.call("GET", "l"), Err("WRONGTYPE Operation against a key holding the wrong kind of value"), "GET of a list")
check(a.call("LPUSH", "s", "x"), Err("WRONGTYPE Operation against a key holding the wrong kind of value"), "LPUSH on a string")
check(a.call("RPOP", "l"), b"b", "RPOP")
check(a.call("LPOP", "l"), b"a", "LPOP the last")
check(a.call("EXISTS", "l"), 0, "an emptied list is no key")
check(a.call("LPOP", "l"), None, "LPOP of a missing key")
check(a.call("LLEN", "l"), 0, "LLEN of a missing key")
check(a.call("FLUB", "x"), Err("ERR unknown command 'FLUB'"), "unknown command")
check(a.call("GET"), Err("ERR wrong number of arguments for 'get' command"), "GET without a key")
check(a.call("SET", "a", "b", "c"), Err("ERR syntax error"), "SET with an option")
check(a.call("COMMAND", "DOCS"), [], "COMMAND")
check(a.call("CONFIG", "GET", "save"), [b"save", b""], "CONFIG GET save")
check(a.call("CONFIG", "GET", "maxmemory"), [], "CONFIG GET other")

# A pipeline: 100 requests in one send, 100 replies in order.
a.s.sendall(b"".join(enc(("INCR", "counter")) for _ in range(100)))
for i in range(1, 101):
    check(a.reply(), i, "pipelined INCR %d" % i)
a.s.sendall(b"".join(enc(("SET", "p%d" % i, "v%d" % i)) + enc(("GET", "p%d" % i)) for i in range(100)))
for i in range(100):
    check(a.reply(), "OK", "pipelined SET %d" % i)
    check(a.reply(), b"v%d" % i, "pipelined GET %d" % i)

# A request split across sends, byte by byte at first: the parser waits.
req = enc(("SET", "split", "abc\r\ndef")) + enc(("GET", "split"))
for i in range(0, 20):
    a.s.sendall(req[i:i + 1])
    time.sleep(0.002)
a.s.sendall(req[20:])
check(a.reply(), "OK", "split SET")
check(a.reply(), b"abc\r\ndef", "split GET")

# Values past the write buffer's high-water mark and the read buffer's size.
big = bytes(range(256)) * 8192  # 2 MiB
check(a.call("SET", "big", big), "OK", "SET 2 MiB")
a.s.sendall(enc(("GET", "big")) * 3)
for i in range(3):
    check(a.reply(), big, "GET 2 MiB #%d" % i)

# Values at the reader's limit (64 KiB: a view's most, CRLF included) and
# just past it; large arguments before the last one; SET over a list.
for n in (65534, 65535, 70000):
    v = (bytes(range(256)) * (n // 256 + 1))[:n]
    check(a.call("SET", "edge", v), "OK", "SET of %d bytes" % n)
    check(a.call("GET", "edge"), v, "GET of %d bytes" % n)
check(a.call("RPUSH", "bigl", big, "s", big[:70000]), 3, "RPUSH of large values")
check(a.call("LRANGE", "bigl", 0, -1), [big, b"s", big[:70000]], "LRANGE of large values")
check(a.call("DEL", "bigl", "edge"), 2, "DEL of large values")
check(a.call("RPUSH", "sl", "a"), 1, "RPUSH sl")
check(a.call("SET", "sl", "v"), "OK", "SET over a list")
check(a.call("GET", "sl"), b"v", "GET after SET over a list")

# A pipeline of 3000 requests (about 80 KiB) in one send: requests straddle
# the ends of what each read brings, their replies in order all the same.
a.s.sendall(b"".join(enc(("INCR", "long")) for _ in range(3000)))
for i in range(1, 3001):
    check(a.reply(), i, "long pipeline INCR %d" % i)

# Malformed requests: each gets "-ERR Protocol error..." and its connection
# closes; `a`, opened before, and a connection opened after still work.
for bad in (b"*abc\r\n", b"*2000000\r\n", b"*1\r\n$536870913\r\n", b"*1\r\n$-2\r\n",
            b"*1\r\nGET\r\n", b"*1\r\n$3\r\nGETxx", b"x" * 70000):
    b = Conn()
    b.s.sendall(bad)
    r = b.reply()
    if not isinstance(r, Err) or not r.startswith("ERR Protocol error"):
        sys.exit("malformed %r: got %r" % (bad[:20], r))
    if not b.closed():
        sys.exit("malformed %r: the connection stayed open" % bad[:20])
    check(a.call("PING"), "PONG", "PING on another connection after %r" % bad[:20])
check(Conn().call("GET", "p7"), b"v7", "a new connection after the malformed ones")

# A client that leaves mid-request hurts nobody.
c = Conn()
c.s.sendall(b"*2\r\n$3\r\nGET\r\n$10\r\nabc")
c.s.close()
check(a.call("PING"), "PONG", "PING after a client left mid-request")

# Many connections at once, each with its own pipeline.
conns = [Conn() for _ in range(50)]
for i, c in enumerate(conns):
    c.s.sendall(b"".join(enc(("RPUSH", "many", "%d.%d" % (i, j))) for j in range(10)))
for c in conns:
    for _ in range(10):
        if not isinstance(c.reply(), int):
            sys.exit("RPUSH on many connections")
check(a.call("LLEN", "many"), 500, "LLEN after 50 connections")

check(a.call("QUIT"), "OK", "QUIT")
if not a.closed():
    sys.exit("QUIT: the connection stayed open")
print("ok")
PY

for mode in views batch; do
  args=(0)
  [[ $mode == batch ]] && args+=(--batch)
  launch "$mode" "${args[@]}"
  out=$(timeout 60 python3 "$tmp/client.py" "$port" 2>&1) || fail "$mode: python client: $out"
  [[ "$out" == "ok" ]] || fail "$mode: python client said: $out"
  echo "mini_redis_test: $mode: RESP client checks passed"

  if command -v redis-cli >/dev/null 2>&1; then
    # cli EXPECTED ARGS...: redis-cli's output (no tty: raw, one value a line).
    cli() {
      local want=$1 got
      shift
      got=$(timeout 10 redis-cli -p "$port" "$@" 2>&1) || true
      [[ "$got" == "$want" ]] || fail "$mode: redis-cli $*: got '$got', want '$want'"
    }
    cli PONG ping
    cli OK set k v
    cli v get k
    cli "" get nokey
    cli 1 incr n
    cli 2 incr n
    cli "ERR value is not an integer or out of range" incr k
    cli 3 rpush l a b c
    cli $'a\nb\nc' lrange l 0 -1
    cli $'b\nc' lrange l -2 -1
    cli 3 llen l
    cli 2 del k n
    cli "ERR unknown command 'nope'" nope
    # Several commands through one connection, from stdin.
    got=$(printf 'set x 1\nincr x\nget x\n' | timeout 10 redis-cli -p "$port" 2>&1) || true
    [[ "$got" == $'OK\n2\n2' ]] || fail "$mode: redis-cli from stdin: got '$got'"
    echo "mini_redis_test: $mode: redis-cli checks passed"
  else
    echo "mini_redis_test: redis-cli (Debian: redis-tools) not installed; skipping the redis-cli checks"
  fi
  finish "$mode"
done
echo "mini_redis_test: all good"
