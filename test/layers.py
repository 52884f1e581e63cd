#!/usr/bin/env python3
"""layers.py SOURCE_ROOT: the library's #include lines keep to its layers.

Every header under include/fiberloop and every file under lib/ belongs to a
layer (LAYERS below, the diagram of docs/design.md). A file may include its
own layer's files and those of the layers its layer is built on, never one
above: the core cannot grow a knot back. Also checked: no include cycle
among the project's files (through any path), no file the table does not
place, and no file over MAX_LINES lines. Exit 0, or 1 with one line per
violation.
"""

import fnmatch
import pathlib
import re
import sys

MAX_LINES = 500

# layer: (the layers it is built on, the files in it). Patterns are paths
# relative to the source root; the first layer whose pattern matches wins.
# Under lib/ each folder is a layer (lib/loop holds the phases and, apart,
# the loop that composes them; lib/core the loop core and the future).
LAYERS = {
    "base": ([], [
        "include/fiberloop/export.hpp", "include/fiberloop/errors.hpp",
        "include/fiberloop/poller.hpp", "include/fiberloop/detail/assert.hpp",
        "include/fiberloop/detail/ref.hpp", "include/fiberloop/detail/inline_function.hpp",
        "include/fiberloop/detail/object_pool.hpp", "include/fiberloop/detail/ring_queue.hpp",
        "include/fiberloop/detail/syscall_counts.hpp",
        "include/fiberloop/detail/threadsafe_queue.hpp",
        "include/fiberloop/detail/loop_link.hpp", "include/fiberloop/detail/pending_flush.hpp",
        "lib/base/*",
    ]),
    "stack": (["base"], [
        "include/fiberloop/stack.hpp", "include/fiberloop/detail/stack_*.hpp",
        "lib/stack/*",
    ]),
    "fiber": (["stack"], [
        "include/fiberloop/detail/fiber.hpp", "include/fiberloop/generator.hpp",
        "lib/fiber/*",
    ]),
    "loop_core": (["base"], [
        "include/fiberloop/handle.hpp", "include/fiberloop/detail/loop_core.hpp",
        "lib/core/handle.cpp", "lib/core/loop_core.cpp",
    ]),
    "future": (["loop_core"], ["include/fiberloop/future.hpp", "lib/core/future.cpp"]),
    "task": (["future", "fiber"], [
        "include/fiberloop/detail/task_state.hpp", "include/fiberloop/task.hpp",
        "lib/task/*",
    ]),
    # The loop's phases know futures and callbacks, not tasks.
    "phases": (["future"], [
        "include/fiberloop/detail/timer_queue.hpp", "include/fiberloop/detail/timers.hpp",
        "include/fiberloop/detail/io_table.hpp", "include/fiberloop/detail/io_driver.hpp",
        "lib/loop/timers.cpp", "lib/loop/io_table.cpp", "lib/loop/io_driver.cpp",
    ]),
    # The stall watchdog is the loop's own instrument (run_timed publishes to it).
    "event_loop": (["task", "phases"], [
        "include/fiberloop/event_loop.hpp", "lib/loop/event_loop.cpp",
        "lib/loop/virtual_time.cpp",
        "lib/loop/stall_watchdog.*", "lib/loop/thread_backtrace.*",
    ]),
    # Signals know the loop and its callbacks; run()'s Ctrl-C is built on them.
    "signals": (["event_loop"], [
        "include/fiberloop/signals.hpp", "include/fiberloop/detail/signal_handlers.hpp",
        "lib/signals/*",
    ]),
    # The task dump reads tasks through the loop; a signal can ask for it.
    "observe": (["signals"], ["include/fiberloop/task_dump.hpp", "lib/observe/*"]),
    "await": (["observe"], ["include/fiberloop/await.hpp", "lib/await/await.cpp"]),
    "io_wait": (["await"], ["lib/await/io_wait.cpp"]),
    "sync": (["await"], [
        "include/fiberloop/detail/waiters.hpp", "include/fiberloop/lock.hpp",
        "include/fiberloop/event.hpp", "include/fiberloop/condition.hpp",
        "include/fiberloop/semaphore.hpp", "include/fiberloop/barrier.hpp",
        "include/fiberloop/queue.hpp", "lib/sync/*",
    ]),
    "combinators": (["sync"], [
        "include/fiberloop/gather.hpp", "include/fiberloop/wait.hpp",
        "include/fiberloop/timeout.hpp", "include/fiberloop/task_group.hpp",
        "lib/combinators/*",
    ]),
    "threads": (["await"], [
        "include/fiberloop/completer.hpp", "include/fiberloop/executor.hpp",
        "include/fiberloop/submit.hpp", "lib/threads/*",
    ]),
    # A loop per thread: its supervisor waits with the sync primitives.
    "group": (["threads", "sync"], ["include/fiberloop/loop_group.hpp", "lib/group/*"]),
    "net": (["io_wait", "sync", "threads"], [
        "include/fiberloop/net/*", "lib/net/*",
    ]),
    "subprocess": (["net", "combinators"], [
        "include/fiberloop/subprocess.hpp", "include/fiberloop/detail/child_*.hpp",
        "lib/subprocess/*",
    ]),
    # The opt-in hooks library (libfiberloop-hooks): libc's blocking calls
    # wait through io_wait, sleep and timeouts; getaddrinfo on the executor.
    "hooks": (["io_wait", "combinators", "threads"], [
        "include/fiberloop/hooks.hpp", "lib/hooks/*",
    ]),
    "umbrella": (["subprocess", "group"], [
        "include/fiberloop/fiberloop.hpp", "include/fiberloop/net.hpp",
    ]),
}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def layer_of(rel):
    for name, (_, patterns) in LAYERS.items():
        if any(fnmatch.fnmatch(rel, p) for p in patterns):
            return name
    return None


def allowed_from(name, memo={}):
    if name not in memo:
        below = set()
        for lower in LAYERS[name][0]:
            below |= {lower} | allowed_from(lower)
        memo[name] = below
    return memo[name]


def resolve(root, path, target):
    for base in (root / "include", path.parent):
        candidate = (base / target).resolve()
        if candidate.is_file():
            return candidate
    return None


def check(root):
    """The problems found under root, one line each."""
    files = sorted(p for d in ("include/fiberloop", "lib") for p in (root / d).rglob("*")
                   if p.suffix in (".hpp", ".cpp", ".h"))
    problems = []
    graph = {}
    for path in files:
        rel = str(path.relative_to(root))
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            problems.append(f"{rel}: {text.count(chr(10))} lines, over {MAX_LINES}: split it by job")
        layer = layer_of(rel)
        if layer is None:
            problems.append(f"{rel}: in no layer: add it to LAYERS in test/layers.py")
            continue
        graph[path] = []
        for target in INCLUDE.findall(text):
            dep = resolve(root, path, target)
            if dep is None:
                continue  # a system or Boost header
            graph[path].append(dep)
            dep_rel = str(dep.relative_to(root))
            dep_layer = layer_of(dep_rel)
            if dep_layer is None or dep_layer == layer:
                continue
            if dep_layer not in allowed_from(layer):
                problems.append(f"{rel} ({layer}) includes {dep_rel} ({dep_layer}): "
                                f"a layer above or beside it")

    # Cycles: a depth-first search over the include graph.
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                problems.append("include cycle: " +
                                " -> ".join(str(p.relative_to(root)) for p in cycle))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)

    return problems, len(graph)


def self_test():
    """The checker must see what it is there to see: a planted cycle, an
    upward include and a file in no layer, in a scratch tree."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "include/fiberloop/detail").mkdir(parents=True)
        (root / "lib/core").mkdir(parents=True)
        (root / "include/fiberloop/future.hpp").write_text('#include "fiberloop/handle.hpp"\n')
        (root / "include/fiberloop/handle.hpp").write_text('#include "fiberloop/future.hpp"\n')
        (root / "lib/core/future.cpp").write_text('#include "fiberloop/event_loop.hpp"\n')
        (root / "include/fiberloop/event_loop.hpp").write_text("")
        (root / "include/fiberloop/stray.hpp").write_text("")
        problems, _ = check(root)
    expected = ["include cycle:", "lib/core/future.cpp (future) includes include/fiberloop/"
                "event_loop.hpp (event_loop)", "include/fiberloop/stray.hpp: in no layer"]
    missed = [e for e in expected if not any(p.startswith(e) for p in problems)]
    for e in missed:
        print(f"self-test: the checker missed a planted problem: {e}")
    return not missed


def main():
    if not self_test():
        return 1
    problems, checked = check(pathlib.Path(sys.argv[1]).resolve())
    for p in problems:
        print(p)
    print(f"layers: {checked} files checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
