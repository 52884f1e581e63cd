#!/usr/bin/env bash
# usage: gdb_dump_test.sh GDB_TARGET FIBERLOOP_GDB_PY
# tools/fiberloop-gdb.py against test/gdb_target (a loop with tasks parked in
# sleep(), Lock.acquire() and await() of another task, stopped in a plain
# callback): fiberloop-tasks and fiberloop-bt all on the live process, with
# the thread's registers as they were afterwards; then both on a gcore of it.
# Skips (77) without gdb; attaches with -p, or runs the target under gdb
# when attaching is refused (ptrace_scope). Every wait is bounded.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 GDB_TARGET FIBERLOOP_GDB_PY" >&2
  exit 1
fi
target=$1 script=$2
if ! command -v gdb >/dev/null 2>&1; then
  echo "gdb_dump_test: SKIP: gdb is not installed" >&2
  exit 77
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "gdb_dump_test: $*" >&2
  for f in "$tmp"/*.out "$tmp"/*.txt; do
    [[ -e "$f" ]] || continue
    echo "--- $f" >&2
    cat "$f" >&2
  done
  exit 1
}

# stop PID: ends a target (it pauses forever), quietly.
stop() {
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# expect FILE PATTERN WHAT: FILE has a line matching the extended regex.
expect() {
  grep -Eq -- "$2" "$1" || fail "$3: no line matching '$2' in $1"
}

# launch NAME [ENV...]: starts the target, paused in its loop, and waits
# (10 s at most) for its "ready" line; sets $pid and the wait lines.
launch() {
  local name=$1
  shift
  env "$@" "$target" pause >"$tmp/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q '^ready' "$tmp/$name.out" && break
    kill -0 "$pid" 2>/dev/null || fail "$name: the target exited early"
    sleep 0.1
  done
  grep -q '^ready' "$tmp/$name.out" || fail "$name: no ready line within 10 s"
  read -r _ sleep_line lock_line await_line < <(grep '^ready' "$tmp/$name.out")
  sleep_line=${sleep_line#sleep_line=} lock_line=${lock_line#lock_line=}
  await_line=${await_line#await_line=}
}

# The registers of the stopped thread, printed before and after the
# backtraces: fiberloop-bt must put back what it pointed at the fibers.
regs=(-ex 'printf "regs %lx %lx %lx %lx %lx\n", $pc, $sp, $rbp, $rbx, $orig_rax')
gdb_cmds=(-x "$script" "${regs[@]}" -ex fiberloop-tasks -ex 'fiberloop-bt all' "${regs[@]}")

# check_tasks FILE: the task list names every task, its wait and its line.
check_tasks() {
  local out=$1
  expect "$out" '^fiberloop: 5 tasks at loop time' "task count"
  expect "$out" '^Task [0-9]+ "holder": waiting .* on sleep until [0-9.]+, in sleep\(\) at .*gdb_target\.cpp:' "holder"
  expect "$out" "^Task [0-9]+ \"sleeper\": waiting .* on sleep until [0-9.]+, in sleep\(\) at .*gdb_target\.cpp:$sleep_line \(void gdb_target_sleeps_in_here\(\)\)" "sleeper"
  expect "$out" "^Task [0-9]+ \"locker\": waiting .* on lock, in Lock\.acquire\(\) at .*gdb_target\.cpp:$lock_line " "locker"
  expect "$out" "^Task [0-9]+ \"awaiter\": waiting .* on Task [0-9]+ \"sleeper\", in await\(\) at .*gdb_target\.cpp:$await_line " "awaiter"
  expect "$out" '^  awaited by: Task [0-9]+ "awaiter"' "awaited by"
  expect "$out" '^Task ([0-9]+) "Task-\1": waiting .* in sleep\(\)' "unnamed task"
  expect "$out" '^no cycles of tasks awaiting each other' "cycles"
}

# sleeper_bt FILE: the lines of the sleeper's backtrace (up to the next task).
sleeper_bt() {
  awk '/^Task [0-9]+ "sleeper", Thread/ {on = 1; next} /^Task [0-9]+ ".*", Thread/ {on = 0} on' "$1"
}

# run_attached NAME: the commands against a live target, attached with -p;
# prints "refused" when ptrace says no.
run_attached() {
  local name=$1 out="$tmp/$1.txt"
  timeout 60 gdb -batch -nx -p "$pid" "${gdb_cmds[@]}" >"$out" 2>&1 || true
  if grep -Eq 'ptrace: Operation not permitted|Could not attach' "$out"; then
    echo refused
  fi
}

# --- live ------------------------------------------------------------------
launch live
attach=$(run_attached live)
if [[ "$attach" == refused ]]; then
  # ptrace_scope 1 lets a debugger trace its own children: run the target
  # under gdb; it stops itself with SIGTRAP in the same place.
  echo "gdb_dump_test: attaching refused (ptrace_scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo '?')); running the target under gdb" >&2
  stop "$pid"
  timeout 60 gdb -batch -nx -ex run "${gdb_cmds[@]}" -ex kill --args "$target" trap \
    >"$tmp/live.txt" 2>&1 || true
  if grep -Eq 'ptrace: Operation not permitted|Could not trace' "$tmp/live.txt"; then
    echo "gdb_dump_test: SKIP: ptrace refused even for gdb's own child" >&2
    exit 77
  fi
  read -r _ sleep_line lock_line await_line < <(grep '^ready' "$tmp/live.txt")
  sleep_line=${sleep_line#sleep_line=} lock_line=${lock_line#lock_line=}
  await_line=${await_line#await_line=}
fi
out="$tmp/live.txt"
check_tasks "$out"
sleeper_bt "$out" >"$tmp/live_sleeper_bt.txt"
expect "$tmp/live_sleeper_bt.txt" '^#[0-9]+ .*gdb_target_sleeps_in_here' "live: sleeper's backtrace"
expect "$tmp/live_sleeper_bt.txt" '^#[0-9]+ .*Fiber::enter' "live: backtrace down to the fiber's entry"
for name in holder locker awaiter; do
  expect "$out" "^Task [0-9]+ \"$name\", Thread" "live: $name's backtrace"
done
expect "$out" '^#[0-9]+ .*gdb_target_waits_for_lock' "live: locker's backtrace"
# The registers the thread was stopped with, unchanged by the backtraces.
mapfile -t before_after < <(grep '^regs ' "$out")
((${#before_after[@]} == 2)) || fail "live: expected two register lines"
[[ "${before_after[0]}" == "${before_after[1]}" ]] ||
  fail "live: registers not restored: '${before_after[0]}' then '${before_after[1]}'"
if [[ "$attach" != refused ]]; then
  # Detached, the target still runs its pause() loop: a SIGKILL is the only end.
  sleep 0.2
  kill -0 "$pid" 2>/dev/null || fail "live: the target died after gdb detached"
  stop "$pid"
fi

# --- core file ---------------------------------------------------------------
# mprotect guards: gdb's gcore stops copying a mapping at the first page it
# cannot read, and a MADV_GUARD_INSTALL guard (the default on Linux 6.13+)
# is one, which would leave the fibers' stacks out of the core.
if [[ "$attach" == refused ]]; then
  timeout 60 gdb -batch -nx -ex run -ex "gcore $tmp/core" -ex kill --args env \
    FIBERLOOP_STACK_GUARDS=mprotect "$target" trap >"$tmp/gcore.out" 2>&1 || true
else
  launch core FIBERLOOP_STACK_GUARDS=mprotect
  timeout 60 gcore -o "$tmp/core" "$pid" >"$tmp/gcore.out" 2>&1 || fail "gcore failed"
  stop "$pid"
  mv "$tmp/core.$pid" "$tmp/core" 2>/dev/null || true
fi
[[ -s "$tmp/core" ]] || fail "no core file written"
out="$tmp/core.txt"
timeout 60 gdb -batch -nx "$target" "$tmp/core" -x "$script" -ex fiberloop-tasks \
  -ex 'fiberloop-bt all' -ex 'fiberloop-bt -scan all' >"$out" 2>&1 || fail "gdb on the core failed"
check_tasks "$out"
expect "$out" "registers not writable here: .*unwound from the saved context" "core: the unwinder fallback"
sleeper_bt "$out" >"$tmp/core_sleeper_bt.txt"
expect "$tmp/core_sleeper_bt.txt" '^#[0-9]+ .*gdb_target_sleeps_in_here' "core: sleeper's backtrace"
expect "$tmp/core_sleeper_bt.txt" '^stack scan \(not a backtrace' "core: the scan is labelled"
expect "$tmp/core_sleeper_bt.txt" '^  \[sp\+0x[0-9a-f]+\] 0x[0-9a-f]+ gdb_target_sleeps_in_here' "core: sleeper's scan"
echo "gdb_dump_test: ok"
