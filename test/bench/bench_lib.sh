# shellcheck shell=bash
# bench_lib.sh, sourced by the benchmark runners (echo, redis, https): what
# each needs to pin, place, time and summarise servers, in one copy so that
# their figures are measured the same way.

# pin_cpus NAME SERVER_CPU CLIENT_CPU sets the arrays server_pin and
# client_pin (taskset prefixes), or leaves both empty, saying so as NAME,
# where the cpus cannot be used (a container given fewer).
pin_cpus() {
  server_pin=(taskset -c "$2")
  client_pin=(taskset -c "$3")
  if ! taskset -c "$2" true 2>/dev/null || ! taskset -c "$3" true 2>/dev/null; then
    echo "$1: cannot pin to cpus $2/$3; running unpinned" >&2
    server_pin=()
    client_pin=()
  fi
}

# free_port: a port nothing listens on now (the kernel's pick, then released).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# server_cpu_ns PID: the CPU time of all the process's threads, in ns. The
# schedstat run times are exact; /proc/PID/stat's utime+stime (10 ms ticks,
# a few percent of a run this short) only where schedstat is missing.
server_cpu_ns() {
  local pid=$1
  if compgen -G "/proc/$pid/task/*/schedstat" >/dev/null; then
    cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
  else
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' \
      "/proc/$pid/stat"
  fi
}

# median [FORMAT] < "a b c ...": the median of the figures on stdin ("nan"
# if none); the mean of the middle two, printed with FORMAT (%.1f), when
# their number is even.
median() {
  tr ' ' '\n' | awk 'NF' | sort -g | awk -v fmt="${1:-%.1f}" '{ v[NR] = $1 } END {
    if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]
    else printf fmt "\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B to two decimals, "n/a" when either is missing or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
