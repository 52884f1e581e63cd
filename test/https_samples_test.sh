#!/usr/bin/env bash
# usage: https_samples_test.sh HTTPS_HELLO HTTPS_GET
# The TLS samples against curl and each other on 127.0.0.1, with a throwaway
# CA from test/tls/make_certs.sh: https_hello on port 0 (it picks a free
# port and prints it) answers curl and https_get when they trust the CA,
# keeps a connection alive, is refused by both when they do not, and
# outlives clients that speak no TLS. Every wait is bounded. Skipped (exit
# 77) without the openssl command (for the certificates) or curl.
set -euo pipefail
here=$(dirname "$0")
source "$here/listening.sh"

if (($# != 2)); then
  echo "usage: $0 HTTPS_HELLO HTTPS_GET" >&2
  exit 1
fi
https_hello=$1 https_get=$2
for tool in openssl curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "https_samples_test: $tool not installed (Debian: $tool); skipping"
    exit 77
  fi
done
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "https_samples_test: $*" >&2
  for f in "$tmp"/*.out "$tmp"/*.err; do
    [[ -f "$f" ]] || continue
    echo "--- $f" >&2
    cat "$f" >&2
  done
  exit 1
}

certs=$tmp/certs
timeout 60 sh "$here/tls/make_certs.sh" "$certs" || fail "make_certs.sh failed"
trusted=(--cacert "$certs/ca.pem")

launch https "$https_hello" 0 "$certs/server.pem" "$certs/server.key"
url="https://localhost:$port"

# curl_ok NAME ARGS...: curl must succeed, its stdout in $out and its
# account of the connection (-v) in $tmp/NAME.err.
curl_ok() {
  local name=$1
  shift
  out=$(timeout 10 curl -sS -v --max-time 5 "$@" 2>"$tmp/$name.err") ||
    fail "curl $name failed: $(cat "$tmp/$name.err")"
}

# One request, verified against the test CA, by name and by address (the
# certificate holds both).
curl_ok one "${trusted[@]}" "$url/"
[[ "$out" == "Hello, world" ]] || fail "curl got: $out"
grep -q "SSL connection using TLSv1.3" "$tmp/one.err" || fail "not TLS 1.3: $(cat "$tmp/one.err")"
curl_ok by_address "${trusted[@]}" "https://127.0.0.1:$port/"
[[ "$out" == "Hello, world" ]] || fail "curl by address got: $out"

# Keep-alive: two URLs in one curl call go over one connection (curl counts
# the connections it opened for each transfer: 1, then 0).
curl_ok twice "${trusted[@]}" -w '[%{num_connects}]\n' "$url/" "$url/again"
[[ "$out" == $'Hello, world\n[1]\nHello, world\n[0]' ]] || fail "keep-alive: curl got: $out"

# Without the test CA, curl refuses the certificate: exit 60 (peer
# certificate cannot be authenticated with known CA certificates).
status=0
timeout 10 curl -sS --max-time 5 "$url/" >/dev/null 2>"$tmp/untrusted.err" || status=$?
((status == 60)) || fail "curl without the CA: exit $status, not 60: $(cat "$tmp/untrusted.err")"

# https_get with the CA: the status line, the TLS version and cipher (and
# ALPN: both sides offer http/1.1), an empty line, the body.
out=$(timeout 40 "$https_get" "$url/" --cafile "$certs/ca.pem" 2>"$tmp/get.err") ||
  fail "https_get --cafile failed: $(cat "$tmp/get.err")"
[[ "$(sed -n 1p <<<"$out")" == "HTTP/1.1 200 OK" ]] || fail "https_get status line: $out"
grep -qx "tls: TLSv1\.3, TLS_[A-Z0-9_]*, ALPN http/1\.1" <<<"$out" || fail "https_get TLS line: $out"
[[ "$(sed -n '3,$p' <<<"$out")" == $'\nHello, world' ]] || fail "https_get body: $out"
out=$(timeout 40 "$https_get" "https://127.0.0.1:$port/x" --cafile "$certs/ca.pem" 2>"$tmp/get_ip.err") ||
  fail "https_get by address failed: $(cat "$tmp/get_ip.err")"
[[ "$(sed -n 1p <<<"$out")" == "HTTP/1.1 200 OK" ]] || fail "https_get by address: $out"

# https_get without the CA: exit 1, and the library's message says why and
# for which host name.
status=0
out=$(timeout 40 "$https_get" "$url/" 2>&1) || status=$?
((status == 1)) || fail "https_get without the CA: exit $status, not 1: $out"
grep -q "certificate verify failed: unable to get local issuer certificate" <<<"$out" ||
  fail "https_get without the CA did not say why: $out"
grep -qF '(verifying host name "localhost")' <<<"$out" || fail "https_get did not name the host: $out"

# Clients that speak no TLS: plain HTTP to the TLS port (curl gets no
# reply), bytes that are no ClientHello, and a connection that sends nothing
# while others are served. Each fails its own handshake only.
status=0
timeout 10 curl -sS --max-time 5 "http://localhost:$port/" >/dev/null 2>"$tmp/plain.err" || status=$?
((status != 0)) || fail "plain HTTP to the TLS port got an answer"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GARBAGE\r\n\r\n' >&3
timeout 5 cat <&3 >/dev/null || fail "the server did not close a connection that sent garbage"
exec 3<&-
exec 4<>"/dev/tcp/127.0.0.1/$port"  # silent: its handshake waits (60 s at most)
curl_ok after_garbage "${trusted[@]}" "$url/"
[[ "$out" == "Hello, world" ]] || fail "after the garbage, curl got: $out"
exec 4<&-

# A certificate for another name: refused by name, by curl (60) and by
# https_get, even though the CA is trusted.
launch wronghost "$https_hello" 0 "$certs/wronghost.pem" "$certs/wronghost.key" 30
status=0
timeout 10 curl -sS --max-time 5 "${trusted[@]}" "https://localhost:$port/" >/dev/null \
  2>"$tmp/wronghost_curl.err" || status=$?
((status == 60)) || fail "curl against the wrong host's certificate: exit $status, not 60"
status=0
out=$(timeout 40 "$https_get" "https://localhost:$port/" --cafile "$certs/ca.pem" 2>&1) || status=$?
((status == 1)) && grep -q "certificate verify failed: hostname mismatch" <<<"$out" ||
  fail "https_get against the wrong host's certificate (exit $status): $out"
kill -TERM "${pids[-1]}"
finish "${pids[-1]}" wronghost

# SIGTERM: exit 0, and the failed handshakes counted (at least the three
# connections that spoke no TLS; the refusing clients' may add to it).
kill -TERM "${pids[0]}"
finish "${pids[0]}" https
failed=$(sed -n 's/^https_hello: \([0-9]*\) TLS handshakes failed$/\1/p' "$tmp/https.out")
[[ -n "$failed" ]] && ((failed >= 3)) || fail "failed handshakes counted: '$failed', not 3 or more"
echo "https_samples_test: all good ($failed failed handshakes counted)"
