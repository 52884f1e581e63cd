# fiberloop-gdb.py: fiberloop's task dump from gdb, for a stopped process or
# a core file (Photon's photon_ps / photon_bt are the model).
#
#   gdb -p PID -x tools/fiberloop-gdb.py        (or, inside gdb: source tools/fiberloop-gdb.py)
#   (gdb) fiberloop-tasks       every live task of every running loop, as
#                               EventLoop::dump_tasks() writes its text format
#   (gdb) fiberloop-bt N        the backtrace of task N (its number, as listed)
#   (gdb) fiberloop-bt all      the backtraces of every task
#   (gdb) fiberloop-bt -scan N  the stack scan below, whatever else would work
#
# What works where:
#   fiberloop-tasks reads memory only, so it works the same on a live process
#   and on a core file. It needs libfiberloop's debug info (-g: meson's default
#   debugoptimized build has it) and gdb's access to thread-local variables
#   (libthread_db, as for any `p some_thread_local`).
#   It finds loops through each thread's `running_loop`, the thread-local that
#   run_forever() / run_until_complete() / run_once() set: a loop that exists
#   but is not running at the moment of the stop (between two
#   run_until_complete() calls, say) is not found.
#   fiberloop-bt on a live process points the task's thread at the registers
#   Boost.Context's jump_fcontext saved on the fiber's stack, runs gdb's own
#   `bt` (CFI unwinding: right under -O2), then puts the thread's registers
#   back. Nothing runs in the inferior. A core file refuses register writes
#   ("You can't do that without a process to debug"), so there the same
#   registers are handed to gdb through a Python frame unwinder as the caller
#   of the thread's innermost frame, and the frames above it are printed: the
#   same CFI unwinding, written out by this script. Should that fail too (a
#   gdb without the unwinder API), it prints the saved return address and a
#   scan of the fiber's stack for words that point into text sections: a
#   best effort, labelled as a scan (stale return addresses show up in it).
#   A core from gdb's gcore lacks the fibers' stacks when they have
#   MADV_GUARD_INSTALL guards (Linux 6.13+): gcore gives up on a mapping at
#   its first unreadable page. FIBERLOOP_STACK_GUARDS=mprotect avoids that.
#   The running task, if one was stopped mid-step, is the thread's own stack:
#   `bt` in that thread.
#   x86_64 only: the saved context's layout is jump_fcontext's of the x86_64
#   SysV ABI, as checked on Boost 1.74 (Debian 12).
import gdb

try:
    import gdb.unwinder
    HAVE_UNWINDER = True
except ImportError:
    HAVE_UNWINDER = False

DEBUG_INFO = ("fiberloop-tasks needs libfiberloop's debug info: build with -g "
              "(meson's default debug/debugoptimized)")
RUNNING_LOOP = "'fiberloop::(anonymous namespace)::running_loop'"
RUNNING_TASK = "'fiberloop::detail::TaskStateBase::running_'"
# A list longer than this is memory gone bad (a core of a crash), not tasks.
MAX_TASKS = 1000000

# What jump_fcontext leaves at the context it returns (x86_64 SysV; checked
# against `objdump -d libboost_context.so.1.74.0`): mxcsr and the x87
# control word, r12, r13, r14, r15, rbx, rbp, then the return address; the
# switched-back fiber continues with rsp just above that.
CONTEXT_REGISTERS = [("r12", 8), ("r13", 16), ("r14", 24), ("r15", 32), ("rbx", 40),
                     ("rbp", 48)]
RETURN_ADDRESS_AT = 56
CONTEXT_SIZE = 64

# The library's waits by the name they park with, and the dump's kind for
# each (lib/observe/wait_view.cpp's table: keep the two alike).
KINDS = [("sleep()", "sleep"), ("wait_readable()", "fd"), ("wait_writable()", "fd"),
         ("Lock.", "lock"), ("Event.", "event"), ("Condition.", "condition"),
         ("Semaphore.", "semaphore"), ("Barrier.", "barrier"), ("Queue.", "queue"),
         ("gather()", "gather"), ("TaskGroup", "task_group"), ("wait()", "wait"),
         ("wait_for()", "wait"), ("as_completed()", "wait"), ("to_thread()", "to_thread"),
         ("Server.", "server"), ("StreamWriter.", "stream")]


class Types:
    """The library's types, looked up when a command runs (a library loaded
    after this script was sourced is then known)."""

    def __init__(self):
        try:
            self.task = gdb.lookup_type("fiberloop::detail::TaskStateBase")
            self.live = gdb.lookup_type("fiberloop::detail::LiveTask")
            self.future = gdb.lookup_type("fiberloop::detail::FutureStateBase")
        except gdb.error:
            raise gdb.GdbError(DEBUG_INFO)
        self.task_ptr = self.task.pointer()
        # LiveTask is a non-polymorphic base: no dynamic_cast from it, so the
        # way back to the task is its offset in TaskStateBase.
        self.live_offset = self.base_offset("fiberloop::detail::LiveTask")
        self.future_offset = self.base_offset("fiberloop::detail::FutureStateBase")

    def base_offset(self, tag):
        for field in self.task.fields():
            if field.is_base_class and field.type.strip_typedefs().tag == tag:
                return field.bitpos // 8
        raise gdb.GdbError("fiberloop: TaskStateBase has no %s base in this debug info" % tag)


def read_cstring(value, limit=4096):
    try:
        if int(value) == 0:
            return None
        return value.string(errors="replace", length=-1)[:limit]
    except gdb.error:
        return "<unreadable at 0x%x>" % int(value)


def read_std_string(value):
    # libstdc++'s layout first (no pretty printer needed); then whatever gdb
    # prints for it.
    try:
        pointer = value["_M_dataplus"]["_M_p"]
        length = int(value["_M_string_length"])
        if length == 0:
            return ""
        data = gdb.selected_inferior().read_memory(int(pointer), min(length, 4096))
        return bytes(data).decode("utf-8", errors="replace")
    except gdb.error:
        text = value.format_string(raw=False)
        return text[1:-1] if text.startswith('"') and text.endswith('"') else text


def source_location(value):
    """(file, line, function) of a std::source_location, or None when empty."""
    try:
        impl = value["_M_impl"]  # libstdc++: a pointer to a static record
        if int(impl) == 0:
            return None
        record = impl.dereference()
        return (read_cstring(record["_M_file_name"]) or "", int(record["_M_line"]),
                read_cstring(record["_M_function_name"]) or "")
    except gdb.error:
        return None


def enum_name(value):
    return str(value).rsplit("::", 1)[-1]


def derives_from(type_, tag):
    type_ = type_.strip_typedefs()
    if type_.tag == tag:
        return True
    return any(f.is_base_class and derives_from(f.type, tag) for f in type_.fields())


class Task:
    def __init__(self, types, address, thread):
        self.address = address
        self.thread = thread
        field = lambda name: member(address, types.task, name)
        self.number = int(field("number_"))
        name = read_std_string(field("name_"))
        self.name = name if name else "Task-%d" % self.number
        self.parent_number = int(field("parent_number_"))
        wait = field("wait_")
        self.call = read_cstring(wait["what"])
        self.where = source_location(wait["where"])
        self.since_ns = int(wait["since_ns"])
        self.arg = int(wait["arg"])
        self.waiter = field("fut_waiter_")
        status = member(address + types.future_offset, types.future, "status_")
        self.done = enum_name(status) != "pending"
        self.fiber = field("fiber_")
        self.fiber_state = enum_name(self.fiber["state_"])
        self.awaited_address = None  # read_loop() sets it, knowing every task

    def label(self):
        return 'Task %d "%s"' % (self.number, self.name)


def member(address, struct_type, name):
    """The field `name` of the struct_type object at address. Each field is
    read as an object of its own type: dereferencing a pointer to the task,
    a polymorphic class, has gdb look up its dynamic type, and it warns for
    every task whose function is a lambda (it cannot name those types)."""
    for field in struct_type.fields():
        if field.name == name and not field.is_base_class:
            at = address + field.bitpos // 8
            return gdb.Value(at).cast(field.type.pointer()).dereference()
    raise gdb.GdbError("fiberloop: %s has no member %s in this debug info" %
                       (struct_type.name, name))


def awaited_task(types, waiter, live):
    """The task fut_waiter_ points at, or None for a plain future. A task of
    the loop's live list is recognised by its address (FutureStateBase's
    offset in TaskStateBase), which needs no RTTI: gdb cannot name the
    dynamic type of a task whose function is a lambda. Anything else is asked
    of gdb's dynamic type."""
    if int(waiter) == 0:
        return None
    address = int(waiter) - types.future_offset
    if address in live:
        return address
    try:
        if derives_from(waiter.dynamic_type.target(), types.task.tag):
            return int(waiter.dynamic_cast(types.task_ptr)) or None
    except gdb.error:
        pass
    return None


class Loop:
    def __init__(self, thread, address, now_ns, running, tasks):
        self.thread = thread
        self.address = address
        self.now_ns = now_ns
        self.running = running
        self.tasks = tasks  # oldest first, as the in-process dump


def thread_label(thread):
    return "Thread %d (LWP %d)" % (thread.num, thread.ptid[1] or thread.ptid[0])


def read_loop(types, thread):
    """The loop running on the selected thread, or None."""
    try:
        loop = gdb.parse_and_eval(RUNNING_LOOP)
    except gdb.error as e:
        if "No symbol" in str(e):
            raise gdb.GdbError(DEBUG_INFO)
        raise gdb.GdbError("fiberloop: cannot read running_loop in %s: %s" %
                           (thread_label(thread), e))
    if int(loop) == 0:
        return None
    core = loop.dereference()["core_"]
    try:
        running = int(gdb.parse_and_eval(RUNNING_TASK))
    except gdb.error:
        running = 0
    addresses = []
    seen = set()
    entry = core["live_"]
    while int(entry) != 0 and int(entry) not in seen and len(addresses) < MAX_TASKS:
        seen.add(int(entry))
        addresses.append(int(entry) - types.live_offset)
        entry = entry["next_live"]
    tasks = []
    for address in reversed(addresses):  # the list is newest first
        try:
            task = Task(types, address, thread)
        except gdb.error as e:
            gdb.write("fiberloop: task state at 0x%x unreadable: %s\n" % (address, e))
            continue
        if task.number == 0:
            # Numbers start at 1: this is memory the core file does not hold
            # (gdb's gcore gives up on the rest of a mapping at the first page
            # it cannot read, and a MADV_GUARD_INSTALL guard is one).
            gdb.write("fiberloop: the task state at 0x%x reads as zeros: this core "
                      "lacks its stack (from gcore? see docs/observability.md)\n" % address)
            continue
        tasks.append(task)
    live = {t.address for t in tasks}
    for t in tasks:
        t.awaited_address = awaited_task(types, t.waiter, live)
    return Loop(thread, int(loop), int(core["iteration_ns_"]), running, tasks)


class Selection:
    """Puts back the thread and frame the user had selected."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        try:
            self.frame = gdb.selected_frame()
        except gdb.error:
            self.frame = None
        return self

    def __exit__(self, *exc):
        if self.thread is not None and self.thread.is_valid():
            self.thread.switch()
            try:
                if self.frame is not None and self.frame.is_valid():
                    self.frame.select()
            except gdb.error:
                pass
        return False


def find_loops():
    inferior = gdb.selected_inferior()
    if inferior.pid == 0 and not inferior.threads():
        raise gdb.GdbError("fiberloop: no process and no core file")
    types = Types()
    loops = []
    with Selection():
        for thread in sorted(inferior.threads(), key=lambda t: t.num):
            thread.switch()
            loop = read_loop(types, thread)
            if loop is not None:
                loops.append(loop)
    return types, loops


def no_loop_message():
    return ("fiberloop: no thread is running an EventLoop (loops are found through the "
            "thread-local running_loop, set only while a loop runs: one that exists "
            "but is not running is not found)\n")


def kind_of(task):
    if task.call:
        for prefix, kind in KINDS:
            if task.call.startswith(prefix):
                return kind
    return "task" if task.awaited_address else "future"


def state_of(task, loop):
    if task.address == loop.running:
        return "running"
    if task.done:
        return "done"
    return "waiting" if int(task.waiter) != 0 else "ready"


def started(task, loop):
    return task.call is not None or task.address == loop.running or task.fiber_state != "created"


def where_text(task, with_function):
    if not task.where:
        return "?"
    file, line, function = task.where
    return "%s:%d (%s)" % (file, line, function) if with_function else "%s:%d" % (file, line)


def write_task(task, loop, by_address, awaited_by, by_number):
    state = state_of(task, loop)
    line = "%s: %s" % (task.label(), state)
    if state == "waiting":
        kind = kind_of(task)
        waited = (loop.now_ns - task.since_ns) / 1e9
        if kind == "sleep":
            on = "sleep until %.6f" % (task.arg / 1e9)
        elif kind == "fd":
            # The peer needs getpeername() in the process: not from here.
            on = "fd %d %s" % (task.arg, "writable" if task.call == "wait_writable()"
                               else "readable")
        elif kind == "task":
            awaited = by_address.get(task.awaited_address)
            on = awaited.label() if awaited else "a task at 0x%x" % task.awaited_address
        else:
            on = kind
        line += " %.6f s on %s, in %s at %s" % (waited, on, task.call or "?",
                                                 where_text(task, True))
    elif task.call:
        line += " (last waited in %s at %s)" % (task.call, where_text(task, False))
    gdb.write(line + "\n")
    waiters = awaited_by.get(task.address, [])
    if waiters:
        gdb.write("  awaited by: " + ", ".join(w.label() for w in waiters) + "\n")
    parent = by_number.get(task.parent_number) if task.parent_number else None
    if parent:
        gdb.write("  parent: %s\n" % parent.label())
    if not started(task, loop):
        gdb.write("  stack: none, not started\n")


def write_cycles(loop, by_address):
    # Each task awaits at most one other, so a walk from each finds any cycle.
    mark = {}
    cycles = []
    for start in loop.tasks:
        path = []
        t = start
        while t is not None and mark.get(t.address, 0) == 0:
            mark[t.address] = 1
            path.append(t)
            t = by_address.get(t.awaited_address)
        if t is not None and mark.get(t.address) == 1:
            cycle = path[path.index(t):]
            cycles.append(" -> ".join(c.label() for c in cycle + [t]))
        for p in path:
            mark[p.address] = 2
    for c in cycles:
        gdb.write("  cycle: %s\n" % c)
    if not cycles:
        gdb.write("no cycles of tasks awaiting each other\n")


class TasksCommand(gdb.Command):
    """List the live tasks of every thread's running fiberloop EventLoop.

Usage: fiberloop-tasks
For each thread that runs a loop: each task's number, name, state, the wait
it is parked in (the call, its source line, a sleep's deadline, an fd, the
awaited task), who awaits it and its TaskGroup parent, as
EventLoop::dump_tasks() writes them. Reads memory only: works on a core file."""

    def __init__(self):
        super().__init__("fiberloop-tasks", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        types, loops = find_loops()
        if not loops:
            gdb.write(no_loop_message())
            return
        for loop in loops:
            by_address = {t.address: t for t in loop.tasks}
            by_number = {t.number: t for t in loop.tasks}
            awaited_by = {}
            for t in loop.tasks:
                if t.awaited_address:
                    awaited_by.setdefault(t.awaited_address, []).append(t)
            count = len(loop.tasks)
            gdb.write("%s, EventLoop 0x%x:\n" % (thread_label(loop.thread), loop.address))
            gdb.write("fiberloop: %d %s at loop time %.6f\n" %
                      (count, "task" if count == 1 else "tasks", loop.now_ns / 1e9))
            for t in loop.tasks:
                write_task(t, loop, by_address, awaited_by, by_number)
            write_cycles(loop, by_address)


# --- fiberloop-bt -----------------------------------------------------------

class FiberUnwinder(gdb.unwinder.Unwinder if HAVE_UNWINDER else object):
    """While `context` is set, makes the thread's innermost frame's caller the
    parked fiber: the registers jump_fcontext saved. Off otherwise."""

    def __init__(self):
        super().__init__("fiberloop-fiber")
        self.context = None  # {register: value} of the fiber's frame

    def __call__(self, pending_frame):
        if self.context is None or pending_frame.level() != 0:
            return None
        frame_id = FrameId(pending_frame.read_register("rsp"), pending_frame.read_register("pc"))
        info = pending_frame.create_unwind_info(frame_id)
        for register, value in self.context.items():
            info.add_saved_register(register, gdb.Value(value).cast(
                pending_frame.read_register(register).type))
        return info


class FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


UNWINDER = None
if HAVE_UNWINDER:
    UNWINDER = FiberUnwinder()
    gdb.unwinder.register_unwinder(None, UNWINDER, replace=True)


def saved_context(task):
    """{register: value} of a parked fiber, from its fcontext, or a reason."""
    if task.fiber_state not in ("suspended", "forwarding"):
        return None, "no parked context (its fiber is %s)" % task.fiber_state
    context = int(task.fiber["self_"])
    if context == 0:
        return None, "no parked context (self_ is null)"
    try:
        words = gdb.selected_inferior().read_memory(context, CONTEXT_SIZE).tobytes()
    except gdb.MemoryError as e:
        return None, "its saved context at 0x%x is unreadable: %s" % (context, e)
    word = lambda at: int.from_bytes(words[at:at + 8], "little")
    registers = {name: word(at) for name, at in CONTEXT_REGISTERS}
    registers["rip"] = word(RETURN_ADDRESS_AT)
    registers["rsp"] = context + CONTEXT_SIZE
    return registers, None


def bt_by_register_write(registers):
    """gdb's bt with the thread's registers pointed at the fiber, then put
    back; raises gdb.error where registers cannot be written (a core)."""
    gdb.newest_frame().select()  # a write in an outer frame would go to memory
    frame = gdb.selected_frame()
    names = list(registers)
    # orig_rax too: writing pc makes gdb cancel the restart of an interrupted
    # system call; putting it back keeps the process's pause() or read() as
    # it was.
    extra = [r for r in ("orig_rax",) if has_register(frame, r)]
    saved = {r: int(frame.read_register(r)) for r in names + extra}
    try:
        for r in names:
            gdb.execute("set $%s = %d" % (r, registers[r]), to_string=True)
        return gdb.execute("bt", to_string=True)
    finally:
        for r in names + extra:
            gdb.execute("set $%s = %d" % (r, to_signed(saved[r])), to_string=True)
        gdb.newest_frame().select()


def to_signed(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def has_register(frame, name):
    try:
        frame.read_register(name)
        return True
    except (gdb.error, ValueError):
        return False


def frame_line(index, frame):
    pc = frame.pc()
    name = frame.name() or "??"
    sal = frame.find_sal()
    where = ""
    if sal.symtab is not None and sal.line:
        where = " at %s:%d" % (sal.symtab.filename, sal.line)
    else:
        solib = gdb.solib_name(pc)
        if solib:
            where = " from %s" % solib
    inline = frame.type() == gdb.INLINE_FRAME
    address = "" if inline else "0x%016x in " % pc
    return "#%-2d %s%s ()%s\n" % (index, address, name, where)


def bt_by_unwinder(registers, limit=200):
    """The fiber's frames, gdb unwinding from the saved registers handed to it
    by FiberUnwinder; printed here, since gdb's bt would start at the
    thread's own innermost frame."""
    if UNWINDER is None:
        raise gdb.error("this gdb has no Python unwinder API")
    UNWINDER.context = registers
    gdb.invalidate_cached_frames()
    try:
        lines = []
        frame = gdb.newest_frame().older()
        if frame is None or frame.pc() != registers["rip"]:
            # Some other unwinder took the thread's innermost frame: what
            # follows would be the thread's stack, not the fiber's.
            raise gdb.error("the fiberloop-fiber unwinder was not used")
        while frame is not None and len(lines) < limit:
            lines.append(frame_line(len(lines), frame))
            frame = frame.older()
        if not lines:
            raise gdb.error("gdb unwound no frame from the saved context")
        return "".join(lines)
    finally:
        UNWINDER.context = None
        gdb.invalidate_cached_frames()


def text_symbol(address):
    """'function + offset in section .text of object' when address is code."""
    try:
        info = gdb.execute("info symbol 0x%x" % address, to_string=True).strip()
    except gdb.error:
        return None
    if info.startswith("No symbol") or " in section .text" not in info:
        return None
    return info


def bt_by_scan(task, registers, max_bytes=64 * 1024):
    lines = ["saved return address: 0x%016x %s\n" % (
        registers["rip"], text_symbol(registers["rip"]) or "(no text symbol)"),
        "stack scan (not a backtrace: every word of the fiber's stack above its saved "
        "context that points into a text section, stale ones included):\n"]
    start = registers["rsp"]
    try:
        top = int(task.fiber["stack_"]["sp"])  # the stack's top: it grows down from there
    except gdb.error:
        top = start + max_bytes
    end = min(top, start + max_bytes)
    try:
        data = gdb.selected_inferior().read_memory(start, max(0, end - start)).tobytes()
    except gdb.MemoryError as e:
        lines.append("  (stack unreadable: %s)\n" % e)
        return "".join(lines)
    found = 0
    for at in range(0, len(data) - 7, 8):
        value = int.from_bytes(data[at:at + 8], "little")
        if value < 0x1000:
            continue
        symbol = text_symbol(value)
        if symbol:
            lines.append("  [sp+0x%x] 0x%016x %s\n" % (at + CONTEXT_SIZE, value, symbol))
            found += 1
    if not found:
        lines.append("  (no word points into a text section)\n")
    return "".join(lines)


def write_backtrace(task, loop, scan_only):
    gdb.write("%s, %s:\n" % (task.label(), thread_label(task.thread)))
    if task.address == loop.running:
        task.thread.switch()
        gdb.write("(the running task: its thread's own stack)\n")
        gdb.write(gdb.execute("bt", to_string=True))
        return
    if not started(task, loop):
        gdb.write("no stack: not started\n")
        return
    registers, reason = saved_context(task)
    if registers is None:
        gdb.write(reason + "\n")
        return
    task.thread.switch()
    if not scan_only:
        try:
            gdb.write(bt_by_register_write(registers))
            return
        except gdb.error as write_error:
            why = str(write_error)
        try:
            text = bt_by_unwinder(registers)
            gdb.write("(registers not writable here: %s; unwound from the saved "
                      "context by the fiberloop-fiber unwinder)\n" % why)
            gdb.write(text)
            return
        except gdb.error as unwind_error:
            gdb.write("(registers not writable here: %s; no unwinding: %s)\n" %
                      (why, unwind_error))
    gdb.write(bt_by_scan(task, registers))


class BacktraceCommand(gdb.Command):
    """Backtrace of a parked fiberloop task.

Usage: fiberloop-bt N | all        (N: the number fiberloop-tasks lists)
       fiberloop-bt -scan N | all  the stack scan only
Runs gdb's bt on the fiber's saved registers (then restores the thread's);
on a core file, unwinds from them through a Python unwinder; failing both,
prints a labelled scan of the fiber's stack."""

    def __init__(self):
        super().__init__("fiberloop-bt", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        args = gdb.string_to_argv(argument)
        scan_only = "-scan" in args
        args = [a for a in args if a != "-scan"]
        if len(args) != 1 or not (args[0] == "all" or args[0].isdigit()):
            raise gdb.GdbError("usage: fiberloop-bt [-scan] N|all")
        types, loops = find_loops()
        if not loops:
            gdb.write(no_loop_message())
            return
        chosen = [(t, loop) for loop in loops for t in loop.tasks
                  if args[0] == "all" or t.number == int(args[0])]
        if not chosen:
            raise gdb.GdbError("fiberloop-bt: no live task %s (fiberloop-tasks lists them)" %
                               args[0])
        with Selection():
            for i, (task, loop) in enumerate(chosen):
                if i:
                    gdb.write("\n")
                write_backtrace(task, loop, scan_only)


TasksCommand()
BacktraceCommand()
