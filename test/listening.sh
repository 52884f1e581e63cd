# listening.sh, sourced by the sample tests: wait_listening NAME waits (5 s at
# most) for the "listening on 127.0.0.1:PORT" line a server prints to
# $tmp/NAME.out and sets $port; it calls the sourcing script's fail() if the
# line never comes.
wait_listening() {
  local name=$1
  for _ in $(seq 50); do
    grep -q "listening on" "$tmp/$name.out" && break
    sleep 0.1
  done
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.out")
  [[ -n "$port" ]] || fail "$name did not start listening"
}
