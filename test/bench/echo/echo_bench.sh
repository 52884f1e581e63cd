#!/usr/bin/env bash
# echo_bench.sh: the echo benchmark's runner. For each connection count, each
# round and each server (interleaved, so that drift in a shared machine hits
# every server alike), it starts the server pinned to one core and the client
# pinned to another, runs the client for a fixed time, and reports round
# trips/s and round trips per server CPU-second: the medians, and each
# server's median ratio to the first server (the baseline, the hand-written
# epoll server) in the same round.
#
#   echo_bench.sh [--client PATH] [--seconds S] [--rounds R] [--connections "1 50 500"]
#                 [--server-cpu C] [--client-cpu C] NAME=COMMAND-WITH-{port} ...
#
# {port} in a COMMAND is replaced with a free loopback port. Every child is
# killed when the runner exits, however it exits.
set -euo pipefail
source "$(dirname "$0")/../bench_lib.sh"

client=""
seconds=2
rounds=3
connections="1 50 500"
server_cpu=0
client_cpu=1
servers=()
while (($#)); do
  case "$1" in
    --client) client=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    *=*) servers+=("$1"); shift ;;
    *) echo "echo_bench: unexpected argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$client" || ${#servers[@]} -eq 0 ]]; then
  echo "usage: echo_bench.sh --client PATH [options] NAME=COMMAND-WITH-{port} ..." >&2
  exit 2
fi

server_pid=""  # the one server running now; the client runs in the foreground
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    sleep 0.1
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin_cpus echo_bench "$server_cpu" "$client_cpu"

declare -A rps cps  # "$n,$name" -> space-separated per-round figures
# "$n,$name" -> the per-round ratios to the baseline's figure of the same
# round: a pair run seconds apart shares the machine's state of the moment,
# which on a shared VM moves the absolute figures by ±20% between rounds.
declare -A rps_ratio cps_ratio
last_rps="" last_cps=""

run_one() {  # run_one N NAME COMMAND
  local n=$1 name=$2 command=$3 port out rc=0
  port=$(free_port)
  # shellcheck disable=SC2086 # the command is split into words on purpose
  "${server_pin[@]}" ${command//\{port\}/$port} >/dev/null &
  server_pid=$!
  out=$(timeout $((${seconds%.*} + 30)) "${client_pin[@]}" "$client" "$port" "$n" "$seconds" "$server_pid") || rc=$?
  cleanup
  server_pid=""
  if ((rc != 0)); then
    echo "echo_bench: $name at N=$n failed (client exit status $rc)" >&2
    return 1
  fi
  local trips secs cpu
  trips=$(sed -n 's/.*round_trips=\([0-9]*\).*/\1/p' <<<"$out")
  secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
  cpu=$(sed -n 's/.*server_cpu=\([-0-9.]*\).*/\1/p' <<<"$out")
  last_rps=$(awk -v t="$trips" -v s="$secs" 'BEGIN { printf "%.1f", t / s }')
  last_cps=$(awk -v t="$trips" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.1f", t / c; else printf "nan" }')
  rps[$n,$name]+="$last_rps "
  cps[$n,$name]+="$last_cps "
  printf '  %-10s N=%-4s %s\n' "$name" "$n" "$out" >&2
}

names=()
for s in "${servers[@]}"; do names+=("${s%%=*}"); done
status=0
for n in $connections; do
  for ((r = 1; r <= rounds; r++)); do
    # Each round starts one server further along, so that no server always
    # follows the same one (whose closed connections the kernel still reaps).
    declare -A round_rps=() round_cps=()
    count=${#servers[@]}
    for ((k = 0; k < count; k++)); do
      s=${servers[$(((k + r - 1) % count))]}
      if run_one "$n" "${s%%=*}" "${s#*=}"; then
        round_rps[${s%%=*}]=$last_rps
        round_cps[${s%%=*}]=$last_cps
      else
        status=1
      fi
    done
    base=${names[0]}
    for name in "${names[@]}"; do
      rps_ratio[$n,$name]+="$(ratio "${round_rps[$name]:-nan}" "${round_rps[$base]:-nan}") "
      cps_ratio[$n,$name]+="$(ratio "${round_cps[$name]:-nan}" "${round_cps[$base]:-nan}") "
    done
    unset round_rps round_cps
  done
done

echo
echo "echo benchmark: ${seconds}s x $rounds rounds (median), 64-byte ping-pong, server on cpu $server_cpu, client on cpu $client_cpu"
echo "ratio: the median over the rounds of the figure / the baseline's (${names[0]}) in the same round"
printf '%-14s %5s %14s %8s %18s %8s\n' server N "round trips/s" ratio "trips/server-cpu-s" ratio
for n in $connections; do
  for name in "${names[@]}"; do
    m_rps=$(median <<<"${rps[$n,$name]:-}")
    m_cps=$(median <<<"${cps[$n,$name]:-}")
    printf '%-14s %5s %14s %8s %18s %8s\n' "$name" "$n" "$m_rps" \
      "$({ grep -v n/a || true; } <<<"${rps_ratio[$n,$name]// /$'\n'}" | median %.2f)" \
      "$m_cps" "$({ grep -v n/a || true; } <<<"${cps_ratio[$n,$name]// /$'\n'}" | median %.2f)"
  done
done
exit $status
