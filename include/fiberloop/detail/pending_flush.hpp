// detail/pending_flush.hpp: work that must run before the running task next
// waits, yields or ends — a stream's coalesced writes.
#pragma once

#include "fiberloop/export.hpp"

namespace fiberloop::detail {

// PendingFlush is a node its owner (a connection) embeds and queues on this
// thread, from inside a task, when it holds work for the kernel: the task
// layer runs every queued node at the task's next wait, yield or end (work
// made outside any task is done at once by its owner: no wait is to come).
// The check costs the waits nothing: it shares the word the wait tests for
// unwinding fibers.
struct PendingFlush {
  // run(self) does the work; it is unqueued first, and may queue itself again.
  void (*run)(PendingFlush* self) noexcept = nullptr;
  PendingFlush* prev = nullptr;
  PendingFlush* next = nullptr;
  bool queued = false;
};

// queue_flush(f) queues f on this thread, once; unqueue_flush(f) takes it
// back (its owner goes away first).
FIBERLOOP_API void queue_flush(PendingFlush* f) noexcept;
FIBERLOOP_API void unqueue_flush(PendingFlush* f) noexcept;
// run_pending_flushes() runs, in queue order, what is queued on this thread.
FIBERLOOP_API void run_pending_flushes() noexcept;

}  // namespace fiberloop::detail
