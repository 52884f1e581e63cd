// wait_view.hpp (private): what the task dump says of one task's wait,
// read off its task state without running it.
#pragma once

#include <cstdint>
#include <source_location>

#include "fiberloop/detail/task_state.hpp"

namespace fiberloop::detail {

// WaitView is one task's state and, when it waits, on what. kind is one of
// the schema's names (docs/observability.md): sleep, fd, lock, event,
// condition, semaphore, barrier, queue, task, gather, task_group, wait,
// to_thread, server, stream, future; "" for a task that does not wait.
struct WaitView {
  const char* state = "ready";  // running, ready, waiting, done
  const char* kind = "";
  const char* call = nullptr;    // the call that waits: "Lock.acquire()"
  std::source_location where{};  // the line that called it
  double since = 0;              // loop time the wait began at
  double deadline = 0;           // kind sleep: loop time it ends at
  int fd = -1;                   // kind fd
  bool writable = false;         // kind fd: the direction
  TaskStateBase* task = nullptr;  // kind task: the task awaited
  bool started = true;           // false: the task never ran (no stack yet)
};

// view_wait(task, running) reads task's wait; running is the task whose
// step calls the dump (null outside a task).
WaitView view_wait(TaskStateBase& task, const TaskStateBase* running);

}  // namespace fiberloop::detail
