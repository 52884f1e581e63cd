#!/usr/bin/env bash
# redis_bench.sh: requests per server CPU-second under redis-benchmark for
# samples/mini_redis (StreamReader's zero-copy reads, the replies to what it
# read written at once), the same parsing from a read buffer of its own
# (--batch), and the real redis-server, at pipeline depth 16 and 1. The
# servers run in turn within each round (drift on a shared machine hits each
# alike), the server pinned to one cpu and redis-benchmark to another; the
# median of the rounds is reported, with the ratios of mini to mini-batch.
# (test/bench/redis/get_instructions.sh counts the instructions per GET.)
#
#   redis_bench.sh --mini PATH [--redis-server PATH] [--requests N] [--requests-p1 N]
#                  [--rounds R] [--server-cpu C] [--client-cpu C]
#
# Exits 77 (a skip for meson) when redis-benchmark, redis-cli or
# redis-server is not installed (Debian: redis-tools, redis-server). Every
# child is killed by its PID when the runner exits, however it exits.
set -euo pipefail
source "$(dirname "$0")/../bench_lib.sh"

mini=""
redis_server=$(command -v redis-server || true)
requests=200000
requests_p1=50000
rounds=3
server_cpu=0
client_cpu=1
while (($#)); do
  case "$1" in
    --mini) mini=$2; shift 2 ;;
    --redis-server) redis_server=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --requests-p1) requests_p1=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    *) echo "redis_bench: unexpected argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$mini" ]]; then
  echo "usage: redis_bench.sh --mini PATH [options]" >&2
  exit 2
fi
for tool in redis-benchmark redis-cli; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "redis_bench: $tool not installed (Debian: redis-tools); skipping"
    exit 77
  fi
done
tmp=$(mktemp -d)
server_pid=""
# Debian's redis-tools ships the server binary too, as redis-check-rdb, which
# is the server under any other name: without the redis-server package (which
# also starts a system-wide service), a link named redis-server does.
if [[ -z "$redis_server" ]] && command -v redis-check-rdb >/dev/null 2>&1; then
  ln -s "$(command -v redis-check-rdb)" "$tmp/redis-server"
  redis_server=$tmp/redis-server
fi
if [[ -z "$redis_server" || ! -x "$redis_server" ]]; then
  echo "redis_bench: redis-server not installed (Debian: redis-server); skipping"
  rm -rf "$tmp"
  exit 77
fi
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 20); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'cleanup; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

pin_cpus redis_bench "$server_cpu" "$client_cpu"

# start NAME PORT: starts a server on PORT and waits (5 s at most) for PONG.
start() {
  local name=$1 port=$2
  case "$name" in
    mini) "${server_pin[@]}" "$mini" "$port" >"$tmp/$name.log" 2>&1 & ;;
    mini-batch) "${server_pin[@]}" "$mini" "$port" --batch >"$tmp/$name.log" 2>&1 & ;;
    redis) "${server_pin[@]}" "$redis_server" --port "$port" --bind 127.0.0.1 --save '' \
      --appendonly no --daemonize no --dir "$tmp" >"$tmp/$name.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 50); do
    [[ "$(timeout 1 redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.1
  done
  echo "redis_bench: $name did not answer PING on port $port:" >&2
  cat "$tmp/$name.log" >&2
  return 1
}

declare -A cps rps_set rps_get  # "$name,$p" -> space-separated per-round figures

run_one() {  # run_one NAME PIPELINE REQUESTS
  local name=$1 p=$2 n=$3 port before after out rc=0
  port=$(free_port)
  start "$name" "$port" || { cleanup; return 1; }
  before=$(server_cpu_ns "$server_pid")
  out=$(timeout 300 "${client_pin[@]}" redis-benchmark -p "$port" -t set,get -n "$n" -P "$p" -q 2>&1) || rc=$?
  after=$(server_cpu_ns "$server_pid")
  # The SETs must have landed: redis-benchmark does not check its replies.
  local stored
  stored=$(timeout 5 redis-cli -p "$port" exists key:__rand_int__ 2>&1) || true
  cleanup
  out=$(tr '\r' '\n' <<<"$out")
  local set get
  set=$(sed -n 's/^SET: \([^ ]*\) requests per second.*/\1/p' <<<"$out")
  get=$(sed -n 's/^GET: \([^ ]*\) requests per second.*/\1/p' <<<"$out")
  if ((rc != 0)) || [[ -z "$set" || -z "$get" || "$stored" != 1 ]]; then
    echo "redis_bench: $name at P=$p failed (status $rc, key stored: $stored): $out" >&2
    return 1
  fi
  local c
  c=$(awk -v r=$((2 * n)) -v ns=$((after - before)) 'BEGIN { if (ns > 0) printf "%.0f", r / (ns / 1e9); else print "nan" }')
  cps[$name,$p]+="$c "
  rps_set[$name,$p]+="$set "
  rps_get[$name,$p]+="$get "
  printf '  round %s  %-10s P=%-2s SET %10s/s  GET %10s/s  server cpu %6.3f s  %10s requests/cpu-s\n' \
    "$r" "$name" "$p" "$set" "$get" "$(awk -v ns=$((after - before)) 'BEGIN { print ns / 1e9 }')" "$c" >&2
}

names=(mini mini-batch redis)
status=0
for ((r = 1; r <= rounds; r++)); do
  for p in 16 1; do
    n=$requests
    ((p == 1)) && n=$requests_p1
    for name in "${names[@]}"; do
      run_one "$name" "$p" "$n" || status=1
    done
  done
done

declare -A m
echo
echo "redis benchmark: redis-benchmark -t set,get -q, $requests requests at -P 16, $requests_p1 at -P 1,"
echo "$rounds rounds (median), server on cpu $server_cpu, redis-benchmark on cpu $client_cpu"
echo "  mini       = samples/mini_redis: StreamReader's views, a write() per batch of replies"
echo "  mini-batch = samples/mini_redis --batch: a read buffer of its own (read_into)"
echo "  redis      = $("$redis_server" --version | sed 's/ sha=.*//')"
printf '%-10s %3s %13s %13s %22s %14s\n' server P "SET req/s" "GET req/s" "requests/server-cpu-s" "vs redis"
for p in 16 1; do
  for name in "${names[@]}"; do
    m[$name,$p]=$(median %.0f <<<"${cps[$name,$p]:-}")
  done
  for name in "${names[@]}"; do
    printf '%-10s %3s %13s %13s %22s %14s\n' "$name" "$p" "$(median %.0f <<<"${rps_set[$name,$p]:-}")" \
      "$(median %.0f <<<"${rps_get[$name,$p]:-}")" "${m[$name,$p]}" "$(ratio "${m[$name,$p]}" "${m[redis,$p]}")"
  done
done
echo
echo "mini / mini-batch, P=16: $(ratio "${m[mini,16]}" "${m[mini-batch,16]}") (goal >= 0.9)"
echo "mini / mini-batch, P=1:  $(ratio "${m[mini,1]}" "${m[mini-batch,1]}")"
exit $status
