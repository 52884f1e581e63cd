#!/usr/bin/env bash
# https_bench.sh: HTTPS keep-alive requests under wrk against nginx (the
# baseline) and samples/https_hello, with the same certificate (EC P-256,
# from test/tls/make_certs.sh), TLS 1.3 on both, and the same 13-byte body
# ("Hello, world\n", text/plain). For each connection count and each round
# the two servers run in turn (drift on a shared machine hits both alike),
# the server pinned to one cpu and wrk (one thread) to another. Reported:
# the median requests/s and requests per server CPU-second, each as a ratio
# to nginx. Server CPU is its threads' run time from
# /proc/PID/task/*/schedstat over the wrk run.
#
#   https_bench.sh --hello PATH [--nginx PATH] [--seconds S] [--rounds R]
#                  [--connections "10 100"] [--server-cpu C] [--client-cpu C]
#
# S is whole seconds (wrk's -d); the defaults are 2 s, 5 rounds.
#
# nginx runs as one process (master_process off, so the PID measured is the
# one that serves: a master would only sleep) with keepalive_requests raised
# so that no connection is closed and handshaken again mid-run. Its reply
# carries two headers https_hello's does not (Server, Date): the sizes are
# printed. Exits 77 (a skip for meson) without nginx, wrk or the openssl
# command (Debian: nginx-light, wrk, openssl). Every server is stopped by its
# PID when the runner exits, however it exits.
set -euo pipefail
here=$(dirname "$0")
source "$here/../bench_lib.sh"

hello=""
nginx=$(command -v nginx || echo /usr/sbin/nginx)
seconds=2
rounds=5
connections="10 100"
server_cpu=0
client_cpu=1
while (($#)); do
  case "$1" in
    --hello) hello=$2; shift 2 ;;
    --nginx) nginx=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    *) echo "https_bench: unexpected argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$hello" ]]; then
  echo "usage: https_bench.sh --hello PATH [options]" >&2
  exit 2
fi
if [[ ! -x "$nginx" ]]; then
  echo "https_bench: nginx not installed (Debian: nginx-light); skipping"
  exit 77
fi
for tool in wrk openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "https_bench: $tool not installed (Debian: $tool); skipping"
    exit 77
  fi
done

tmp=$(mktemp -d)
server_pid=""
stop_server() {
  [[ -n "$server_pid" ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

pin_cpus https_bench "$server_cpu" "$client_cpu"
certs=$tmp/certs
timeout 60 sh "$here/../../tls/make_certs.sh" "$certs"

# nginx_conf PORT: nginx's whole configuration, every path inside $tmp (the
# packaged defaults under /var would need root).
nginx_conf() {
  cat <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000000;
  client_body_temp_path $tmp/nginx.body;
  proxy_temp_path $tmp/nginx.proxy;
  fastcgi_temp_path $tmp/nginx.fastcgi;
  uwsgi_temp_path $tmp/nginx.uwsgi;
  scgi_temp_path $tmp/nginx.scgi;
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $certs/server.pem;
    ssl_certificate_key $certs/server.key;
    ssl_protocols TLSv1.3;
    location / {
      default_type text/plain;
      return 200 "Hello, world\n";
    }
  }
}
CONF
}

# start NAME PORT: starts a server on PORT and waits (5 s at most) until it
# accepts connections.
start() {
  local name=$1 port=$2
  case "$name" in
    nginx)
      nginx_conf "$port" >"$tmp/nginx.conf"
      "${server_pin[@]}" "$nginx" -p "$tmp" -e "$tmp/nginx.error.log" -c "$tmp/nginx.conf" \
        >"$tmp/$name.log" 2>&1 &
      ;;
    https_hello)
      "${server_pin[@]}" "$hello" "$port" "$certs/server.pem" "$certs/server.key" >"$tmp/$name.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "https_bench: $name did not listen on port $port:" >&2
  cat "$tmp/$name.log" "$tmp/nginx.error.log" 2>/dev/null >&2
  return 1
}

# describe NAME PORT: the protocol and cipher the server agrees to with
# OpenSSL's client (wrk's library), and its reply's size and header names;
# fails unless the reply is a 200 with the hello body over TLS 1.3.
describe() {
  local name=$1 port=$2 brief protocol cipher reply=$tmp/$1.reply
  brief=$(timeout 5 openssl s_client -connect "127.0.0.1:$port" -brief </dev/null 2>&1) || true
  protocol=$(sed -n 's/^Protocol version: *//p' <<<"$brief")
  cipher=$(sed -n 's/^Ciphersuite: *//p' <<<"$brief")
  # -ign_eof: the reply is read to the server's close, not only until stdin ends.
  printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
    timeout 5 openssl s_client -connect "127.0.0.1:$port" -quiet -ign_eof >"$reply" 2>/dev/null || true
  if [[ "$protocol" != TLSv1.3 || "$(head -n 1 "$reply")" != $'HTTP/1.1 200 OK\r' ||
        "$(tail -c 17 "$reply")" != $'\r\n\r\nHello, world' ]]; then
    echo "https_bench: $name: protocol '$protocol', reply:" >&2
    cat "$reply" >&2
    return 1
  fi
  printf '  %-12s %s, %s, a %s-byte reply (Connection: close) with headers %s\n' "$name" "$protocol" \
    "$cipher" "$(wc -c <"$reply")" "$(sed -n '2,/^\r$/s/:.*//p' "$reply" | paste -sd ' ')" >&2
}

declare -A rps cps described  # "$n,$name" -> space-separated per-round figures

run_one() {  # run_one N NAME
  local n=$1 name=$2 port before after out rc=0
  port=$(free_port)
  start "$name" "$port" || { stop_server; return 1; }
  if [[ -z "${described[$name]:-}" ]]; then
    described[$name]=1
    describe "$name" "$port" || { stop_server; return 1; }
  fi
  before=$(server_cpu_ns "$server_pid")
  out=$(timeout $((${seconds%.*} + 30)) "${client_pin[@]}" wrk -t1 -c"$n" -d"${seconds}s" \
    "https://127.0.0.1:$port/" 2>&1) || rc=$?
  after=$(server_cpu_ns "$server_pid")
  stop_server
  local requests secs
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  secs=$(sed -n 's/.* requests in \([0-9.]*\)s,.*/\1/p' <<<"$out")
  if ((rc != 0)) || [[ -z "$requests" || -z "$secs" ]] || grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "https_bench: $name at N=$n failed (wrk status $rc): $out" >&2
    return 1
  fi
  local r c
  r=$(awk -v q="$requests" -v s="$secs" 'BEGIN { printf "%.0f", q / s }')
  c=$(awk -v q="$requests" -v ns=$((after - before)) 'BEGIN { if (ns > 0) printf "%.0f", q / (ns / 1e9); else print "nan" }')
  rps[$n,$name]+="$r "
  cps[$n,$name]+="$c "
  printf '  round %s  %-12s N=%-4s %9s requests/s  server cpu %6.3f s  %9s requests/cpu-s\n' \
    "$round" "$name" "$n" "$r" "$(awk -v ns=$((after - before)) 'BEGIN { print ns / 1e9 }')" "$c" >&2
}

names=(nginx https_hello)
status=0
for n in $connections; do
  for ((round = 1; round <= rounds; round++)); do
    for name in "${names[@]}"; do
      run_one "$n" "$name" || status=1
    done
  done
done

echo
echo "https benchmark: wrk -t1, keep-alive GET /, ${seconds}s x $rounds rounds (median),"
echo "server on cpu $server_cpu, wrk on cpu $client_cpu; nginx = $("$nginx" -v 2>&1 | sed 's/.*: //')"
printf '%-12s %5s %12s %8s %22s %8s\n' server N "requests/s" ratio "requests/server-cpu-s" ratio
for n in $connections; do
  base_rps=$(median %.0f <<<"${rps[$n,nginx]:-}")
  base_cps=$(median %.0f <<<"${cps[$n,nginx]:-}")
  for name in "${names[@]}"; do
    m_rps=$(median %.0f <<<"${rps[$n,$name]:-}")
    m_cps=$(median %.0f <<<"${cps[$n,$name]:-}")
    printf '%-12s %5s %12s %8s %22s %8s\n' "$name" "$n" "$m_rps" "$(ratio "$m_rps" "$base_rps")" \
      "$m_cps" "$(ratio "$m_cps" "$base_cps")"
  done
done
exit $status
