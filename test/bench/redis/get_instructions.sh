#!/usr/bin/env bash
# get_instructions.sh: user-space instructions (callgrind's Ir) per Redis GET
# in samples/mini_redis, by ELF object, and fiberloop's share of them.
#
#   get_instructions.sh --mini PATH [--requests N] [--pipelines "16 1"]
#                       [--clients C] [--batch] [--keep DIR]
#                       [--server-cpu C] [--client-cpu C]
#
# For each pipeline depth P the server runs twice under callgrind, pinned to
# one cpu (redis-benchmark on another): one key is SET with redis-cli, then
# `redis-benchmark -t get -n N -P P -c C` (N GETs of that key), then SIGTERM
# stops it cleanly and callgrind writes its profile; the second run does 2N
# GETs. The figures are (run of 2N - run of N) / N: the start-up, the
# connections and the stop cost both runs alike and drop out, so what is left
# is the steady-state cost of a GET. callgrind_split.py reads the profiles.
#
# fiberloop's share: the Ir of libfiberloop and Boost.Context, of the
# library's templates compiled into the sample, and of the libc / libstdc++
# code they call (malloc, memcpy, the syscall wrappers...). The rest is the
# sample's: its parser and commands and the libc / libstdc++ code they call,
# freeing the strings a read returned included. Shared code is split by
# caller (see callgrind_split.py). Kernel time is not counted; the calls per
# GET of recv/send/epoll_wait are listed instead.
#
# callgrind counts instructions: the figures do not depend on how busy the
# machine is. At -P 16 they depend a little on how requests arrive per read
# (a few Ir at most from run to run); -P 1 pays a wakeup and a send per GET.
#
# Exits 77 (a skip for meson) when valgrind, redis-benchmark, redis-cli or
# python3 is missing (Debian: valgrind, redis-tools). Every server it starts
# is stopped by its PID when it exits, however it exits.
set -euo pipefail
source "$(dirname "$0")/../bench_lib.sh"

mini=""
requests=20000
pipelines="16 1"
clients=50
batch=0
keep=""
server_cpu=0
client_cpu=1
while (($#)); do
  case "$1" in
    --mini) mini=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --pipelines) pipelines=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --batch) batch=1; shift ;;
    --keep) keep=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    *) echo "get_instructions: unexpected argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$mini" ]]; then
  echo "usage: get_instructions.sh --mini PATH [options]" >&2
  exit 2
fi
for tool in valgrind:valgrind redis-benchmark:redis-tools redis-cli:redis-tools python3:python3; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "get_instructions: ${tool%%:*} not installed (Debian: ${tool#*:}); skipping"
    exit 77
  fi
done
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
server_pid=""
stop_server() {  # SIGTERM, then up to 60 s for callgrind to write its profile
  local status=0
  [[ -n "$server_pid" ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 600); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || status=$?
  server_pid=""
  return "$status"
}
trap 'stop_server || true; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

pin_cpus get_instructions "$server_cpu" "$client_cpu"
server_args=(0)
((batch)) && server_args+=(--batch)

# profile P N OUT: one server run of N GETs at pipeline depth P, its
# callgrind profile written to OUT.
profile() {
  local p=$1 n=$2 out=$3 log=$3.log port="" bench status
  : >"$log"  # there before the server writes to it: the wait below reads it
  "${server_pin[@]}" valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" \
    "$mini" "${server_args[@]}" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do  # valgrind takes a few seconds to start
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [[ -n "$port" ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$port" ]]; then
    echo "get_instructions: mini_redis under callgrind did not start listening:" >&2
    cat "$log" >&2
    return 1
  fi
  # redis-benchmark -t get asks for key:__rand_int__ (without -r, that very
  # name); the value is what its own SET writes (-d 3: "xxx").
  [[ "$(timeout 30 redis-cli -p "$port" set key:__rand_int__ xxx 2>&1)" == OK ]] ||
    { echo "get_instructions: the SET before the GETs failed" >&2; return 1; }
  bench=$(timeout 600 "${client_pin[@]}" redis-benchmark -p "$port" -t get -n "$n" -P "$p" \
    -c "$clients" -q 2>&1 | tr '\r' '\n') || true
  if ! grep -q '^GET: .* requests per second' <<<"$bench"; then
    echo "get_instructions: redis-benchmark failed at -P $p: $bench" >&2
    return 1
  fi
  # Every GET must have found the value (redis-benchmark does not check).
  [[ "$(timeout 30 redis-cli -p "$port" get key:__rand_int__ 2>&1)" == xxx ]] ||
    { echo "get_instructions: the key is gone" >&2; return 1; }
  status=0
  stop_server || status=$?
  if ((status != 0)) || ! grep -q "mini_redis: stopped" "$log" || [[ ! -s "$out" ]]; then
    echo "get_instructions: mini_redis did not stop cleanly (status $status):" >&2
    cat "$log" >&2
    return 1
  fi
}

label=$mini
((batch)) && label+=" --batch"
echo "get_instructions: $label, valgrind --tool=callgrind --dump-instr=no,"
echo "redis-benchmark -t get -c $clients, (2N GETs - N GETs) / N with N = $requests"
for p in $pipelines; do
  profile "$p" "$requests" "$tmp/P$p.base.out"
  profile "$p" $((2 * requests)) "$tmp/P$p.run.out"
  echo
  echo "-P $p: per GET"
  python3 "$here/callgrind_split.py" --program "$mini" \
    --base "$tmp/P$p.base.out" "$requests" --run "$tmp/P$p.run.out" $((2 * requests))
done
if [[ -n "$keep" ]]; then
  mkdir -p "$keep"
  cp "$tmp"/*.out "$keep"/
  echo
  echo "profiles kept in $keep (callgrind_annotate --inclusive=no FILE)"
fi
