# listening.sh, sourced by the sample tests. Each function writes to and
# reads from $tmp, and calls the sourcing script's fail() when something
# does not come in time.
#
# wait_listening NAME waits (5 s at most) for the "listening on
# 127.0.0.1:PORT" line a server prints to $tmp/NAME.out and sets $port.
wait_listening() {
  local name=$1
  for _ in $(seq 50); do
    grep -q "listening on" "$tmp/$name.out" && break
    sleep 0.1
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.out")
  [[ -n "$port" ]] || fail "$name did not start listening"
}

# launch NAME EXE ARGS...: starts a server in the background, its output in
# $tmp/NAME.out, and waits for its "listening on" line; sets $pid and $port
# and adds the pid to the script's pids array (for its cleanup to kill).
launch() {
  local name=$1
  shift
  "$@" >"$tmp/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_listening "$name"
}

# finish PID NAME: waits (10 s at most) for it to exit; it must exit 0 and
# have said "stopped".
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
